"""ONNX loading (round trip through torch.onnx.export), VNN-LIB parsing, and verify_property verdicts."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import certify
from certify.onnx_io import _import_onnx2torch
from certify.vnnlib import VnnlibError

onnx = pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (tests of the 'onnx' extra) is not installed")
try:
    _import_onnx2torch()
except ImportError:
    pytest.skip("the optional 'onnx' extra (onnx2torch) is not installed", allow_module_level=True)


class ResBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.short = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.c1(x)))
        h = torch.relu(self.c2(h) + self.short(x))
        return self.fc(torch.flatten(h, 1))


def _models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    res = ResBlock()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        res.bn.running_mean.uniform_(-0.2, 0.2)
        res.bn.running_var.uniform_(0.5, 1.5)
    return {
        "mlp": (nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                              nn.Linear(8, 3)), (3, 2, 2)),
        "cnn": (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 5)),
                (3, 6, 6)),
        "resnet_block": (res, (3, 6, 6)),
        "cnn_maxpool": (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                                      nn.ReLU(), nn.Flatten(), nn.Linear(4 * 1 * 1, 5)), (3, 6, 6)),
    }


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, dynamic: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic else None)
    return path


@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_maxpool", "resnet_block"])
def test_onnx_round_trip_equal_outputs_and_bounds(name: str, dynamic: bool, tmp_path: Path) -> None:
    model, shape = _models()[name]
    model.eval()
    path = _export(model, shape, tmp_path / f"{name}.onnx", dynamic)
    loaded = certify.load_onnx(path)
    assert not loaded.training
    sess = ort.InferenceSession(str(path))
    gen = torch.Generator().manual_seed(1)
    x1 = torch.rand((1, *shape), generator=gen)
    ref = torch.from_numpy(sess.run(None, {"x": x1.numpy()})[0])
    torch.testing.assert_close(loaded(x1), ref, rtol=0, atol=1e-5)
    x = torch.rand((4, *shape), generator=gen)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-5)
    for method in ("ibp", "crown", "crown-ibp"):
        got = certify.bounds(loaded, x, 0.02, method=method)
        want = certify.bounds(model, x, 0.02, method=method)
        torch.testing.assert_close(got.lower, want.lower, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.upper, want.upper, rtol=1e-5, atol=1e-5)


class ViewFlattenCNN(nn.Module):
    """Flatten written as a reshape, ``x.view(x.size(0), -1)``: a Reshape to a constant target with a fixed
    batch, a Shape -> Gather -> Unsqueeze -> Concat target with a dynamic one."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.c(x))
        return self.fc(h.view(h.size(0), -1))


class SubDivNorm(nn.Module):
    """The common CIFAR input normalisation ``(x - mean) / std`` with (1, C, 1, 1) buffers (ONNX Sub and Div)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class AvgPoolHead(nn.Module):
    """kuangliu's CIFAR ResNet head: ``F.avg_pool2d(out, k)`` then a view-flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 3 * 3, 5)

    def forward(self, x: Tensor) -> Tensor:
        out = F.avg_pool2d(torch.relu(self.c(x)), 2)
        return self.fc(out.view(out.size(0), -1))


class SliceGather(nn.Module):
    """Basic slicing (ONNX Slice) and an integer index (ONNX Gather) of activations."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.fc = nn.Conv2d(2, 3, 3), nn.Linear(3 * 2 * 4 + 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.c(x))
        return self.fc(torch.cat([h[:, :, 1:-1].flatten(1), h[:, 0].flatten(1)], 1))


def _export_models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Common exports that certify must bound (issue 14's acceptance audit: each failed before)."""
    torch.manual_seed(0)
    return {
        "view_flatten_cnn": (ViewFlattenCNN(), (3, 6, 6)),
        "sub_div_normalize": (nn.Sequential(SubDivNorm(), certify.Normalize([0.1, 0.0, -0.1], [1.5, 2.0, 0.5]),
                                            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                            nn.Linear(4 * 2 * 2, 5)), (3, 6, 6)),
        "zeropad2d": (nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1), nn.Flatten(),
                                    nn.Linear(4 * 6 * 6, 5)), (3, 6, 6)),
        "layernorm": (nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3)), (6,)),
        "gelu": (nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3)), (6,)),
        "maxpool1d": (nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                                    nn.Linear(3 * 5, 4)), (2, 12)),
        "avgpool": (AvgPoolHead(), (3, 6, 6)),
        "upsample": (nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(3, 2, 3),
                                   nn.Upsample(scale_factor=2, mode="bilinear"), nn.Flatten(), nn.Linear(2 * 12 * 12, 3)),
                     (2, 6, 6)),
        "slice_gather": (SliceGather(), (2, 6, 6)),
    }


def _export_at(model: nn.Module, shape: tuple[int, ...], path: Path, opset: int | None, dynamic: bool) -> Path:
    kw = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic else None, **kw)
    return path


_EXPORT_CASES = [(name, opset, False) for name in _export_models() for opset in (None, 13, 17)] + [
    ("view_flatten_cnn", opset, True) for opset in (None, 13)] + [("avgpool", None, True)]


@pytest.mark.parametrize(("name", "opset", "dynamic"), _EXPORT_CASES,
                         ids=[f"{n}-opset{o or 'default'}{'-dynamic' if d else ''}" for n, o, d in _EXPORT_CASES])
def test_onnx_common_exports_are_bounded_like_the_torch_model(name: str, opset: int | None, dynamic: bool,
                                                               tmp_path: Path) -> None:
    """Each export (at torch's default opset and at 13 and 17) loads with onnxruntime's outputs (1e-5) and
    certify's bounds equal the torch model's (IBP, CROWN, CROWN-IBP) and contain sampled outputs."""
    model, shape = _export_models()[name]
    model.eval()
    path = _export_at(model, shape, tmp_path / f"{name}.onnx", opset, dynamic)
    loaded = certify.load_onnx(path)
    sess = ort.InferenceSession(str(path))
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        x1 = torch.rand((1, *shape), generator=gen)
        ref = torch.from_numpy(sess.run(None, {"x": x1.numpy()})[0])
        torch.testing.assert_close(loaded(x1), ref, rtol=0, atol=1e-5)
    x = torch.rand((3, *shape), generator=gen)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-5)
    eps = 0.05
    pts = x.unsqueeze(1) + eps * (2 * torch.rand((3, 2000, *shape), generator=gen) - 1)
    with torch.no_grad():
        out = loaded(pts.flatten(0, 1)).reshape(3, 2000, -1)
    for method in ("ibp", "crown", "crown-ibp"):
        got = certify.bounds(loaded, x, eps, method=method)
        want = certify.bounds(model, x, eps, method=method)
        torch.testing.assert_close(got.lower, want.lower, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.upper, want.upper, rtol=1e-5, atol=1e-5)
        assert bool((out >= got.lower.unsqueeze(1) - 1e-5).all() and (out <= got.upper.unsqueeze(1) + 1e-5).all())


def test_malformed_onnx_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\xff\x13")
    with pytest.raises(ValueError, match=r"bad\.onnx"):
        certify.load_onnx(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        certify.load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match=r"`path`.*existing file"):  # a directory: it said "does not exist"
        certify.load_onnx(tmp_path)
    with pytest.raises(TypeError, match="path"):
        certify.load_onnx(3)  # type: ignore[arg-type]


def _onnx_with(op: str, tmp_path: Path) -> Path:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(op, ["x"], ["y"], name=f"my_{op.lower()}_node")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, str(path))
    return path


def test_unsupported_onnx_operators_name_the_node(tmp_path: Path) -> None:
    # not convertible at all: the loader names the ONNX node and operator
    with pytest.raises(certify.UnsupportedLayerError, match=r"my_hardmax_node.*Hardmax"):
        certify.load_onnx(_onnx_with("Hardmax", tmp_path))
    # convertible, but not boundable: the engine names the ONNX node
    # a batch of 1 built into a computed Reshape target (not freed by load_onnx): refused naming the node
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Constant", [], ["a"], value=numpy_helper.from_array(np.array([1], np.int64))),
             helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.array([2, 2], np.int64))),
             helper.make_node("Concat", ["a", "b"], ["t"], axis=0, name="cat_shape"),
             helper.make_node("Reshape", ["x", "t"], ["y"], name="my_reshape_node")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "fixed.onnx"))
    with pytest.raises(certify.UnsupportedLayerError, match="my_reshape_node"):
        certify.bounds(certify.load_onnx(tmp_path / "fixed.onnx"), torch.rand(1, 4), 0.1)
    for op in ("Sin", "Sqrt", "Erf", "Abs"):
        model = certify.load_onnx(_onnx_with(op, tmp_path))
        with pytest.raises(certify.UnsupportedLayerError, match=rf"my_{op.lower()}_node"):
            certify.bounds(model, torch.zeros(2, 4), 0.1)


# -- VNN-LIB -----------------------------------------------------------------------------------

MULTI_BOX = """; two input boxes, each with its own disjunction of output constraints
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (or
  (and (>= X_0 -1.0) (<= X_0 -0.5) (>= X_1 0) (<= X_1 0.25))
  (and (>= X_0 0.5) (<= X_0 1e0) (>= X_1 -0.25) (<= X_1 0.0))
))
(assert (or
  (and (<= Y_0 Y_1))
  (and (>= (+ Y_2 (* -2 Y_0)) 0.5) (<= Y_1 3))
))
"""


def test_vnnlib_several_boxes_and_disjunctions(tmp_path: Path) -> None:
    path = tmp_path / "multi.vnnlib"
    path.write_text(MULTI_BOX)
    prop = certify.load_vnnlib(path, 2, 3)
    assert prop.num_inputs == 2 and prop.num_outputs == 3 and len(prop.cases) == 2
    c0, c1 = prop.cases
    torch.testing.assert_close(c0.lower, torch.tensor([-1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(c0.upper, torch.tensor([-0.5, 0.25], dtype=torch.float64))
    torch.testing.assert_close(c1.lower, torch.tensor([0.5, -0.25], dtype=torch.float64))
    torch.testing.assert_close(c1.upper, torch.tensor([1.0, 0.0], dtype=torch.float64))
    for case in prop.cases:
        assert len(case.unsafe) == 2
        first, second = case.unsafe
        # Y_0 - Y_1 <= 0
        torch.testing.assert_close(first.A, torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64))
        torch.testing.assert_close(first.b, torch.tensor([0.0], dtype=torch.float64))
        # 0.5 - Y_2 + 2 Y_0 <= 0  and  Y_1 <= 3
        torch.testing.assert_close(second.A, torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64))
        torch.testing.assert_close(second.b, torch.tensor([-0.5, 3.0], dtype=torch.float64))
    y = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.6], [1.0, 0.0, 2.4]])
    assert first.satisfied(y).tolist() == [True, False, False]
    assert second.satisfied(y).tolist() == [False, True, False]


@pytest.mark.parametrize(("text", "line", "match"), [
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)\n", 2, "never closed"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)))\n", 2, "unbalanced"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= Z_0 1))\n", 3, "unknown symbol"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n\n(assert (<= Y_1 1))\n", 4, "not declared"),
    ("(declare-const X_0 Real)\n(declare-const X_5 Real)\n", 2, "does not exist"),
    ("(declare-const X_0 Real)\n(assert (<= (* X_0 X_0) 1))\n", 2, "not linear"),
    ("(declare-const X_0 Real)\n(assert (=> (<= X_0 1) (>= X_0 0)))\n", 2, "unsupported operator"),
    ("(declare-const X_0 Real)\n(declare-fun f () Real)\n", 2, "unsupported command"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= (+ X_0 Y_0) 1))\n", 3, "single input"),
])
def test_malformed_vnnlib_names_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    _assert_refused_at(tmp_path, text, line, match, 1)


def _assert_refused_at(tmp_path: Path, text: str, line: int, match: str, n: int) -> None:
    """``text`` as a property of ``n`` inputs and ``n`` outputs is refused naming its file and ``line``."""
    path = tmp_path / "bad.vnnlib"
    path.write_text(text)
    with pytest.raises(VnnlibError, match=rf"bad\.vnnlib:{line}: .*{match}"):
        certify.load_vnnlib(path, n, n)


def test_vnnlib_unbounded_input_and_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "free.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n")
    with pytest.raises(VnnlibError, match=r"free\.vnnlib: .*X_0.*no lower or upper bound"):
        certify.load_vnnlib(path, 1, 1)
    with pytest.raises(ValueError, match="num_inputs"):
        certify.load_vnnlib(path, 0, 1)
    with pytest.raises(FileNotFoundError):
        certify.load_vnnlib(tmp_path / "nope.vnnlib", 1, 1)


# -- verify_property -----------------------------------------------------------------------------

def robustness_vnnlib(x0: Tensor, eps: float, label: int, k: int) -> str:
    """VNN-COMP's local-robustness property: the unsafe set is 'some other class scores >= the label'."""
    lines = [f"(declare-const X_{i} Real)" for i in range(x0.numel())]
    lines += [f"(declare-const Y_{j} Real)" for j in range(k)]
    for i, v in enumerate(x0.flatten().tolist()):
        lines += [f"(assert (>= X_{i} {v - eps!r}))", f"(assert (<= X_{i} {v + eps!r}))"]
    ors = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(k) if j != label)
    lines.append(f"(assert (or {ors}))")
    return "\n".join(lines) + "\n"


def _small_net() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
def test_verify_property_agrees_with_verify(method: str, tmp_path: Path) -> None:
    model = _small_net()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 4, generator=gen)
    y = model(x).argmax(1)
    verdicts = []
    for eps in (0.001, 0.03, 0.1, 1.0):
        ok = certify.verify(model, x, y, eps, method=method)
        for i in range(x.shape[0]):
            path = tmp_path / f"p{i}.vnnlib"
            path.write_text(robustness_vnnlib(x[i], eps, int(y[i]), 3))
            prop = certify.load_vnnlib(path, 4, 3)
            res = certify.verify_property(model, prop, method=method, generator=torch.Generator().manual_seed(0))
            verdicts.append(res.verdict)
            assert (res.verdict == "verified") == bool(ok[i])
            if res.verdict == "falsified":
                assert res.counterexample is not None and res.output is not None
                cx = res.counterexample.reshape(-1)
                assert bool(((cx >= x[i] - eps - 1e-7) & (cx <= x[i] + eps + 1e-7)).all())
                out = model(res.counterexample.reshape(1, 4))[0]
                others = torch.cat([out[: int(y[i])], out[int(y[i]) + 1:]])
                assert bool((others >= out[int(y[i])]).any())  # some other class scores >= the label
    assert {"verified", "falsified"} <= set(verdicts)


def test_verify_property_checks_shapes_and_timeout(tmp_path: Path) -> None:
    model = _small_net()
    path = tmp_path / "p.vnnlib"
    path.write_text(robustness_vnnlib(torch.full((4,), 0.5), 0.1, 0, 3))
    prop = certify.load_vnnlib(path, 4, 3)
    with pytest.raises(ValueError, match=r"p\.vnnlib.*4 inputs.*shape \(5,\)"):
        certify.verify_property(model, prop, input_shape=(5,))
    wide = nn.Sequential(model, nn.Linear(3, 4)).eval()
    with pytest.raises(ValueError, match=r"p\.vnnlib.*3 outputs.*returns 4"):
        certify.verify_property(wide, prop)
    res = certify.verify_property(model, prop, timeout=1e-9)
    assert res.verdict == "unknown" and "timeout" in res.reason
    with pytest.raises(ValueError, match="timeout"):
        certify.verify_property(model, prop, timeout=-1)


def test_box_bounds_contain_sampled_outputs() -> None:
    model = _small_net()
    gen = torch.Generator().manual_seed(3)
    lo = torch.rand(2, 4, generator=gen)
    hi = lo + torch.rand(2, 4, generator=gen) * torch.tensor([0.01, 0.3, 0.05, 0.2])
    for method in ("ibp", "crown", "crown-ibp"):
        bl, bu = certify.box_bounds(model, lo, hi, method=method)
        pts = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * torch.rand(2, 10_000, 4, generator=gen)
        with torch.no_grad():
            out = model(pts)
        assert bool((out >= bl.unsqueeze(1) - 1e-6).all() and (out <= bu.unsqueeze(1) + 1e-6).all())
    assert math.isfinite(float(bl.sum()))


def test_verify_property_counterexample_lies_in_the_float64_box(tmp_path: Path) -> None:
    """A float32 model and a box whose lower bound 0.7 rounds down in float32: the float32 point just below
    0.7 has f(x) = x <= 0.69999999 (unsafe), but every point of the box has f(x) >= 0.7 > 0.69999999, so no
    counterexample exists; one must not be reported (it was, from the point outside the box)."""
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.zero_()
    model.eval()
    assert float(torch.tensor(0.7, dtype=torch.float32)) < 0.7
    path = tmp_path / "edge.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0.7))\n"
                    "(assert (<= X_0 0.8))\n(assert (<= Y_0 0.69999999))\n")
    prop = certify.load_vnnlib(path, 1, 1)
    res = certify.verify_property(model, prop, method="crown", generator=torch.Generator().manual_seed(0))
    assert res.verdict != "falsified"
    # a true counterexample is still found, inside the box, and violates the property at batch 1
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0.7))\n"
                    "(assert (<= X_0 0.8))\n(assert (<= Y_0 0.71))\n")
    res = certify.verify_property(model, certify.load_vnnlib(path, 1, 1), generator=torch.Generator().manual_seed(0))
    assert res.verdict == "falsified" and res.counterexample is not None
    cx = float(res.counterexample.to(torch.float64).reshape(()))
    assert 0.7 <= cx <= 0.8
    assert float(model(res.counterexample.reshape(1, 1))[0, 0]) <= 0.71


def _resize_file(path: Path, mode: str, ctm: str, nearest_mode: str | None, scale: float, opset: int) -> str:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, int(4 * scale), int(4 * scale)])
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    sc = numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if nearest_mode is not None:
        attrs["nearest_mode"] = nearest_mode
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="up", **attrs)
    m = helper.make_model(helper.make_graph([node], "g", [x], [y], initializer=[roi, sc]),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return str(path)


_NEAREST = ["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]
_CTM = ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn"]
_RESIZES = ([("nearest", c, n) for c in _CTM for n in _NEAREST] + [("linear", c, None) for c in _CTM[:4]]
            + [("cubic", "half_pixel", None)])
# the settings where F.interpolate equals ONNX's Resize, at the scales of this test (see onnx_io._resize_exact)
_EXACT = {("nearest", "asymmetric", "floor", s) for s in (1.5, 2.0, 3.0)} | {
    ("nearest", c, n, s) for c in ("half_pixel", "pytorch_half_pixel") for n in ("round_prefer_floor",
                                                                                  "round_prefer_ceil")
    for s in (2.0, 3.0)} | {("linear", c, None, s) for c in ("half_pixel", "align_corners") for s in (1.5, 2.0, 3.0)} | {
    ("linear", "pytorch_half_pixel", None, s) for s in (2.0, 3.0)}


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0])
@pytest.mark.parametrize(("mode", "ctm", "nearest_mode"), _RESIZES)
def test_onnx_resize_is_bounded_only_where_torch_computes_it_exactly(
        tmp_path: Path, mode: str, ctm: str, nearest_mode: str | None, scale: float, opset: int) -> None:
    """ONNX Resize: every setting is either refused naming the node, or loaded as a module equal to onnxruntime on the
    file (1e-5) whose bounds contain onnxruntime's outputs; exactly the settings F.interpolate computes are accepted.
    (onnx2torch's converter keeps only the mode and align_corners and only warns about the rest: ONNX's default
    nearest resize at scale 1.5 was bounded as another function, 0.55 off, before the check.)"""
    path = _resize_file(tmp_path / "r.onnx", mode, ctm, nearest_mode, scale, opset)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    if (mode, ctm, nearest_mode, scale) not in _EXACT:
        with pytest.raises(certify.UnsupportedLayerError, match="Resize"):
            certify.load_onnx(path)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = certify.load_onnx(path)
    want = torch.from_numpy(ort.InferenceSession(path).run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        assert torch.allclose(model(x), want, atol=1e-5)
    pts = x + 0.05 * (2 * torch.rand(64, *x.shape, generator=torch.Generator().manual_seed(1)) - 1)
    outs = torch.from_numpy(ort.InferenceSession(path).run(None, {"x": pts.reshape(-1, 1, 4, 4).numpy()})[0])
    outs = outs.reshape(64, 3, -1)
    for method in ("ibp", "crown"):
        b = certify.bounds(model, x, 0.05, method=method)
        assert bool((outs >= b.lower - 1e-5).all() and (outs <= b.upper + 1e-5).all()), method


def test_a_converter_rule_computing_another_function_is_caught_at_load_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The general safety net: with the Resize check switched off, onnx2torch converts a nearest resize with
    round_prefer_ceil rounding to torch's floor (another function), and load_onnx refuses it by comparing with
    onnxruntime on a probe."""
    import certify.onnx_io as onnx_io

    path = _resize_file(tmp_path / "r.onnx", "nearest", "asymmetric", "round_prefer_ceil", 2.0, 13)
    monkeypatch.setattr(onnx_io, "_resize_exact", lambda node, graph: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(certify.UnsupportedLayerError, match="differs from onnxruntime on a probe input"):
            certify.load_onnx(path)
        monkeypatch.setattr(onnx_io, "PROBE_RTOL", math.inf)  # without the net the wrong module loads
        model = certify.load_onnx(path)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    want = torch.from_numpy(ort.InferenceSession(path).run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        assert float((model(x) - want).abs().max()) > 0.1


# -- audit-cli: VNN-LIB edge cases -----------------------------------------------------------------

_HDR2 = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
_BOX2 = "(assert (>= X_0 0.25))\n(assert (<= X_0 0.5))\n(assert (>= X_1 -0.5))\n(assert (<= X_1 -0.25))\n"


@pytest.mark.parametrize("tail", ["", "(assert (and))\n", "(assert (<= 0 1))\n"])
def test_vnnlib_without_output_constraint_is_violated_by_every_input(tmp_path: Path, tail: str) -> None:
    """No constraint on the outputs: every output is unsafe, so any input of the box is a counterexample
    (verify_property raised an IndexError from an empty (0, K) constraint)."""
    path = tmp_path / "free.vnnlib"
    path.write_text(_HDR2 + _BOX2 + tail)
    prop = certify.load_vnnlib(path, 2, 2)
    (case,) = prop.cases
    assert [c.satisfied(torch.randn(5, 2)).all().item() for c in case.unsafe] == [True]
    model = nn.Sequential(nn.Linear(2, 2)).eval()
    for complete in (False, True):
        res = certify.verify_property(model, prop, complete=complete, generator=torch.Generator().manual_seed(0))
        assert res.verdict == "falsified" and res.counterexample is not None


@pytest.mark.parametrize(("text", "line", "match"), [
    (_HDR2 + _BOX2 + "(assert (>= Y_1 nan))\n", 9, "finite number"),
    (_HDR2 + _BOX2 + "(assert (>= Y_1 inf))\n", 9, "finite number"),
    (_HDR2 + "(assert (>= X_0 -infinity))\n", 5, "finite number"),
    (_HDR2 + _BOX2 + "()\n", 9, "expected a command"),
    (_HDR2 + "(declare-const X_00 Real)\n", 5, "X_i or Y_j"),  # X_00 would alias X_0
    (_HDR2 + _BOX2 + "(assert " + "(and " * 5000 + "(>= Y_1 Y_0)" + ")" * 5000 + ")\n", 9, "nested too deeply"),
])
def test_malformed_vnnlib_names_file_and_line_audit(tmp_path: Path, text: str, line: int, match: str) -> None:
    _assert_refused_at(tmp_path, text, line, match, 2)


def test_vnnlib_encodings_comments_and_number_forms(tmp_path: Path) -> None:
    """A non-UTF-8 file is refused naming it; a UTF-8 byte-order mark, CRLF line ends, comments,
    scientific notation and both negative forms are read."""
    path = tmp_path / "latin.vnnlib"
    path.write_bytes(("; caf\xe9\n" + _HDR2 + _BOX2).encode("latin-1"))
    with pytest.raises(VnnlibError, match=r"latin\.vnnlib: .*UTF-8"):
        certify.load_vnnlib(path, 2, 2)
    text = ("; header\n" + _HDR2 + "(assert (>= X_0 2.5e-1)) ; comment\n(assert (<= X_0 5E-1))\n"
            "(assert (>= X_1 (- 0.5)))\n(assert (<= X_1 -0.25))\n(assert (>= Y_1 Y_0))\n")
    path = tmp_path / "forms.vnnlib"
    path.write_bytes(("\ufeff" + text).replace("\n", "\r\n").encode("utf-8"))
    (case,) = certify.load_vnnlib(path, 2, 2).cases
    torch.testing.assert_close(case.lower, torch.tensor([0.25, -0.5], dtype=torch.float64))
    torch.testing.assert_close(case.upper, torch.tensor([0.5, -0.25], dtype=torch.float64))


def test_vnnlib_expansion_budget_is_counted_before_expanding(tmp_path: Path) -> None:
    """An (or ...) of many (and (or a b) ...) products was expanded in full (16 x 65536 conjunctions here, and
    without bound for more) before the 100000-case budget was checked; it is now refused at once."""
    import time

    inner = "(and " + " ".join("(or (<= Y_0 1) (<= Y_0 2))" for _ in range(16)) + ")"
    path = tmp_path / "blow.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
                    "(assert (or " + " ".join([inner] * 16) + "))\n")
    start = time.perf_counter()
    with pytest.raises(VnnlibError, match=r"blow\.vnnlib:5: .*more than 100000 cases"):
        certify.load_vnnlib(path, 1, 1)
    assert time.perf_counter() - start < 1.0  # it took 4 s


def test_load_onnx_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    """onnx2torch builds nn.Linear / nn.Conv2d modules, whose initialisation drew from torch's global RNG."""
    path = tmp_path / "m.onnx"
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).eval()
        torch.onnx.export(model, (torch.rand(1, 1, 4, 4),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"])
    state = torch.random.get_rng_state()
    certify.load_onnx(path)
    assert torch.equal(state, torch.random.get_rng_state())


def test_verify_property_warns_for_a_half_precision_model(tmp_path: Path) -> None:
    """A float16 model: the verdict's bounds do not account for its rounding, so a LowPrecisionWarning (as
    certify.verify gives for the same dtype); it answered "verified" silently."""
    from certkit.warnings import LowPrecisionWarning

    path = tmp_path / "multi.vnnlib"
    path.write_text(MULTI_BOX)
    prop = certify.load_vnnlib(path, 2, 3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowPrecisionWarning)
        certify.verify_property(model, prop, attack_steps=0)  # float32: no warning
    with pytest.warns(LowPrecisionWarning, match="`model` has dtype torch.float16"):
        try:
            certify.verify_property(model.half(), prop, attack_steps=0)
        except (RuntimeError, TypeError):  # a CPU build without some half kernel: the warning came first
            pass
