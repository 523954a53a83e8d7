"""The seed-aware test is calibrated and has power under the additive model, simulated as
thousands of studies in one vectorised call; power figures and Holm against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from dfablate.seed_stats import (
    holm,
    minimum_detectable_difference,
    run_mean_test,
    seeds_needed,
    t_power,
)

STUDIES = 10_000
FILES = 40
RUN_SD, SHARED_SEED_SD, NOISE_SD = 0.03, 0.02, 0.1  # PESQ-like spreads


def simulate(rng, seeds: int, effect: float, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-run means of STUDIES studies: score = file quality + run offset + noise (+ effect
    for B). Paired runs share a seed component (same initial weights and crop order)."""
    quality = rng.normal(2.5, 0.4, (STUDIES, 1, FILES))
    shared = rng.normal(0, SHARED_SEED_SD, (STUDIES, seeds, 1))

    def variant(shift: float) -> np.ndarray:
        own = shared if paired else rng.normal(0, SHARED_SEED_SD, (STUDIES, seeds, 1))
        offset = own + rng.normal(0, RUN_SD, (STUDIES, seeds, 1))
        scores = quality + shift + offset + rng.normal(0, NOISE_SD, (STUDIES, seeds, FILES))
        return scores.mean(axis=-1)

    return variant(0.0), variant(effect)


def excludes_zero(test) -> np.ndarray:
    return (test.ci95_low > 0) | (test.ci95_high < 0)


@pytest.mark.parametrize("paired", [True, False])
def test_calibrated_under_no_effect(paired):
    rng = np.random.default_rng(20261126)
    tolerance = 3 * np.sqrt(0.05 * 0.95 / STUDIES)  # three Monte Carlo standard errors
    for seeds in (2, 3, 5, 10):
        a, b = simulate(rng, seeds, 0.0, paired)
        test = run_mean_test(a, b, paired=paired)
        rate = excludes_zero(test).mean()
        assert abs(rate - 0.05) < tolerance, (seeds, paired, rate)
        # the interval and the p-value are the same test
        np.testing.assert_array_equal(excludes_zero(test), test.p_value < 0.05)


def test_welch_is_conservative_at_two_seeds():
    """Why Student's t is the unpaired default: Welch's interval is too wide at 2 seeds."""
    rng = np.random.default_rng(7)
    a, b = simulate(rng, 2, 0.0, paired=False)
    rate = excludes_zero(run_mean_test(a, b, paired=False, unpaired="welch")).mean()
    assert rate < 0.05 - 3 * np.sqrt(0.05 * 0.95 / STUDIES)


@pytest.mark.parametrize("paired", [True, False])
def test_finds_three_run_sds_with_five_seeds(paired):
    rng = np.random.default_rng(11)
    per_run_sd = np.sqrt(SHARED_SEED_SD**2 + RUN_SD**2 + NOISE_SD**2 / FILES)
    a, b = simulate(rng, 5, 3 * per_run_sd, paired)
    assert a.std(axis=-1, ddof=1).mean() == pytest.approx(per_run_sd, rel=0.1)
    found = run_mean_test(a, b, paired=paired).p_value < 0.05
    assert found.mean() >= 0.8


def test_against_scipy_and_statsmodels():
    a = np.array([2.10, 2.30, 2.00, 2.25])
    b = np.array([2.40, 2.35, 2.20, 2.50])
    cases = [
        (True, "student", stats.ttest_rel(b, a)),
        (False, "student", stats.ttest_ind(b, a, equal_var=True)),
        (False, "welch", stats.ttest_ind(b, a, equal_var=False)),
    ]
    for paired, unpaired, ref in cases:
        test = run_mean_test(a, b, paired=paired, unpaired=unpaired)
        interval = ref.confidence_interval()
        assert float(test.p_value) == pytest.approx(ref.pvalue, rel=1e-12)
        assert float(test.ci95_low) == pytest.approx(interval.low, rel=1e-12)
        assert float(test.ci95_high) == pytest.approx(interval.high, rel=1e-12)
    diff = b.mean() - a.mean()  # 0.2
    paired = run_mean_test(a, b, paired=True)
    sd_diff = np.std(b - a, ddof=1)
    assert minimum_detectable_difference(paired) == pytest.approx(
        TTestPower().solve_power(nobs=4, alpha=0.05, power=0.8) * sd_diff, rel=1e-6
    )
    needed = TTestPower().solve_power(effect_size=diff / sd_diff, alpha=0.05, power=0.8)
    assert seeds_needed(paired) == np.ceil(needed) == 5
    student = run_mean_test(a, b, paired=False)
    pooled = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert minimum_detectable_difference(student) == pytest.approx(
        TTestIndPower().solve_power(nobs1=4, ratio=1, alpha=0.05, power=0.8) * pooled, rel=1e-6
    )
    needed = TTestIndPower().solve_power(
        effect_size=diff / pooled, nobs1=None, alpha=0.05, power=0.8, ratio=1
    )
    assert seeds_needed(student) == np.ceil(needed) == 8
    welch = run_mean_test(a, b, paired=False, unpaired="welch")
    # Welch power by hand: noncentral t with Welch's degrees of freedom
    nc = float(minimum_detectable_difference(welch) / welch.se)
    crit = stats.t.isf(0.025, welch.df)
    by_hand = stats.nct.sf(crit, welch.df, nc) + stats.nct.cdf(-crit, welch.df, nc)
    assert by_hand == pytest.approx(0.8, abs=1e-6)
    assert t_power(0.0, 5.0) == pytest.approx(0.05)


def test_unknown_spread_and_caps():
    one = run_mean_test(np.array([2.0]), np.array([2.1, 2.2]), paired=False)
    assert np.isnan([one.ci95_low, one.ci95_high, one.p_value, one.se]).all()
    assert np.isnan(minimum_detectable_difference(one)) and np.isnan(seeds_needed(one))
    assert float(one.mean_diff) == pytest.approx(0.15)
    tiny = run_mean_test(np.array([2.0, 2.2]), np.array([2.0001, 2.2001]), paired=False)
    assert seeds_needed(tiny) == 1000  # capped
    same = run_mean_test(np.array([2.0, 2.2]), np.array([2.0, 2.2]), paired=False)
    assert np.isnan(seeds_needed(same))  # no difference to detect


def test_holm_against_statsmodels():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2, 0.001])
    finite = np.isfinite(p)
    expected = multipletests(p[finite], method="holm")[1]
    adjusted = holm(p)
    np.testing.assert_allclose(adjusted[finite], expected)
    assert np.isnan(adjusted[2])


@pytest.mark.parametrize("paired", [True, False])
def test_identical_runs_have_no_spread_not_p_zero(paired):
    """Each variant's runs score identically: no seed spread, so NaN interval and p (not p = 0
    with a zero-width interval), and the comparison says why."""
    from dfablate.comparison.stats import seed_spread_status

    test = run_mean_test(np.array([2.0, 2.0, 2.0]), np.array([3.0, 3.0, 3.0]), paired=paired)
    assert test.mean_diff == 1.0
    for value in (test.se, test.ci95_low, test.ci95_high, test.p_value):
        assert np.isnan(value)
    assert np.isnan(minimum_detectable_difference(test)) and np.isnan(seeds_needed(test))
    assert seed_spread_status(test) == "unknown: the runs of both variants score identically"


def _welch_power_by_hand(diff: float, sd_a: float, sd_b: float, k: int) -> float:
    """Two-sided Welch power at k seeds per variant from scipy's noncentral t."""
    var = (sd_a**2 + sd_b**2) / k
    df = (var**2) / ((sd_a**2 / k) ** 2 / (k - 1) + (sd_b**2 / k) ** 2 / (k - 1))
    crit = stats.t.isf(0.025, df)
    nc = diff / np.sqrt(var)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


def test_welch_seeds_needed_against_scipy_nct():
    a = np.array([2.00, 2.05, 1.96])
    b = np.array([2.10, 2.30, 2.02])
    test = run_mean_test(a, b, paired=False, unpaired="welch")
    diff, sd_a, sd_b = float(test.mean_diff), a.std(ddof=1), b.std(ddof=1)
    powers = {k: _welch_power_by_hand(diff, sd_a, sd_b, k) for k in range(2, 60)}
    expected = min(k for k, p in powers.items() if p >= 0.8)
    assert seeds_needed(test) == expected
    assert powers[expected - 1] < 0.8 <= powers[expected]
