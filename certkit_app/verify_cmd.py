"""``certkit verify MODEL.onnx PROPERTY.vnnlib``: decide a VNN-LIB property of an ONNX model.

Prints ``verified``, ``falsified`` (with the counterexample, confirmed by a forward pass) or
``unknown``, as VNN-COMP tools do. ``--complete`` decides the property by branch-and-bound
(``certify.verify_property(..., complete=True)``) within ``--timeout`` seconds. Exit status:

* 0 -- verified (the property holds: no input in the region reaches the unsafe outputs);
* 1 -- falsified (a counterexample was found and checked);
* 2 -- usage error, or a malformed/mismatched ONNX or VNN-LIB file (the message names file, line or node);
* 3 -- unknown (bounds too loose, or the timeout was reached);
* 4 -- the model holds a layer or ONNX operator certify cannot bound (the message names it).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

__all__ = ["EXIT_CODES", "add_parser", "run"]

EXIT_CODES = {"verified": 0, "falsified": 1, "usage": 2, "unknown": 3, "unsupported": 4}


def add_parser(subparsers: Any) -> None:
    from certkit_app.cli import POS_FLOAT, SEED

    p = subparsers.add_parser(
        "verify", help="verify a VNN-LIB property of an ONNX model",
        description="Decide a VNN-LIB property of an ONNX model with certify's bound propagation and a PGD "
                    "counterexample search. Exit status 0: verified; 1: falsified; 2: usage error or malformed "
                    "file; 3: unknown (or timeout); 4: unsupported layer or operator.")
    p.add_argument("model", help="the ONNX model (.onnx)")
    p.add_argument("property", help="the VNN-LIB property (.vnnlib)")
    p.add_argument("--method", choices=("ibp", "crown", "crown-ibp"), default=None,
                   help="bound propagation method (default: crown; not with --complete, which uses its own)")
    p.add_argument("--complete", action="store_true",
                   help="complete verification: branch-and-bound (alpha/beta-CROWN, ReLU or input splits) "
                        "until verified or falsified, or the timeout")
    p.add_argument("--timeout", type=POS_FLOAT, default=None, metavar="S", help="seconds before answering unknown")
    p.add_argument("--float64", action="store_true", help="bounds in float64, rounded one ulp outward")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the PGD restarts")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _input_shape(info: Any) -> tuple[int, ...]:
    """The per-sample input shape, or () where a dimension is symbolic."""
    dims = info.input_shape[1:] if len(info.input_shape) > 1 else info.input_shape
    if dims and all(isinstance(d, int) and d > 0 for d in dims):
        return tuple(dims)
    return ()


def run(args: argparse.Namespace) -> int:
    import torch

    import certify
    from certify.onnx_io import onnx_model_info
    from certkit._validation import check_path
    from certkit_app.cli import print_json

    if args.complete and args.method is not None:
        raise ValueError(f"Expected `--method` not to be given with `--complete` (the complete search uses its own "
                         f"alpha/beta-CROWN bounds), but got --method {args.method}")
    try:
        check_path(args.model, "MODEL", kind="file")  # a missing file: exit 2 naming the argument
        check_path(args.property, "PROPERTY", kind="file")
        info = onnx_model_info(args.model)
        model = certify.load_onnx(args.model)
        shape = _input_shape(info)
        if not shape:
            raise ValueError(f"{args.model}: the input {info.input_name!r} has shape {list(info.input_shape)}, with "
                             "symbolic per-sample dimensions; certkit verify needs them fixed (only the batch "
                             "dimension may be symbolic)")
        num_inputs = math.prod(shape)
        dtype = next((t.dtype for t in model.parameters() if t.is_floating_point()), torch.float32)
        with torch.no_grad():  # in the model's dtype: a float64 export failed on a float32 probe
            num_outputs = int(model(torch.zeros((1, *shape), dtype=dtype)).numel())
        prop = certify.load_vnnlib(args.property, num_inputs, num_outputs)
        res = certify.verify_property(model, prop, input_shape=shape, method=args.method or "crown", timeout=args.timeout,
                                      float64=args.float64, complete=args.complete,
                                      generator=torch.Generator().manual_seed(args.seed))
    except FileNotFoundError as e:
        print(f"certkit verify: error: {e}", file=sys.stderr)
        return EXIT_CODES["usage"]
    except certify.UnsupportedLayerError as e:
        print(f"certkit verify: unsupported: {e}", file=sys.stderr)
        return EXIT_CODES["unsupported"]
    cex = None if res.counterexample is None else res.counterexample.flatten().tolist()
    out = None if res.output is None else res.output.flatten().tolist()
    if args.json:
        print_json({"verdict": res.verdict, "method": res.method, "seconds": res.seconds, "reason": res.reason,
                    "branches": res.branches, "case": res.case, "counterexample": cex, "output": out}, indent=None)
    else:
        print(res.verdict)
        if cex is not None:
            print("; counterexample (VNN-COMP format)")
            print("(" + "\n".join([f"(X_{i} {v!r})" for i, v in enumerate(cex)]
                                  + [f"(Y_{j} {v!r})" for j, v in enumerate(out or [])]) + ")")
        elif res.reason:
            print(f"; {res.reason}")
    return EXIT_CODES[res.verdict]
