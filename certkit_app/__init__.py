"""certkit_app: the application layer on top of ``certify``, ``smoothing`` and ``conformal``.

* :mod:`certkit_app.cli`: the ``certkit`` console script (``certkit erase-check``, ``certkit --version``).
* :mod:`certkit_app.demo`: ``make demo`` (``python -m certkit_app.demo``), its sections in :mod:`certkit_app.demos`.
* :mod:`certkit_app.datasets`: the embedded digits data (scikit-learn's ``load_digits``, fixed split).
* :mod:`certkit_app.digits`: the digits reference models and their training recipes (cached).

Nothing in the library (``certkit``, ``certify``, ``smoothing``, ``conformal``) imports this package;
``tests/test_architecture.py`` enforces it.
"""

__all__: list[str] = []  # a namespace of applications: import the submodules
