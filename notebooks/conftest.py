"""nbmake runs each notebook in a kernel whose working directory is ``notebooks/``: put the checkout first on
the kernel's ``sys.path`` so the notebooks import this checkout's packages (``certkit_app`` included)."""

import os
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
