"""The statistics of a comparison (`compare_runs`): per contrast, gain and metric, B - A of the
per-run means with the seed-aware test of `dfablate.comparison.seed_stats`, TOST at the margin, the verdict
under Holm's two families, the interaction with input level, the file-level Wilcoxon p and the
per-file tables. What is compared and why: the package docstring of `dfablate.comparison`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from dfablate.comparison import seed_stats
from dfablate.comparison.design import Design, resolve_contrasts
from dfablate.comparison.loading import describe_variant
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
    design: Design | None = None,
) -> Comparison:
    """Every contrast B:A of `design` (default: each variant vs the first), per input gain and
    metric.

    Headline: B - A of the variant means with a t-test on per-run means (paired by seed when
    both variants have the same seeds and `design.pairing` allows it, else `unpaired`: Student
    or Welch), two one-sided tests at the metric's margin and a verdict. Holm corrects the
    primary row over the contrasts, and every other row within its contrast. Per-file tables:
    a file's value for a variant is the mean over its seeds.
    """
    design = design or Design()
    variants = list(dict.fromkeys(r.variant for r in runs))
    if len(variants) < 2:
        raise UserError("compare needs runs of at least two variants")
    contrasts = resolve_contrasts(design, variants)
    gains = list(dict.fromkeys(r.gain_db for r in runs))
    metrics, missing_metrics = _shared_metrics(runs)
    files, only_in = _shared_files(runs)
    metric_files = _scored_files(runs, gains, metrics, files)
    primary_found = design.primary_metric in metrics and design.primary_gain_db in gains
    long_tables, wide_tables, summary_rows, interaction_rows = [], [], [], []
    for b, a in contrasts:
        paired = _pairing(runs, a, b, design.pairing)
        rows = []
        for gain in gains:
            condition = _compare_condition(
                runs, a, b, gain, metrics, files, metric_files, unpaired, paired
            )
            long_tables += condition.long_tables
            wide_tables.append(condition.wide)
            rows += condition.summary_rows
        _plan_at_margins(rows, design)
        if primary_found:  # the primary row first
            rows.sort(key=lambda r: not _is_primary(r, design))
        summary_rows += rows
        interaction_rows += _interaction_rows(
            runs, a, b, gains, metrics, metric_files, unpaired, paired, design
        )
    summary = pd.DataFrame(summary_rows)
    summary["primary"] = [primary_found and _is_primary(r, design) for r in summary_rows]
    _holm_families(summary)
    summary["verdict"] = seed_stats.verdict(
        summary["ci90_low"], summary["ci90_high"], summary["margin"], summary["p_holm"],
        summary["mean_diff"],
    )  # fmt: skip
    if not primary_found:
        warnings.warn(
            f"the primary endpoint {design.primary} is not in this comparison (metrics: "
            f"{', '.join(metrics)}; gains: {', '.join(f'{g:g}' for g in gains)} dB): "
            "no row is primary",
            stacklevel=2,
        )
    return Comparison(
        runs=runs,
        baseline=variants[0],
        variants=variants,
        definitions={
            v: describe_variant(next(r for r in runs if r.variant == v)) for v in variants
        },
        gains=gains,
        metrics=metrics,
        files=files,
        only_in=only_in,
        failed=_failed_files(runs, files, metrics),
        relative_diff=pd.concat(long_tables, ignore_index=True),
        per_file=pd.concat(wide_tables, ignore_index=True),
        summary=summary[SUMMARY_COLUMNS],
        run_means=_run_means(runs, metrics, metric_files),
        missing_metrics=missing_metrics,
        left_out_gains=left_out_gains or {},
        contrasts=contrasts,
        design=design,
        interaction=pd.DataFrame(interaction_rows, columns=INTERACTION_COLUMNS),
    )


def _is_primary(row: dict, design: Design) -> bool:
    return row["metric"] == design.primary_metric and row["gain_db"] == design.primary_gain_db


def _pairing(runs: list[RunMetrics], a: str, b: str, pairing: str) -> bool:
    """Whether contrast B:A is paired by seed: `auto` when both have the same seeds (at every
    gain), `paired` requires it, `unpaired` never."""
    a_seeds = [r.seed for r in runs if r.variant == a]
    b_seeds = [r.seed for r in runs if r.variant == b]
    can_pair = is_paired(
        [r.seed for r in runs if r.variant == a and r.gain_db == runs[0].gain_db],
        [r.seed for r in runs if r.variant == b and r.gain_db == runs[0].gain_db],
    ) and sorted(a_seeds, key=str) == sorted(b_seeds, key=str)
    if pairing == "paired" and not can_pair:
        raise UserError(
            f"--pairing paired: {b} and {a} do not have the same seeds (at least 2, all known)"
        )
    return can_pair and pairing != "unpaired"


def _plan_at_margins(rows: list[dict], design: Design) -> None:
    """The margin columns of one contrast's rows: TOST at the metric's margin and the 90 %
    interval from the row's own test; mde and seeds_needed (80 % power at the margin) from the
    per-run spread pooled over all gains of that metric."""
    for metric in dict.fromkeys(r["metric"] for r in rows):
        same = [r for r in rows if r["metric"] == metric]
        tests = [r.pop("_test") for r in same]
        spread = seed_stats.pooled_spread(tests)
        margin = design.margin(metric)
        for row, test in zip(same, tests, strict=True):
            tost_p, ci90_low, ci90_high = seed_stats.tost(test, margin)
            row |= {"margin": margin, "tost_p": float(tost_p), "ci90_low": float(ci90_low),
                    "ci90_high": float(ci90_high)}  # fmt: skip
            row["mde"] = seed_stats.minimum_detectable_difference(
                spread, row["a_seeds"], row["b_seeds"]
            )
            row["seeds_needed"] = seed_stats.seeds_needed(spread, design.margin(metric))
            row["sd_df"] = spread.df


def _holm_families(summary: pd.DataFrame) -> None:
    """p_holm: the primary rows of all contrasts form one family; every other row of one
    contrast forms that contrast's family."""
    summary["p_holm"] = np.nan
    primary = summary["primary"].to_numpy(dtype=bool)
    if primary.any():
        summary.loc[primary, "p_holm"] = seed_stats.holm(summary.loc[primary, "p_value"])
    for _, index in summary[~primary].groupby(["b", "a"], sort=False).groups.items():
        summary.loc[index, "p_holm"] = seed_stats.holm(summary.loc[index, "p_value"])


INTERACTION_COLUMNS = [
    "variant", "metric", "gain_db", "ref_gain_db", "a_delta", "b_delta", "diff", "ci95_low",
    "ci95_high", "p_value", "test", "a",
]  # fmt: skip


def _interaction_rows(
    runs: list[RunMetrics],
    a: str,
    b: str,
    gains: list[float],
    metrics: list[str],
    metric_files: dict,
    unpaired: str,
    paired: bool,
    design: Design,
) -> list[dict]:
    """Does B change how the input level affects quality? Per run, delta = its mean at gain g
    minus its mean at the reference gain (0 dB when evaluated, else the primary's gain); diff =
    B's mean delta - A's, with the seed-aware test. No rows with a single gain."""
    ref = 0.0 if 0.0 in gains else design.primary_gain_db
    if ref not in gains or len(gains) < 2:
        return []
    rows = []
    for gain in [g for g in gains if g != ref]:
        for metric in metrics:
            deltas = {}
            for variant in (a, b):
                members = _ordered([r for r in runs if r.variant == variant], paired)
                by_key = {(r.label, r.gain_db): r for r in members}
                deltas[variant] = np.array(
                    [
                        by_key[r.label, gain].scores.loc[metric_files[gain, metric], metric].mean()
                        - r.scores.loc[metric_files[ref, metric], metric].mean()
                        for r in members
                        if r.gain_db == ref and (r.label, gain) in by_key
                    ]
                )
            test = seed_stats.run_mean_test(deltas[a], deltas[b], paired=paired, unpaired=unpaired)
            rows.append(
                {
                    "variant": b, "metric": metric, "gain_db": gain, "ref_gain_db": ref,
                    "a_delta": _mean(deltas[a]), "b_delta": _mean(deltas[b]),
                    "diff": float(test.mean_diff), "ci95_low": float(test.ci95_low),
                    "ci95_high": float(test.ci95_high), "p_value": float(test.p_value),
                    "test": test.test, "a": a,
                }
            )  # fmt: skip
    return rows


def _ordered(members: list[RunMetrics], paired: bool) -> list[RunMetrics]:
    """Runs in seed order when paired (same seed order on both sides)."""
    return sorted(members, key=lambda r: r.seed) if paired else members


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
    paired: bool,
) -> _Condition:
    """B - A of every metric at one gain: per file (long and wide tables) and the headline
    rows (p_holm, mde and seeds needed are filled in over the whole comparison)."""
    a_runs = _ordered([r for r in runs if r.variant == baseline and r.gain_db == gain], paired)
    b_runs = _ordered([r for r in runs if r.variant == variant and r.gain_db == gain], paired)
    contrast = f"{variant}:{baseline}"
    wide = pd.DataFrame({"variant": variant, "gain_db": gain, "file": files, "contrast": contrast})
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
                    "diff": b_file - a_file, "rel_diff_pct": rel, "contrast": contrast,
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
    return _Condition(long_tables, wide, rows)


SUMMARY_COLUMNS = [
    "variant", "gain_db", "metric", "a", "b", "a_mean", "b_mean", "mean_diff", "ci95_low",
    "ci95_high", "p_value", "p_holm", "test", "paired", "seed_spread", "a_seeds", "b_seeds",
    "a_seed_std", "b_seed_std", "mde", "seeds_needed", "rel_diff_of_means_pct", "n_files",
    "wilcoxon_p_files", "a_median", "b_median", "rel_diff_mean_pct", "rel_diff_median_pct",
    "b_better_share", "primary", "margin", "tost_p", "ci90_low", "ci90_high", "verdict",
    "seed_corr", "sd_df",
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
    """One summary.csv row: the seed-aware headline, then the per-file statistics; the test
    itself rides along (`_test`) until the spread is pooled over gains."""
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
        "seed_corr": _correlation(a_seed, b_seed) if paired else nan,
        "_test": test,
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of same-seed per-run means (NaN with < 3 seeds or no spread)."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")
