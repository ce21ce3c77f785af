"""Every ```python block of the README and of the documentation pages (docs/**/*.md) runs as written, each in a
fresh interpreter (examples users copy).

A block that cannot run standalone is preceded by ``<!-- not run: REASON -->`` (an HTML comment, invisible on the
rendered page) and must give the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?:<!--\s*not run:(?P<reason>[^>]*?)-->\s*\n)?^```python[^\n]*\n(?P<code>.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in FENCE.finditer(page.read_text())]


BLOCKS = [(page.relative_to(ROOT).as_posix(), i, code, reason)
          for page in PAGES for i, (code, reason) in enumerate(_blocks(page))]
RUNNABLE = [pytest.param(code, id=f"{name}#{i}") for name, i, code, reason in BLOCKS if reason is None]


def test_readme_has_examples() -> None:
    assert len([b for b in BLOCKS if b[0] == "README.md" and b[3] is None]) >= 3
    assert len(RUNNABLE) >= 20


def test_blocks_not_run_give_a_reason() -> None:
    missing = [f"{name}#{i}" for name, i, _, reason in BLOCKS if reason is not None and not reason.strip()]
    assert not missing, f"`<!-- not run: REASON -->` without a reason: {missing}"


def test_fence_parser_sees_marked_blocks() -> None:
    page = "text\n<!-- not run: needs a GPU -->\n```python\nimport x\n```\n\n```python\nprint(1)\n```\n"
    found = [(m["code"], m["reason"]) for m in FENCE.finditer(page)]
    assert found == [("import x\n", " needs a GPU "), ("print(1)\n", None)]


@pytest.mark.slow
@pytest.mark.parametrize("code", RUNNABLE)
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TQDM_DISABLE": "1"}
    # The checkout's packages first (a script's sys.path starts at its own folder, not the cwd).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"example failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
