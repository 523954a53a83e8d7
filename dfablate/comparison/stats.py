"""The statistics of a comparison (`compare_runs`): per variant, gain and metric, B - A of the
per-run means with the seed-aware test of `dfablate.seed_stats`, the file-level Wilcoxon p and
the per-file tables. What is compared and why: the package docstring of `dfablate.comparison`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dfablate import seed_stats
from dfablate.comparison.loading import describe_identity
from dfablate.comparison.results import DB_METRICS, Comparison, RunMetrics
from dfablate.errors import UserError


def relative_difference_pct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """100 * (b - a) / |a|; 0 where both are 0, NaN where only a is 0 (undefined)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 100.0 * (b - a) / np.abs(a)
    rel[(a == 0) & (b == 0)] = 0.0
    rel[(a == 0) & (b != 0)] = np.nan
    return rel


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value; 1.0 when all differences are zero."""
    from scipy.stats import wilcoxon

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if diff.size == 0:
        return float("nan")
    if not np.any(diff != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(wilcoxon(diff).pvalue)


def is_paired(a_seeds: list[int | None], b_seeds: list[int | None]) -> bool:
    """Pair by seed when both variants have the same (known, distinct, >= 2) seeds."""
    return (
        len(a_seeds) >= 2
        and None not in a_seeds
        and len(set(a_seeds)) == len(a_seeds)
        and sorted(a_seeds) == sorted(b_seeds)
    )


def seed_spread_status(test: seed_stats.SeedTest) -> str:
    """'known' or why the seed spread (and so interval, p, mde, seeds needed) is unknown."""
    if test.n_a < 2 or test.n_b < 2:
        return f"unknown: {test.n_a} + {test.n_b} seeds (needs 2 or more per variant)"
    if not np.isfinite(float(test.se)):
        return "unknown: the runs of both variants score identically"
    return "known"


# ---------------------------------------------------------------- B - A per condition


def compare_runs(
    runs: list[RunMetrics],
    left_out_gains: dict[str, list[float]] | None = None,
    unpaired: str = "student",
) -> Comparison:
    """Every variant vs the baseline (the first variant), per input gain and metric.

    Headline: B - A of the variant means with a t-test on per-run means (paired by seed when
    both variants have the same seeds, else `unpaired`: Student or Welch). Per-file tables: a
    file's value for a variant is the mean over its seeds.
    """
    variants = list(dict.fromkeys(r.variant for r in runs))
    if len(variants) < 2:
        raise UserError("compare needs runs of at least two variants")
    baseline = variants[0]
    gains = list(dict.fromkeys(r.gain_db for r in runs))
    metrics, missing_metrics = _shared_metrics(runs)
    files, only_in = _shared_files(runs)
    metric_files = _scored_files(runs, gains, metrics, files)
    long_tables, wide_tables, summary_rows = [], [], []
    for variant in variants[1:]:
        for gain in gains:
            condition = _compare_condition(
                runs, baseline, variant, gain, metrics, files, metric_files, unpaired
            )
            long_tables += condition.long_tables
            wide_tables.append(condition.wide)
            summary_rows += condition.summary_rows
    return Comparison(
        runs=runs,
        baseline=baseline,
        variants=variants,
        identities={
            v: describe_identity(next(r for r in runs if r.variant == v)) for v in variants
        },
        gains=gains,
        metrics=metrics,
        files=files,
        only_in=only_in,
        failed=_failed_files(runs, files, metrics),
        relative_diff=pd.concat(long_tables, ignore_index=True),
        per_file=pd.concat(wide_tables, ignore_index=True),
        summary=pd.DataFrame(summary_rows)[SUMMARY_COLUMNS],
        run_means=_run_means(runs, metrics, metric_files),
        missing_metrics=missing_metrics,
        left_out_gains=left_out_gains or {},
    )


def _shared_metrics(runs: list[RunMetrics]) -> tuple[list[str], list[str]]:
    """(metric columns every run has, in the first run's order; those only some have)."""
    all_metrics = [list(r.scores.columns) for r in runs]
    metrics = [m for m in all_metrics[0] if all(m in cols for cols in all_metrics)]
    if not metrics:
        raise UserError("the inputs share no metric column")
    return metrics, sorted({m for cols in all_metrics for m in cols} - set(metrics))


def _shared_files(runs: list[RunMetrics]) -> tuple[list[str], dict[str, list[str]]]:
    """(files every run has, in the first run's order; the others with the runs that have
    them)."""
    file_sets = [set(r.scores.index) for r in runs]
    common = set.intersection(*file_sets)
    files = [f for f in runs[0].scores.index if f in common]
    only_in = {
        f: [r.where for r in runs if f in r.scores.index]
        for f in sorted(set.union(*file_sets) - common)
    }
    return files, only_in


def _failed_files(runs: list[RunMetrics], files: list[str], metrics: list[str]) -> dict:
    """ "<run>: <file>" -> the metrics that run could not score for that file."""
    failed: dict[str, list[str]] = {}
    for run in runs:
        for file, row in run.scores.loc[files, metrics].iterrows():
            bad = [m for m in metrics if np.isnan(row[m])]
            if bad:
                failed[f"{run.where}: {file}"] = bad
    return failed


def _scored_files(
    runs: list[RunMetrics], gains: list[float], metrics: list[str], files: list[str]
) -> dict[tuple[float, str], list[str]]:
    """Per gain and metric, the files scored in every run: per-file and per-run values agree."""
    return {
        (g, m): [
            f for f in files if all(np.isfinite(r.scores.at[f, m]) for r in runs if r.gain_db == g)
        ]
        for g in gains
        for m in metrics
    }


def _run_means(runs: list[RunMetrics], metrics: list[str], metric_files: dict) -> pd.DataFrame:
    """One row per run: its mean of each metric over the files scored in every run."""
    return pd.DataFrame(
        [
            {
                "label": r.label,
                "variant": r.variant,
                "seed": r.seed,
                "gain_db": r.gain_db,
                **{m: float(r.scores.loc[metric_files[r.gain_db, m], m].mean()) for m in metrics},
            }
            for r in runs
        ]
    )


@dataclass
class _Condition:
    """The tables of one variant vs the baseline at one input gain."""

    long_tables: list[pd.DataFrame]
    wide: pd.DataFrame
    summary_rows: list[dict]


def _compare_condition(
    runs: list[RunMetrics],
    baseline: str,
    variant: str,
    gain: float,
    metrics: list[str],
    files: list[str],
    metric_files: dict[tuple[float, str], list[str]],
    unpaired: str,
) -> _Condition:
    """B - A of every metric at one gain: per file (long and wide tables) and the headline
    rows with Holm-corrected p-values over the metrics."""
    a_runs = [r for r in runs if r.variant == baseline and r.gain_db == gain]
    b_runs = [r for r in runs if r.variant == variant and r.gain_db == gain]
    paired = is_paired([r.seed for r in a_runs], [r.seed for r in b_runs])
    if paired:  # same seed order on both sides
        a_runs = sorted(a_runs, key=lambda r: r.seed)
        b_runs = sorted(b_runs, key=lambda r: r.seed)
    wide = pd.DataFrame({"variant": variant, "gain_db": gain, "file": files})
    long_tables, rows = [], []
    for metric in metrics:
        m_files = metric_files[gain, metric]
        a_file = _seed_mean(a_runs, metric, m_files)
        b_file = _seed_mean(b_runs, metric, m_files)
        rel = relative_difference_pct(a_file, b_file)
        long_tables.append(
            pd.DataFrame(
                {
                    "variant": variant, "gain_db": gain, "file": m_files,
                    "metric": metric, "a": a_file, "b": b_file,
                    "diff": b_file - a_file, "rel_diff_pct": rel,
                }
            )
        )  # fmt: skip
        per_file = pd.DataFrame(
            {"a": a_file, "b": b_file, "diff": b_file - a_file, "rel_diff_pct": rel},
            index=m_files,
        ).reindex(files)
        for column in per_file.columns:
            wide[f"{metric}_{column}"] = per_file[column].to_numpy()
        a_seed = np.array([r.scores.loc[m_files, metric].mean() for r in a_runs])
        b_seed = np.array([r.scores.loc[m_files, metric].mean() for r in b_runs])
        rows.append(
            _summary_row(metric, a_seed, b_seed, a_file, b_file, paired, unpaired)
            | {"variant": variant, "gain_db": gain, "a": baseline, "b": variant}
        )
    for row, p_holm in zip(rows, seed_stats.holm([r["p_value"] for r in rows]), strict=True):
        row["p_holm"] = float(p_holm)
    return _Condition(long_tables, wide, rows)


SUMMARY_COLUMNS = [
    "variant", "gain_db", "metric", "a", "b", "a_mean", "b_mean", "mean_diff", "ci95_low",
    "ci95_high", "p_value", "p_holm", "test", "paired", "seed_spread", "a_seeds", "b_seeds",
    "a_seed_std", "b_seed_std", "mde", "seeds_needed", "rel_diff_of_means_pct", "n_files",
    "wilcoxon_p_files", "a_median", "b_median", "rel_diff_mean_pct", "rel_diff_median_pct",
    "b_better_share",
]  # fmt: skip


def _seed_mean(members: list[RunMetrics], metric: str, files: list[str]) -> np.ndarray:
    """Per file, the mean score over a variant's runs."""
    return np.stack([r.scores.loc[files, metric].to_numpy() for r in members]).mean(axis=0)


def _summary_row(
    metric: str,
    a_seed: np.ndarray,
    b_seed: np.ndarray,
    a_file: np.ndarray,
    b_file: np.ndarray,
    paired: bool,
    unpaired: str,
) -> dict:
    """One summary.csv row: the seed-aware headline, then the per-file statistics."""
    test = seed_stats.run_mean_test(a_seed, b_seed, paired=paired, unpaired=unpaired)
    relative = metric not in DB_METRICS
    rel = relative_difference_pct(a_file, b_file)
    rel = rel[np.isfinite(rel)]
    a_mean, b_mean = float(a_seed.mean()), float(b_seed.mean())
    nan = float("nan")
    return {
        "metric": metric,
        "a_mean": a_mean,
        "b_mean": b_mean,
        "mean_diff": float(test.mean_diff),
        "ci95_low": float(test.ci95_low),
        "ci95_high": float(test.ci95_high),
        "p_value": float(test.p_value),
        "test": test.test,
        "paired": paired,
        "seed_spread": seed_spread_status(test),
        "a_seeds": test.n_a,
        "b_seeds": test.n_b,
        "a_seed_std": float(test.a_sd),
        "b_seed_std": float(test.b_sd),
        "mde": seed_stats.minimum_detectable_difference(test),
        "seeds_needed": seed_stats.seeds_needed(test),
        "rel_diff_of_means_pct": (
            float(relative_difference_pct([a_mean], [b_mean])[0]) if relative else nan
        ),
        "n_files": len(a_file),
        "wilcoxon_p_files": wilcoxon_p(a_file, b_file),
        "a_median": _median(a_file),
        "b_median": _median(b_file),
        "rel_diff_mean_pct": _mean(rel) if relative else nan,
        "rel_diff_median_pct": _median(rel) if relative else nan,
        "b_better_share": float(np.mean(b_file > a_file)) if len(a_file) else nan,
    }


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")
