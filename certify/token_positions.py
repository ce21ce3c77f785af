"""Perturbation regions on chosen token embeddings of a text model (issue 14, "Text models").

The threat model of the transformer-verification literature (Shi et al. 2020, "Robustness Verification for
Transformers", ICLR; Bonaert et al. 2021, "Fast and Precise Certification of Transformers", PLDI): a sentence's
token embeddings ``E`` (T, D) are fixed except at chosen positions ``P``, whose embeddings may move in an L-p ball
of radius ``eps`` around their values. :class:`TokenPositions` writes the classifier as a function of the chosen
embeddings alone, ``g(Z) = f(E with E[P] := Z)``, so that every bound, verifier and certified radius of
:mod:`certify` applies to that region unchanged::

    g = certify.TokenPositions(classifier, embeddings, positions=[1, 3])
    b = certify.bounds(g, g.clean, 0.01, norm=2)      # (1, K) bounds over the L2 ball of the (2, D) embeddings

The ball is over the chosen embeddings jointly, flattened: L-inf bounds every coordinate of every chosen token by
``eps``; L2 bounds the Euclidean norm of the whole (len(P), D) change (a per-token L2 ball is a product of balls,
which one L-p ball does not express: bound the tokens one at a time, or use L-inf).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from certkit._validation import check_instance, check_module

__all__ = ["TokenPositions"]


class TokenPositions(nn.Module):
    """A text classifier on token embeddings as a function of the embeddings at chosen positions.

    ``forward(z)`` with ``z`` of shape (N, P, D) returns ``model(E')`` where ``E'`` (N, T, D) is the sentence's
    embeddings ``embeddings`` (T, D) with the P rows at ``positions`` replaced by ``z``'s rows (in the order
    given). Bounds of this module over an L-p ball around :attr:`clean` (1, P, D) are bounds of ``model`` over
    every sentence whose embeddings differ from ``embeddings`` only at ``positions``, by at most ``eps`` in that
    norm (Shi et al. 2020; Bonaert et al. 2021): the guarantee is that of the method used (IBP, CROWN,
    CROWN-IBP, alpha-CROWN: deterministic, no failure probability), and the substitution itself is exact
    (a product with a 0/1 placement matrix and the sum with the fixed rows).

    One sentence per module (its fixed rows are a constant of batch 1, broadcast over the N rows of ``z``);
    ``model`` must take (N, T, D) embeddings and is used as given (evaluation mode, not copied).

    Args:
        model: the classifier on embeddings, (N, T, D) -> (N, K).
        embeddings: the sentence's embeddings, (T, D) or (1, T, D), floating point, finite.
        positions: distinct token positions in ``[-T, T)`` (negative ones count from the end).

    Attributes:
        clean: the embeddings at ``positions``, (1, P, D): the centre of the region.
        positions: the positions as given, normalised to ``[0, T)``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``embeddings`` not a floating tensor, or a position not an int.
        ValueError: ``embeddings`` of another shape or not finite, ``positions`` empty, out of range or repeated.
    """

    place: Tensor
    rest: Tensor
    clean: Tensor

    def __init__(self, model: nn.Module, embeddings: Tensor, positions: Sequence[int]) -> None:
        super().__init__()
        check_module(model, "model")
        check_instance(embeddings, Tensor, "embeddings", "a floating-point tensor of shape (T, D) or (1, T, D)")
        if not embeddings.is_floating_point():
            raise TypeError(f"Expected argument `embeddings` to be a floating-point tensor, but got {embeddings.dtype}")
        e = embeddings.detach()
        if e.dim() == 3 and e.shape[0] == 1:
            e = e[0]
        if e.dim() != 2 or 0 in e.shape:
            raise ValueError("Expected argument `embeddings` of shape (T, D) or (1, T, D) with T, D >= 1, "
                             f"but got shape {tuple(embeddings.shape)}")
        if not bool(torch.isfinite(e).all()):
            raise ValueError("Expected argument `embeddings` to be finite, but it holds NaN or inf")
        t = e.shape[0]
        pos = _check_positions(positions, t)
        place = torch.zeros(t, len(pos), dtype=e.dtype, device=e.device)
        place[pos, torch.arange(len(pos))] = 1.0
        keep = torch.ones(t, 1, dtype=e.dtype, device=e.device)
        keep[pos] = 0.0
        self.model = model
        self.positions = tuple(pos)
        self.register_buffer("place", place)
        self.register_buffer("rest", (e * keep).unsqueeze(0).clone())
        self.register_buffer("clean", e[pos].unsqueeze(0).clone())
        self.train(model.training)

    def forward(self, z: Tensor) -> Tensor:
        """``model`` on the sentence with the chosen rows replaced by ``z`` (N, P, D); returns (N, K)."""
        full = (z.transpose(1, 2) @ self.place.t()).transpose(1, 2) + self.rest
        return self.model(full)

    def extra_repr(self) -> str:
        return f"positions={list(self.positions)}, tokens={self.rest.shape[1]}, dim={self.rest.shape[2]}"


def _check_positions(positions: object, t: int) -> list[int]:
    if isinstance(positions, Tensor):
        positions = positions.tolist()
    if isinstance(positions, str | bytes) or not isinstance(positions, Sequence):
        raise TypeError(f"Expected argument `positions` to be a sequence of ints, but got {type(positions).__name__}")
    out: list[int] = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, int):
            raise TypeError(f"Expected argument `positions` to hold ints, but got {p!r}")
        if not -t <= p < t:
            raise ValueError(f"Expected argument `positions` to hold positions in [-{t}, {t}) (the sentence has {t} "
                             f"tokens), but got {p}")
        out.append(p % t)
    if not out:
        raise ValueError("Expected argument `positions` to name at least one position, but got none")
    if len(set(out)) != len(out):
        raise ValueError(f"Expected argument `positions` to hold distinct positions, but got {list(positions)}")
    return out
