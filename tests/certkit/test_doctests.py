"""Docstring examples (``>>>``) of every library module run as doctests (fast: pure functions, tiny inputs).

A fragment that needs a trained model or data it does not build is marked ``# doctest: +SKIP`` in its docstring.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

PACKAGES = ("certkit", "certify", "smoothing", "conformal", "certkit_app")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [package, *sorted(m.name for m in pkgutil.walk_packages(root.__path__, package + "."))]


def _doctests(package: str) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in _module_names(package):
        module = importlib.import_module(name)
        found += [t for t in finder.find(module) if t.examples and t.name.startswith(name)]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_docstring_examples_pass(package: str) -> None:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    seen: set[tuple[str | None, int | None]] = set()
    for test in _doctests(package):
        if (test.filename, test.lineno) in seen:  # a name re-exported by a parent package
            continue
        seen.add((test.filename, test.lineno))
        runner.run(test, out=report.write)
    assert runner.failures == 0, (
        "docstring examples failed (a fragment that needs a model or data it does not build: end each of its "
        "`>>>` lines with `# doctest: +SKIP`):\n" + report.getvalue())


def test_enough_docstring_examples_run() -> None:
    # The public pure functions of the base and the math modules carry runnable examples; losing them is a defect.
    ran = {t.name for package in PACKAGES for t in _doctests(package)
           if any(not e.options.get(doctest.SKIP) for e in t.examples)}
    for name in ("conformal.functional.conformal_quantile", "conformal.functional.pac_quantile",
                 "conformal.metrics.coverage", "smoothing.cohen.clopper_pearson_lower",
                 "smoothing.cohen.smoothed_radius", "smoothing.sequential.confidence_sequence"):
        assert name in ran, f"{name} lost its docstring example"
    assert len(ran) >= 12, sorted(ran)
