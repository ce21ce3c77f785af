"""A pickle cache for fitted filters, in the model cache directory (``certkit.cache.cache_dir()``).

Keys name the recipe version and the scikit-learn version (pickles are not portable across versions);
a corrupt or stale file is rebuilt. Writes are atomic; concurrent first uses are serialised by a
file lock, as for the torch models.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

from filelock import FileLock

from certkit.cache import cache_dir

__all__ = ["cached_pickle"]


def cached_pickle(name: str, build: Callable[[], Any]) -> Any:
    """Load the pickle ``{name}-sk{sklearn version}.pkl`` from the cache, or ``build()`` it and save it atomically.

    Only load pickles this cache wrote: unpickling runs code. A file that fails to load is rebuilt.
    """
    import sklearn

    path = cache_dir() / f"{name}-sk{sklearn.__version__}.pkl"
    with FileLock(str(path.with_suffix(".lock"))):
        if path.exists():
            try:
                with path.open("rb") as f:
                    return pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
                pass  # corrupt or stale (e.g. a class that moved): rebuild below
        obj = build()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f)
        os.replace(tmp, path)
    return obj
