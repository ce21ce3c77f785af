"""Compiled element-wise steps of plain IBP (numba, the optional extra ``certkit[fast]``).

Imported only by :func:`certify.ibp._ibp_kernels`, which returns None when numba is not installed, the environment
variable ``CERTKIT_NO_NUMBA`` is set (non-empty, not ``0``), ``certify.ibp.USE_COMPILED`` is False, or the tensor is
below the size floor (``certify.ibp.IBP_KERNEL_MIN``). Compiled on the first call for the dtype it gets (well under a
second; nothing is cached on disk) and run on one thread.

Each kernel does in one pass over memory what torch's form of the same step does in four to six element-wise
passes, with the same floating-point operations in the same order (products by 0.5 are exact), so the results are
bit-identical to torch's (up to the sign of a zero): the input box in sum/difference form ``(u + l, u - l)`` from
``x``, one radius per input and the domain (:func:`box_sum_diff`; torch: ``x - e``, ``x + e``, two clamps, a sum
and a difference), and ReLU of an interval in centre/width form in place (:func:`relu_centre_width`; torch: four
in-place passes, :func:`certify.ibp.relu_consuming`).
"""

from __future__ import annotations

from numba import njit

__all__ = ["box_sum_diff", "relu_centre_width"]


@njit(cache=False, nogil=True, boundscheck=False)
def box_sum_diff(x, e, lohi, clamp, s, d):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``l = max(x - e_b, lo)``, ``u = min(x + e_b, hi)`` (no clamp unless ``clamp``), ``s = u + l``, ``d = u - l``
    for x, s, d of shape (B, F) and e of shape (B,), all in one dtype; ``lohi`` holds (lo, hi) in that dtype."""
    lo = lohi[0]
    hi = lohi[1]
    for b in range(x.shape[0]):
        eb = e[b]
        for i in range(x.shape[1]):
            xi = x[b, i]
            l = xi - eb  # noqa: E741
            u = xi + eb
            if clamp:
                if l < lo:  # a NaN stays NaN, as in torch's clamp
                    l = lo  # noqa: E741
                if u > hi:
                    u = hi
            s[b, i] = u + l
            d[b, i] = u - l


@njit(cache=False, nogil=True, boundscheck=False)
def relu_centre_width(c, w):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """ReLU of the interval (centre ``c``, width ``w``), flat and of one dtype, in place: ``h = relu(c + w/2)``
    (the upper bound), new width ``min(h, w)``, new centre ``h - width/2`` (NaN propagates as in torch)."""
    half = c.dtype.type(0.5)
    zero = c.dtype.type(0)
    for i in range(c.shape[0]):
        wi = w[i]
        h = c[i] + half * wi
        if h < zero:  # relu_: a NaN stays NaN
            h = zero
        m = wi if wi < h else h  # torch.minimum: NaN in h (also whenever wi is NaN) stays NaN
        w[i] = m
        c[i] = h - half * m
