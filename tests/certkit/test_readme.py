"""Every ```python block of the README runs as written, each in a fresh interpreter (examples users copy)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"readme_{index}.py"
    script.write_text(BLOCKS[index])
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TQDM_DISABLE": "1"}
    # The checkout's packages first (a script's sys.path starts at its own folder, not the cwd).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(README.parent), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(script)], cwd=README.parent, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"README block {index} failed:\n{BLOCKS[index]}\n--- stderr ---\n{done.stderr[-3000:]}"
