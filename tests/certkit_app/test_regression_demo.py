from certkit_app.demos.regression import demo_regression


def test_demo_regression_robust_intervals_cover_under_attack() -> None:
    rows = demo_regression(verbose=False)
    plain = rows["split conformal, PGD inputs"]
    for mode in ("inference", "calibration"):
        cov, width = rows[f"certified ({mode}), PGD inputs"]
        assert cov >= plain[0] and width > plain[1]
