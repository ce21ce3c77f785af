"""``certkit verify MODEL.onnx PROPERTY.vnnlib``: verdicts agree with certify.verify, counterexamples
violate the property (checked with onnxruntime), documented exit codes, errors naming file/line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import certify
from certkit_app.cli import main
from certkit_app.verify_cmd import EXIT_CODES

onnx = pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (tests of the 'onnx' extra) is not installed")
try:
    from certify.onnx_io import _import_onnx2torch

    _import_onnx2torch()
except ImportError:
    pytest.skip("the optional 'onnx' extra (onnx2torch) is not installed", allow_module_level=True)


def _cnn() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.ReLU(),
                         nn.Linear(16, 3)).eval()


def _robustness(x0: torch.Tensor, eps: float, label: int, k: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(x0.numel())]
    lines += [f"(declare-const Y_{j} Real)" for j in range(k)]
    for i, v in enumerate(x0.flatten().tolist()):
        lines.append(f"(assert (<= X_{i} {v + eps!r}))\n(assert (>= X_{i} {v - eps!r}))")
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(k) if j != label) + "))")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    model = _cnn()
    path = tmp_path_factory.mktemp("m") / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 1, 6, 6),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"])  # fixed batch of 1, as in VNN-COMP
    return model, path


def test_cli_verdicts_agree_with_verify(onnx_model: tuple[nn.Module, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    model, path = onnx_model
    sess = ort.InferenceSession(str(path))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 6, 6, generator=gen)
    y = model(x).argmax(1)
    seen = set()
    for eps in (0.002, 0.3):
        ok = certify.verify(model, x, y, eps, method="crown")
        for i in range(3):
            prop = tmp_path / f"p{i}.vnnlib"
            prop.write_text(_robustness(x[i], eps, int(y[i]), 3))
            code = main(["verify", str(path), str(prop), "--json", "--method", "crown"])
            row = json.loads(capsys.readouterr().out)
            assert code == EXIT_CODES[row["verdict"]]
            seen.add(row["verdict"])
            assert (row["verdict"] == "verified") == bool(ok[i])
            if row["verdict"] == "falsified":
                cx = torch.tensor(row["counterexample"], dtype=torch.float32)
                assert bool((cx >= x[i].flatten() - eps - 1e-6).all() and (cx <= x[i].flatten() + eps + 1e-6).all())
                out = sess.run(None, {"x": cx.reshape(1, 1, 6, 6).numpy()})[0][0]
                label = int(y[i])
                assert any(out[j] >= out[label] - 1e-6 for j in range(3) if j != label)
    assert seen == {"verified", "falsified"}


def test_cli_text_output_and_unknown(onnx_model: tuple[nn.Module, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, path = onnx_model
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_robustness(torch.full((36,), 0.5), 0.05, 0, 3))
    code = main(["verify", str(path), str(prop), "--timeout", "1e-9"])
    out = capsys.readouterr().out
    assert code == EXIT_CODES["unknown"] == 3 and out.startswith("unknown") and "timeout" in out


def test_cli_errors_name_file_and_line(onnx_model: tuple[nn.Module, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, path = onnx_model
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)\n")
    assert main(["verify", str(path), str(bad)]) == 2
    assert "bad.vnnlib:2" in capsys.readouterr().err
    wrong = tmp_path / "wrong.vnnlib"
    wrong.write_text("(declare-const X_40 Real)\n")
    assert main(["verify", str(path), str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "wrong.vnnlib:1" in err and "X_40" in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    assert main(["verify", str(junk), str(bad)]) == 2
    assert "junk.onnx" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "none.onnx"), str(bad)]) == 2
    assert "none.onnx" in capsys.readouterr().err


def test_cli_complete_decides_and_agrees_with_verify_complete(onnx_model: tuple[nn.Module, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, path = onnx_model
    sess = ort.InferenceSession(str(path))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 6, 6, generator=gen)
    y = model(x).argmax(1)
    seen = set()
    for eps in (0.03, 0.1):
        for i in range(3):
            prop = tmp_path / f"c{i}.vnnlib"
            prop.write_text(_robustness(x[i], eps, int(y[i]), 3))
            code = main(["verify", str(path), str(prop), "--json", "--complete", "--timeout", "60"])
            row = json.loads(capsys.readouterr().out)
            assert code == EXIT_CODES[row["verdict"]] and row["verdict"] in ("verified", "falsified"), row
            seen.add(row["verdict"])
            ref = certify.verify_complete(model, x[i : i + 1], int(y[i]), eps, timeout=60)
            assert ref.verdict == row["verdict"]
            if row["verdict"] == "falsified":
                cx = torch.tensor(row["counterexample"], dtype=torch.float32)
                assert bool((cx >= x[i].flatten() - eps - 1e-6).all() and (cx <= x[i].flatten() + eps + 1e-6).all())
                out = sess.run(None, {"x": cx.reshape(1, 1, 6, 6).numpy()})[0][0]
                assert any(out[j] >= out[int(y[i])] for j in range(3) if j != int(y[i]))
    assert seen == {"verified", "falsified"}
    prop = tmp_path / "t.vnnlib"
    prop.write_text(_robustness(x[0], 0.1, int(y[0]), 3))
    assert main(["verify", str(path), str(prop), "--complete", "--timeout", "1e-9"]) == EXIT_CODES["unknown"]
    assert "timeout" in capsys.readouterr().out


class _NormViewCNN(nn.Module):
    """A plain ReLU CNN as users export it: (x - mean) / std with (1, C, 1, 1) buffers (ONNX Sub, Div) and a
    flatten written as x.view(x.size(0), -1) (ONNX Reshape); the CLI answered 'unsupported' (exit 4) on it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.register_buffer("mean", torch.tensor([0.5]).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([0.25]).view(1, 1, 1, 1))
        self.c, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c((x - self.mean) / self.std))
        return self.fc(h.view(h.size(0), -1))


@pytest.mark.parametrize("opset", [None, 13])
def test_cli_decides_a_normalised_view_flatten_cnn(opset: int | None, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model = _NormViewCNN().eval()
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 1, 6, 6),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], **({} if opset is None else {"opset_version": opset}))
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    label = int(model(x).argmax(1))
    seen = set()
    for eps in (0.0005, 0.5):
        prop = tmp_path / "p.vnnlib"
        prop.write_text(_robustness(x[0], eps, label, 3))
        code = main(["verify", str(path), str(prop), "--json", "--method", "crown"])
        row = json.loads(capsys.readouterr().out)
        assert code == EXIT_CODES[row["verdict"]] and row["verdict"] in ("verified", "falsified")
        ok = certify.verify(model, x, torch.tensor([label]), eps, method="crown")
        assert (row["verdict"] == "verified") == bool(ok[0])
        seen.add(row["verdict"])
    assert seen == {"verified", "falsified"}


def test_cli_symbolic_input_shape_and_conflicting_flags(tmp_path: Path, onnx_model: tuple[nn.Module, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A model whose per-sample input dims are symbolic exits 2 naming the file (it raised torch's 'mat1 and
    mat2 shapes cannot be multiplied'); --method with --complete (which ignores it) is refused."""
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 2),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N", 1: "F"}, "y": {0: "N"}})
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_robustness(torch.full((2,), 0.5), 0.01, 0, 2))
    assert main(["verify", str(path), str(prop), "--json"]) == 2
    captured = capsys.readouterr()
    assert "dyn.onnx" in captured.err and "symbolic" in captured.err and not captured.out
    _, cnn = onnx_model
    prop.write_text(_robustness(torch.full((36,), 0.5), 0.01, 0, 3))
    assert main(["verify", str(cnn), str(prop), "--complete", "--method", "ibp"]) == 2
    err = capsys.readouterr().err
    assert "--method" in err and "--complete" in err and err.count("\n") == 1


def test_cli_decides_a_float64_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A float64 export exited 2 with torch's 'mat1 and mat2 must have the same dtype' (a float32 shape probe)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)).double().eval()
    path = tmp_path / "f64.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 2, dtype=torch.float64),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"])
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    label = int(model(x).argmax(1))
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_robustness(x[0], 0.001, label, 2))
    assert main(["verify", str(path), str(prop), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "verified"
