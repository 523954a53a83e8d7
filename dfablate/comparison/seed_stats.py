"""Seed-aware statistics: is B - A larger than retraining with another seed would give?

Each trained run adds its own offset to every file's score, so the unit of variation is the run:
the tests here work on per-run means (one number per trained model), paired by seed when both
variants have the same seeds, and give the interval, p-value, minimum detectable difference and
the seeds needed for 80 % power at a margin, two one-sided tests against that margin and the
verdict they support. Every function broadcasts over leading axes, so thousands of
simulated studies run in one call (`tests/unit/test_seed_stats.py` checks calibration that way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000
TESTS = {"paired": "paired t", "student": "Student t", "welch": "Welch t"}


@dataclass
class SeedTest:
    """B - A from per-run means, with the test's spread; arrays over the leading axes."""

    test: str  # "paired t", "Student t" or "Welch t"
    n_a: int
    n_b: int
    mean_diff: np.ndarray
    se: np.ndarray  # standard error of mean_diff; NaN where the seed spread is unknown
    df: np.ndarray  # degrees of freedom of the t distribution
    ci95_low: np.ndarray
    ci95_high: np.ndarray
    p_value: np.ndarray
    a_sd: np.ndarray  # sample std (ddof 1) of A's per-run means
    b_sd: np.ndarray
    diff_sd: np.ndarray  # paired: std of the per-seed differences; else NaN


def run_mean_test(
    a: np.ndarray, b: np.ndarray, paired: bool, unpaired: str = "student", level: float = 0.95
) -> SeedTest:
    """t-test of mean(b) - mean(a) on per-run means `a` [..., n_a] and `b` [..., n_b].

    Paired (same seeds in the same order in both): one-sample t on the per-seed differences.
    Otherwise Student's pooled t (`unpaired="student"`, exact when both variants share one
    run-to-run spread) or Welch's t (`"welch"`: unequal spreads allowed, conservative at 2-3
    seeds). With fewer than 2 runs in a variant, or no spread at all, the spread is unknown and
    se, interval and p are NaN.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = a.shape[-1], b.shape[-1]
    mean_diff = b.mean(axis=-1) - a.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_sd = a.std(axis=-1, ddof=1) if n_a > 1 else np.full(mean_diff.shape, np.nan)
        b_sd = b.std(axis=-1, ddof=1) if n_b > 1 else np.full(mean_diff.shape, np.nan)
        diff_sd = np.full(mean_diff.shape, np.nan)
        if paired:
            if n_a != n_b:
                raise ValueError(f"paired test needs as many runs in A as in B ({n_a} vs {n_b})")
            test = TESTS["paired"]
            if n_a > 1:
                diff_sd = (b - a).std(axis=-1, ddof=1)
            se = diff_sd / np.sqrt(n_a)
            df = np.full(mean_diff.shape, n_a - 1.0)
        elif unpaired == "student":
            test = TESTS["student"]
            pooled = np.sqrt(((n_a - 1) * a_sd**2 + (n_b - 1) * b_sd**2) / (n_a + n_b - 2))
            se = pooled * np.sqrt(1.0 / n_a + 1.0 / n_b)
            df = np.full(mean_diff.shape, n_a + n_b - 2.0)
        elif unpaired == "welch":
            test = TESTS["welch"]
            va, vb = a_sd**2 / n_a, b_sd**2 / n_b
            se = np.sqrt(va + vb)
            df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
        else:
            raise ValueError(f"unknown unpaired test {unpaired!r} (student or welch)")
        se = np.where(se > 0, se, np.nan)
        half = stats.t.ppf(0.5 + level / 2.0, df) * se
        p_value = 2.0 * stats.t.sf(np.abs(mean_diff) / se, df)
    return SeedTest(
        test, n_a, n_b, mean_diff, se, df, mean_diff - half, mean_diff + half, p_value,
        a_sd, b_sd, diff_sd,
    )  # fmt: skip


def t_power(noncentrality, df, alpha: float = ALPHA):
    """Power of a two-sided t-test at level `alpha`: P(|T| > t_crit) for T ~ nct(df, nc)."""
    crit = stats.t.isf(alpha / 2.0, df)
    nc = np.abs(noncentrality)
    wrong_side = special.nctdtr(df, nc, -crit)  # underflows to NaN where it is ~1e-20 or less
    return np.nan_to_num(wrong_side) + 1.0 - special.nctdtr(df, nc, crit)


def noncentrality_for_power(df: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The noncentrality at which the two-sided t-test with `df` degrees of freedom has `power`."""
    # power rises from alpha at nc = 0 and passes 0.8 below nc = 20 even at df = 1
    return float(optimize.brentq(lambda nc: t_power(nc, df, alpha) - power, 0.0, 30.0))


@dataclass
class Spread:
    """A run-to-run spread for planning: the SD of the per-seed differences (paired) or the
    pooled SD of per-run means (unpaired), with its degrees of freedom."""

    sd: float
    df: float
    paired: bool


def pooled_spread(tests: list[SeedTest]) -> Spread:
    """The spread of several tests of one contrast and metric (e.g. every input gain) pooled:
    variances weighted by their degrees of freedom. Paired tests pool the per-seed difference
    SDs; unpaired ones (Student or Welch) the two variants' per-run SDs. Unknown (NaN) parts
    are left out; with none left the SD is NaN and df 0."""
    paired = all(t.test == TESTS["paired"] for t in tests)
    weighted, dfs = 0.0, 0.0
    for t in tests:
        parts = [(t.n_a - 1, float(t.diff_sd))] if paired else [
            (t.n_a - 1, float(t.a_sd)), (t.n_b - 1, float(t.b_sd))
        ]  # fmt: skip
        for df, sd in parts:
            if df > 0 and np.isfinite(sd) and sd > 0:
                weighted, dfs = weighted + df * sd**2, dfs + df
    return Spread(float(np.sqrt(weighted / dfs)) if dfs else float("nan"), dfs, paired)


def _planned_se_df(spread: Spread, n_a, n_b):
    """Standard error and df of the test a study with n_a + n_b seeds would run."""
    if spread.paired:
        return spread.sd / np.sqrt(n_a), n_a - 1.0
    return spread.sd * np.sqrt(1.0 / n_a + 1.0 / n_b), n_a + n_b - 2.0


def minimum_detectable_difference(spread: Spread, n_a: int, n_b: int) -> float:
    """The smallest |B - A| the t-test on n_a + n_b seeds detects with 80 % power at alpha
    0.05, at the run-to-run `spread` (NaN when it is unknown)."""
    if not np.isfinite(spread.sd) or min(n_a, n_b) < 2:
        return float("nan")
    se, df = _planned_se_df(spread, n_a, n_a if spread.paired else n_b)
    return noncentrality_for_power(float(df)) * float(se)


def seeds_needed(spread: Spread, difference: float) -> float:
    """The smallest number of seeds per variant (at least 2) giving the two-sided t-test 80 %
    power at alpha 0.05 against a true |B - A| of `difference` (a smallest effect of interest,
    not the observed one: that would be post-hoc power), at the run-to-run `spread`. NaN when
    the difference is 0 or unknown or the spread unknown; capped at MAX_SEEDS."""
    difference = abs(float(difference))
    if not difference > 0 or not np.isfinite(spread.sd):
        return float("nan")
    k = np.arange(2, MAX_SEEDS + 1, dtype=float)
    se, df = _planned_se_df(spread, k, k)
    enough = np.flatnonzero(t_power(difference / se, df) >= POWER)
    return float(k[enough[0]]) if enough.size else float(MAX_SEEDS)


def tost(test: SeedTest, margin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two one-sided tests of |B - A| < margin from the test's own t distribution: (p, 90 %
    interval low, high). p is the larger of P(T >= (d + m)/se) and P(T <= (d - m)/se); it is
    below 0.05 exactly when the 90 % interval lies inside (-margin, margin). NaN without a
    spread or margin."""
    margin = np.asarray(margin, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = stats.t.sf((test.mean_diff + margin) / test.se, test.df)
        upper = stats.t.cdf((test.mean_diff - margin) / test.se, test.df)
        half = stats.t.ppf(0.95, test.df) * test.se
    return np.maximum(lower, upper), test.mean_diff - half, test.mean_diff + half


VERDICTS = ("equivalent", "B better", "A better", "inconclusive")


def verdict(ci90_low, ci90_high, margin, p_holm, mean_diff) -> np.ndarray:
    """Per row, in this order: `equivalent` when the 90 % interval lies inside (-margin,
    margin); `B better` / `A better` when p_holm < 0.05 (higher is better); else
    `inconclusive` (a NaN interval included)."""
    low, high, margin = (np.asarray(v, dtype=float) for v in (ci90_low, ci90_high, margin))
    p_holm, mean_diff = np.asarray(p_holm, dtype=float), np.asarray(mean_diff, dtype=float)
    with np.errstate(invalid="ignore"):
        equivalent = (low > -margin) & (high < margin)
        significant = p_holm < ALPHA
    better = np.where(mean_diff > 0, "B better", "A better")
    return np.where(equivalent, "equivalent", np.where(significant, better, "inconclusive"))


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (family: the finite entries; NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted
