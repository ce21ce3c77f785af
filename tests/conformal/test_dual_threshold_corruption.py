"""DualThreshold on digits under Gaussian corruption of rising severity: abstention rises with severity."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_abstention_rises_with_corruption_severity_on_digits() -> None:
    from certkit_app.demos.dual_threshold import evaluate_corruption

    severities = (0.0, 0.2, 0.4, 0.7)
    configs = (("thr", "entropy", "youden", None), ("thr", "entropy", "ltt", 0.05),
               ("aps", "outside_mass", "youden", None), ("raps", "outside_mass", "youden", None))
    rows = evaluate_corruption(splits=5, severities=severities, configs=configs)
    for score, stat, rule, target in configs:
        label = rule if target is None else f"ltt {target}"
        mine = sorted((r for r in rows if (r["score"], r["statistic"], r["rule"]) == (score, stat, label)),
                      key=lambda r: r["severity"])
        abstention = np.array([r["abstention"] for r in mine])
        accuracy = np.array([r["accuracy"] for r in mine])
        assert (np.diff(accuracy) < 0).all()  # the corruption does hurt the model
        assert (np.diff(abstention) > 0).all(), (score, stat, rule, abstention)
        # on clean digits abstaining removes misses (a measurement, reported beside the clean guarantee)
        assert mine[0]["coverage_accepted"] > mine[0]["coverage"]
