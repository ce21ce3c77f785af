"""The ``certkit`` console script; the commands live in :mod:`certify.cli`."""

from certify.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
