"""Loading ONNX models as torch modules that certify's bound propagation can read.

``load_onnx(path)`` converts with ``onnx2torch`` (a maintained ONNX -> torch.fx converter; optional
extra ``certkit[onnx]``) and returns a ``torch.fx.GraphModule`` in evaluation mode. The converted
module is an ordinary torch module: ``certify.bounds`` traces it like any other model, so the
bounds come from certify's own engine. ONNX operators outside certify's supported layers raise
:class:`~certify.UnsupportedLayerError` naming the converted node when bounds are requested.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

import torch
from torch import nn

from certify._graph import UnsupportedLayerError
from certkit._validation import check_path

__all__ = ["OnnxModelInfo", "load_onnx", "onnx_model_info"]


class OnnxModelInfo:
    """Input and output names and per-sample shapes of an ONNX model (batch dimension first)."""

    def __init__(self, input_name: str, input_shape: tuple[int | str, ...], output_name: str,
                 output_shape: tuple[int | str, ...]) -> None:
        self.input_name, self.input_shape = input_name, input_shape
        self.output_name, self.output_shape = output_name, output_shape

    def __repr__(self) -> str:
        return (f"OnnxModelInfo(input_name={self.input_name!r}, input_shape={self.input_shape}, "
                f"output_name={self.output_name!r}, output_shape={self.output_shape})")


def _import_onnx2torch() -> Any:
    """``onnx2torch``, importable even where ``torchvision`` is not.

    onnx2torch imports torchvision at import time, only for its NMS and RoiAlign converters. The
    torchvision wheels on PyPI for Linux are CUDA builds, which fail to import next to a CPU-only
    torch; then a placeholder module stands in for torchvision during the import (those two
    converters would raise when used; certify supports neither operator anyway) and is removed
    from ``sys.modules`` afterwards, so a later ``import torchvision`` is unaffected."""
    try:
        return importlib.import_module("onnx2torch")
    except ImportError as e:
        if "onnx2torch" in str(e) or getattr(e, "name", None) == "onnx2torch":
            raise ImportError(
                "certify.load_onnx needs the optional dependencies of the 'onnx' extra: "
                "pip install 'certkit[onnx]' (onnx, onnx2torch)") from e
    except Exception:
        pass
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    stub = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")

    def _missing(*_a: Any, **_k: Any) -> Any:
        raise UnsupportedLayerError("torchvision is not importable here (NMS/RoiAlign ONNX operators)")

    ops.roi_align = ops.nms = ops.box_convert = _missing  # type: ignore[attr-defined]
    stub.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    try:
        for name in [m for m in sys.modules if m == "onnx2torch" or m.startswith("onnx2torch.")]:
            del sys.modules[name]
        return importlib.import_module("onnx2torch")
    finally:
        for name in ("torchvision", "torchvision.ops"):
            if sys.modules.get(name) in (stub, ops):
                del sys.modules[name]


def _read(path: str | os.PathLike[str]) -> Any:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"Expected argument `path` to be a path to an .onnx file, but got {type(path).__name__}")
    try:
        import onnx
    except ImportError as e:
        raise ImportError("certify.load_onnx needs the optional 'onnx' extra: pip install 'certkit[onnx]'") from e
    p = os.fspath(check_path(path, "path", kind="file"))  # InvalidPathError: a ValueError and a FileNotFoundError
    try:
        model = onnx.load(p)
        onnx.checker.check_model(model)
    except Exception as e:
        raise ValueError(f"{p}: not a valid ONNX model ({type(e).__name__}: {e})") from e
    if len(model.graph.output) != 1:
        raise ValueError(f"{p}: expected an ONNX model with one output, but it has {len(model.graph.output)}")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{p}: expected an ONNX model with one input, but it has {len(inputs)}: "
                         f"{[i.name for i in inputs]}")
    return model


def _dims(value_info: Any) -> tuple[int | str, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def onnx_model_info(path: str | os.PathLike[str]) -> OnnxModelInfo:
    """Input/output names and shapes declared by the ONNX file at ``path``."""
    model = _read(path)
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    out = model.graph.output[0]
    return OnnxModelInfo(inp.name, _dims(inp), out.name, _dims(out))


def _batch_free(model: Any) -> Any:
    """Make a model exported with a fixed batch of 1 accept any batch: the input's first dimension
    becomes symbolic, and constant ``Reshape`` targets whose first entry is that batch of 1 copy the
    input's first dimension instead (ONNX's 0 in a Reshape target). Returns a modified copy."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value != 1:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inp = next(i for i in m.graph.input if i.name not in inits)
    inp.type.tensor_type.shape.dim[0].dim_param = "N"
    for out in m.graph.output:
        od = out.type.tensor_type.shape.dim
        if od and od[0].HasField("dim_value") and od[0].dim_value == 1:
            od[0].dim_param = "N"
    del m.graph.value_info[:]
    consts = {i.name: i for i in m.graph.initializer}
    const_nodes = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}
    # only the Reshapes of values computed from the input carry its batch of 1 (a Reshape of a constant,
    # e.g. in the arithmetic of a Pad's amounts, keeps its leading 1); the nodes are in topological order
    dependent = {inp.name}
    for node in m.graph.node:
        if any(i in dependent for i in node.input):
            dependent.update(node.output)
    for node in m.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[0] not in dependent:
            continue
        target = node.input[1]
        if target in consts:
            arr = numpy_helper.to_array(consts[target]).copy()
            if arr.ndim == 1 and arr.size >= 2 and arr[0] == 1:
                arr[0] = 0
                consts[target].CopyFrom(numpy_helper.from_array(arr, target))
        elif target in const_nodes:
            attr = next((a for a in const_nodes[target].attribute if a.name == "value"), None)
            if attr is not None:
                arr = numpy_helper.to_array(attr.t).copy()
                if arr.ndim == 1 and arr.size >= 2 and arr[0] == 1:
                    arr[0] = 0
                    attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))
    return m


#: ONNX operator versions newer than onnx2torch's converters whose changes do not concern float models
#: (new tensor types: float8, int4, bfloat16 ...), converted as the newest older version onnx2torch has;
#: ``check(node)`` refuses the nodes that use what the new version added.
def _no_new_inputs(n: int) -> Any:
    def check(node: Any) -> bool:
        return len([v for v in node.input_values if v]) <= n

    return check


def _pad_check(node: Any) -> bool:  # Pad 18 added the `axes` input, Pad 19 the 'wrap' mode
    return _no_new_inputs(3)(node) and node.attributes.get("mode", "constant") in ("constant", "reflect", "edge")


def _avgpool_check(node: Any) -> bool:  # AveragePool 19 added dilations
    return all(d == 1 for d in node.attributes.get("dilations", [1]))


def _resize_check(node: Any) -> bool:  # Resize 18 added antialias, axes, keep_aspect_ratio_policy; 19 a mode
    a = node.attributes
    policy = a.get("keep_aspect_ratio_policy", "stretch")
    mode = a.get("coordinate_transformation_mode", "half_pixel")
    return (not a.get("antialias", 0) and "axes" not in a
            and (policy.decode() if isinstance(policy, bytes) else policy) == "stretch"
            and (mode.decode() if isinstance(mode, bytes) else mode) != "half_pixel_symmetric")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _resize_exact(node: Any, graph: Any) -> None:
    """Refuse (NotImplementedError naming the node) every ONNX ``Resize`` that onnx2torch's converter would turn
    into a different function: it keeps only the mode and an ``align_corners`` flag and calls ``F.interpolate``
    (torch's nearest is ONNX's ``asymmetric`` + ``floor``; torch's linear is ``half_pixel`` or ``align_corners``),
    and only warns about the other settings, so e.g. ONNX's default nearest resize (``half_pixel`` +
    ``round_prefer_floor``) at scale 1.5 was bounded as a different function (found by review: bounds missed
    onnxruntime's output by 0.55). Accepted, because they equal ``F.interpolate``: nearest with ``asymmetric``
    and ``floor``; nearest with ``half_pixel`` / ``pytorch_half_pixel`` and ``round_prefer_floor`` /
    ``round_prefer_ceil`` at integer scales (the source coordinate ``k + (j - (s - 1) / 2) / s`` of output
    ``k s + j`` rounds to ``k`` = ``floor(x / s)``, never at a tie); linear with ``half_pixel`` or
    ``align_corners``, and ``pytorch_half_pixel`` at scales >= 2 (it differs from ``half_pixel`` only where
    an output dimension has length 1). Cubic, ``tf_crop_and_resize``, ``tf_half_pixel_for_nn`` and opset 10's
    Resize (no coordinate mode) are refused."""
    a = node.attributes
    mode = _text(a.get("mode", "nearest"))
    ctm = _text(a.get("coordinate_transformation_mode", "half_pixel"))
    nearest = _text(a.get("nearest_mode", "round_prefer_floor"))
    name = getattr(node, "name", "") or "?"
    inputs = list(node.input_values)
    scales: list[float] | None = None
    if len(inputs) > 2 and inputs[2]:
        try:
            from onnx2torch.utils.common import get_const_value

            scales = [float(v) for v in torch.as_tensor(get_const_value(inputs[2], graph)).reshape(-1).tolist()]
        except KeyError:
            scales = None
        if scales is not None and not scales:
            scales = None
    spatial = scales[2:] if scales is not None else None

    def refuse(why: str) -> None:
        raise NotImplementedError(f"Resize node {name!r} with mode={mode!r}, coordinate_transformation_mode="
                                  f"{ctm!r}, nearest_mode={nearest!r}, scales={scales}: {why}; certify bounds "
                                  "only the resizes torch's F.interpolate computes exactly (operation_type='Resize')")

    if len(inputs) == 2:  # opset 10: (X, scales), no coordinate mode
        refuse("opset 10's Resize has no coordinate mode; export at opset >= 11")
    if mode == "nearest":
        if ctm == "asymmetric" and nearest == "floor":
            return
        if ctm in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_floor", "round_prefer_ceil"):
            if spatial is not None and all(v >= 1 and float(v).is_integer() for v in spatial):
                return
            refuse("this nearest rounding equals torch's only at integer scales given as a constant")
        refuse("this coordinate transformation / rounding differs from torch's nearest")
    if mode == "linear":
        if ctm in ("half_pixel", "align_corners"):
            return
        if ctm == "pytorch_half_pixel" and spatial is not None and all(v >= 2 for v in spatial):
            return
        refuse("this coordinate transformation differs from torch's linear interpolation")
    refuse(f"mode {mode!r} is not bounded")


def _split_check(node: Any) -> bool:  # Split 18 added the num_outputs attribute
    return "num_outputs" not in node.attributes


_ALIASES: dict[str, tuple[tuple[int, ...], Any]] = {
    "Constant": ((19, 21), None),
    "ConstantOfShape": ((20, 21), None),
    "Reshape": ((19, 21), None),
    "Shape": ((19, 21), None),
    "Size": ((19, 21), None),
    "Cast": ((19, 21), None),
    "Identity": ((19, 21), None),
    "Flatten": ((21,), None),
    "Squeeze": ((21,), None),
    "Unsqueeze": ((21,), None),
    "Transpose": ((21,), None),
    "Equal": ((19,), None),
    "Pad": ((18, 19, 21), _pad_check),
    "AveragePool": ((19,), _avgpool_check),
    "Resize": ((18, 19), _resize_check),
    "Split": ((18,), _split_check),
}
_REGISTERED = False


def _register_converters() -> None:
    """Register (once) onnx2torch converters for operator versions it lacks: the type-only version bumps
    of :data:`_ALIASES` (opsets 18-21, e.g. ``Constant`` 19 of every export at torch's default opset 20) and
    ONNX's ``Gelu`` (opset 20), as ``nn.GELU``."""
    global _REGISTERED
    if _REGISTERED:
        return
    from onnx2torch.node_converters import registry
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    reg = registry._CONVERTER_REGISTRY
    for op, (versions, check) in _ALIASES.items():
        have = sorted(d.version for d in reg if d.domain == "" and d.operation_type == op)
        for v in versions:
            older = [h for h in have if h < v]
            if registry.OperationDescription("", op, v) in reg or not older:
                continue
            base = reg[registry.OperationDescription("", op, older[-1])]

            def conv(node: Any, graph: Any, base: Any = base, check: Any = check, op: str = op, v: int = v) -> Any:
                if check is not None and not check(node):
                    raise NotImplementedError(f"{op} version {v} with the inputs or attributes added after "
                                              f"version {v - 1} (operation_type='{op}')")
                return base(node, graph)

            registry.add_converter(operation_type=op, version=v)(conv)

    for desc in [d for d in reg if d.domain == "" and d.operation_type == "Resize"]:
        def resize(node: Any, graph: Any, base: Any = reg[desc]) -> Any:
            _resize_exact(node, graph)
            return base(node, graph)

        reg[desc] = resize

    def gelu(node: Any, graph: Any) -> Any:
        approximate = node.attributes.get("approximate", "none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else str(approximate)
        return OperationConverterResult(torch_module=nn.GELU(approximate=approximate),
                                        onnx_mapping=onnx_mapping_from_node(node=node))

    if registry.OperationDescription("", "Gelu", 20) not in reg:
        registry.add_converter(operation_type="Gelu", version=20)(gelu)

    def reduce_axes_input(node: Any, graph: Any) -> Any:  # ReduceMean/Max/Min 18+: the axes became an input
        from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
        from onnx2torch.utils.common import OnnxMapping, get_const_value

        op = node.operation_type
        if node.attributes.get("noop_with_empty_axes", 0):
            raise NotImplementedError(f"{op} with noop_with_empty_axes=1 (operation_type='{op}')")
        axes = None
        if len(node.input_values) > 1 and node.input_values[1]:
            try:
                axes = [int(a) for a in get_const_value(node.input_values[1], graph).reshape(-1).tolist()]
            except KeyError as e:
                raise NotImplementedError(f"{op} with input-dependent axes (operation_type='{op}')") from e
        return OperationConverterResult(
            torch_module=OnnxReduceStaticAxes(op, axes or None, node.attributes.get("keepdims", 1)),
            onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))

    for op, versions in (("ReduceMean", (18,)), ("ReduceMax", (18, 20)), ("ReduceMin", (18, 20))):
        for v in versions:
            if registry.OperationDescription("", op, v) not in reg:
                registry.add_converter(operation_type=op, version=v)(reduce_axes_input)
    _REGISTERED = True


def _downgraded(model: Any, opset: int = 17) -> Any:
    """The model converted to ONNX opset ``opset`` (None if it is not newer, or cannot be converted)."""
    import onnx

    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if current <= opset:
        return None
    try:
        return onnx.version_converter.convert_version(model, opset)
    except Exception:
        return None


def load_onnx(path: str | os.PathLike[str]) -> nn.Module:
    """Load the ONNX model at ``path`` as a torch module in evaluation mode.

    The module computes what onnxruntime computes on the file (to ~1e-5; tested on MLPs, CNNs with
    max-pooling and residual blocks exported by ``torch.onnx.export``). A model exported with a fixed
    batch of 1 (common in VNN-COMP) is made batch-free first (see :func:`_batch_free`), so that it
    accepts the batches certify evaluates; its outputs on a batch of 1 are unchanged. Operator versions of
    opsets 18-21 that only added tensor types (and ONNX's ``Gelu``) are converted as their previous version
    (see :func:`_register_converters`); other newer operators after a conversion down to opset 17. The
    converted module is then compared with onnxruntime on one seeded probe input, and a model on which they
    differ (beyond ``PROBE_RTOL`` x (1 + max |output|)) is refused: a converter rule that computes another
    function is never bounded silently. Torch's global RNG is left as it was.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a valid ONNX model, or has several inputs or outputs.
        UnsupportedLayerError: an operator onnx2torch cannot convert (the message names the node), or the
            converted module differs from onnxruntime on the probe input.
        ImportError: the optional 'onnx' extra is not installed.
    """
    model = _read(path)
    p = os.fspath(path)
    o2t = _import_onnx2torch()
    _register_converters()
    by_type: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        by_type.setdefault(node.op_type, node.name or f"#{i}")
    try:
        with torch.random.fork_rng(devices=[]):  # the converter's nn.Linear / nn.Conv init draws from the global RNG
            try:
                module = o2t.convert(_batch_free(model))
            except NotImplementedError:
                # onnx2torch registers most converters for the opsets up to 17; a newer export often
                # converts after a version downgrade (identical semantics for the operators concerned)
                older = _downgraded(model)
                if older is None:
                    raise
                module = o2t.convert(_batch_free(older))
    except NotImplementedError as e:
        msg = str(e)
        op = next((t for t in by_type if f"operation_type='{t}'" in msg or f"'{t}'" in msg), None)
        where = f" (node {by_type[op]!r}, operator {op})" if op else ""
        raise UnsupportedLayerError(f"{p}: ONNX operator not supported by the converter{where}: {msg}") from e
    except Exception as e:
        raise ValueError(f"{p}: could not convert the ONNX model to torch ({type(e).__name__}: {e})") from e
    module.eval()
    for prm in module.parameters():
        prm.requires_grad_(False)
    _check_against_onnxruntime(model, module, p)
    return module


#: Largest tolerated difference between the converted module and onnxruntime on the load-time probe, relative
#: to ``1 + max |output|`` (float32 products summed in another order differ by ~1e-6 on the tested models).
PROBE_RTOL = 1e-4


def _check_against_onnxruntime(model: Any, module: nn.Module, p: str) -> None:
    """Run the file in onnxruntime and the converted module on one seeded probe input (batch 2, or the file's
    fixed batch) and refuse the model (``UnsupportedLayerError``) where they differ beyond :data:`PROBE_RTOL`: a
    general safety net for converter rules that would compute another function (e.g. onnx2torch's Resize, which
    keeps only some attributes). Skipped where onnxruntime is not installed, where a non-batch input dimension is
    symbolic, or the input is not float32 / float64. The probe's values come from a local generator (torch's global
    RNG is untouched)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is part of the 'onnx' extra
        return
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = _dims(inp)
    dtype = {1: torch.float32, 11: torch.float64}.get(inp.type.tensor_type.elem_type)
    if dtype is None or not dims or any(not isinstance(d, int) or d <= 0 for d in dims[1:]):
        return
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 2
    x = torch.randn(batch, *[int(d) for d in dims[1:]], generator=torch.Generator().manual_seed(0), dtype=dtype)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        want = torch.from_numpy(sess.run(None, {inp.name: x.numpy()})[0])
    except Exception:  # onnxruntime cannot run the file on this probe (e.g. a shape it rejects): nothing to compare
        return
    try:
        with torch.no_grad():
            got = module(x)
    except Exception as e:
        raise UnsupportedLayerError(f"{p}: the converted model fails on a probe input of shape {tuple(x.shape)} "
                                    f"that onnxruntime runs ({type(e).__name__}: {e})") from e
    if not isinstance(got, torch.Tensor) or got.numel() != want.numel():
        raise UnsupportedLayerError(f"{p}: the converted model's output ({getattr(got, 'shape', type(got))}) differs "
                                    f"in shape from onnxruntime's {tuple(want.shape)} on a probe input")
    diff = float((got.reshape(want.shape).to(torch.float64) - want.to(torch.float64)).abs().max())
    scale = 1.0 + float(want.abs().max())
    if not diff <= PROBE_RTOL * scale:  # NaN counts as a difference
        raise UnsupportedLayerError(f"{p}: the converted model differs from onnxruntime on a probe input by {diff:.3g} "
                                    f"(tolerance {PROBE_RTOL:g} x {scale:.3g}): an operator is converted to another "
                                    "function; certify refuses to bound it")


def _onnx_dtype(model: nn.Module) -> torch.dtype:
    return next((t.dtype for t in model.parameters() if t.is_floating_point()), torch.float32)
