"""The seed-aware test is calibrated and has power under the additive model, simulated as
thousands of studies in one vectorised call; power figures and Holm against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from dfablate.comparison.seed_stats import (
    Spread,
    holm,
    minimum_detectable_difference,
    pooled_spread,
    run_mean_test,
    seeds_needed,
    t_power,
    tost,
    verdict,
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
    paired = pooled_spread([run_mean_test(a, b, paired=True)])
    sd_diff = np.std(b - a, ddof=1)
    assert paired.sd == pytest.approx(sd_diff) and paired.df == 3 and paired.paired
    assert minimum_detectable_difference(paired, 4, 4) == pytest.approx(
        TTestPower().solve_power(nobs=4, alpha=0.05, power=0.8) * sd_diff, rel=1e-6
    )
    needed = TTestPower().solve_power(effect_size=diff / sd_diff, alpha=0.05, power=0.8)
    assert seeds_needed(paired, diff) == np.ceil(needed) == 5
    student = pooled_spread([run_mean_test(a, b, paired=False)])
    pooled = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert student.sd == pytest.approx(pooled) and student.df == 6
    assert minimum_detectable_difference(student, 4, 4) == pytest.approx(
        TTestIndPower().solve_power(nobs1=4, ratio=1, alpha=0.05, power=0.8) * pooled, rel=1e-6
    )
    needed = TTestIndPower().solve_power(
        effect_size=diff / pooled, nobs1=None, alpha=0.05, power=0.8, ratio=1
    )
    assert seeds_needed(student, diff) == np.ceil(needed) == 8
    assert t_power(0.0, 5.0) == pytest.approx(0.05)


def test_pooled_spread_weights_variances_by_their_df():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (3, 5)), rng.normal(0, 1, (3, 5))
    tests = [run_mean_test(a[g], b[g], paired=True) for g in range(3)]
    spread = pooled_spread(tests)
    assert spread.df == 12
    assert spread.sd == pytest.approx(
        np.sqrt(np.mean([np.var(b[g] - a[g], ddof=1) for g in range(3)]))
    )


def test_tost_against_scipy_one_sided_t():
    a = np.array([2.10, 2.05, 2.20, 2.12, 2.08])
    b = np.array([2.11, 2.09, 2.19, 2.15, 2.10])
    for margin in (0.01, 0.05, 0.2):
        p, low, high = tost(run_mean_test(a, b, paired=True), margin)
        lower = stats.ttest_1samp(b - a, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(b - a, margin, alternative="less").pvalue
        assert float(p) == pytest.approx(max(lower, upper), rel=1e-10)
        ci90 = stats.ttest_rel(b, a).confidence_interval(0.90)
        assert (float(low), float(high)) == pytest.approx((ci90.low, ci90.high))
        # p < 0.05 exactly when the 90 % interval lies inside the margin
        assert (float(p) < 0.05) == (-margin < float(low) and float(high) < margin)


def test_verdict_precedence():
    got = verdict(
        ci90_low=[-0.01, 0.02, -0.2, -0.2, np.nan, 0.01],
        ci90_high=[0.02, 0.2, -0.06, 0.1, np.nan, 0.04],
        margin=[0.05, 0.05, 0.05, 0.05, 0.05, np.nan],
        p_holm=[0.001, 0.01, 0.01, 0.3, np.nan, 0.01],
        mean_diff=[0.005, 0.1, -0.1, -0.05, 0.1, 0.02],
    )
    assert list(got) == ["equivalent", "B better", "A better", "inconclusive", "inconclusive",
                         "B better"]  # fmt: skip


def _verdicts(rng, seeds: int, effect: float, margin: float, run_sd: float) -> np.ndarray:
    """The verdict of STUDIES paired studies in one call (one contrast: p_holm = p)."""
    a = rng.normal(2.5, run_sd, (STUDIES, seeds))
    b = a + effect + rng.normal(0, run_sd, (STUDIES, seeds))
    test = run_mean_test(a, b, paired=True)
    p, low, high = tost(test, margin)
    return verdict(low, high, margin, test.p_value, test.mean_diff)


def test_verdict_operating_characteristics():
    """At a true difference equal to the margin, `equivalent` in at most 5 % of studies; at no
    difference with a small spread, in at least 80 %; at a large difference `B better` in at
    least 80 %."""
    rng = np.random.default_rng(514)
    margin, mc_error = 0.05, 3 * np.sqrt(0.05 * 0.95 / STUDIES)
    for seeds in (3, 5, 10):
        at_margin = _verdicts(rng, seeds, margin, margin, 0.03)
        assert (at_margin == "equivalent").mean() <= 0.05 + mc_error, seeds
        at_minus_margin = _verdicts(rng, seeds, -margin, margin, 0.03)
        assert (at_minus_margin == "equivalent").mean() <= 0.05 + mc_error, seeds
    none = _verdicts(rng, 5, 0.0, margin, 0.01)
    assert (none == "equivalent").mean() >= 0.8
    large = _verdicts(rng, 5, 0.15, margin, 0.03)
    assert (large == "B better").mean() >= 0.8


def test_unknown_spread_and_caps():
    one = run_mean_test(np.array([2.0]), np.array([2.1, 2.2]), paired=False)
    assert np.isnan([one.ci95_low, one.ci95_high, one.p_value, one.se]).all()
    unknown = Spread(float("nan"), 0.0, False)
    assert np.isnan(minimum_detectable_difference(unknown, 1, 2))
    assert np.isnan(seeds_needed(unknown, 0.05))
    assert float(one.mean_diff) == pytest.approx(0.15)
    assert pooled_spread([run_mean_test(np.array([2.0, 2.0]), np.array([2.1, 2.1]), False)]).df == 0
    assert seeds_needed(Spread(10.0, 4, False), 1e-4) == 1000  # capped
    assert np.isnan(seeds_needed(Spread(0.1, 4, True), 0.0))  # no difference to plan for


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
    spread = pooled_spread([test])  # zero spread is no spread: nothing to plan with
    assert np.isnan(spread.sd) and spread.df == 0
    assert np.isnan(minimum_detectable_difference(spread, 3, 3))
    assert np.isnan(seeds_needed(spread, 0.05))
    assert seed_spread_status(test) == "unknown: the runs of both variants score identically"


def _student_power_by_hand(diff: float, sd: float, k: int) -> float:
    """Two-sided two-sample Student power at k seeds per variant from scipy's noncentral t."""
    df = 2 * k - 2
    crit = stats.t.isf(0.025, df)
    nc = diff / (sd * np.sqrt(2 / k))
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


@pytest.mark.parametrize("unpaired", ["welch", "student"])
def test_unpaired_seeds_needed_against_scipy_nct(unpaired):
    """Unpaired studies plan with the pooled per-run SD (the Welch or Student test of the pilot
    only supplies the spread): pinned to a hand-computed noncentral-t power."""
    a = np.array([2.00, 2.05, 1.96])
    b = np.array([2.10, 2.30, 2.02])
    test = run_mean_test(a, b, paired=False, unpaired=unpaired)
    spread = pooled_spread([test])
    sd = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert spread.sd == pytest.approx(sd) and spread.df == 4 and not spread.paired
    margin = 0.05
    powers = {k: _student_power_by_hand(margin, sd, k) for k in range(2, 200)}
    expected = min(k for k, p in powers.items() if p >= 0.8)
    assert seeds_needed(spread, margin) == expected
    assert powers[expected - 1] < 0.8 <= powers[expected]
