"""Compare evaluated runs file by file: relative differences, statistics, seed spread, report.

The question answered: does variant B (e.g. the fixed normalisation) change quality against the
baseline A, file by file and on average, and is the change larger than what another training
seed of the same variant would give? Inputs are per-file metric CSVs (`file,<metrics...>,error`),
usually `<run_dir>/eval/<dataset>/metrics.csv`. All metrics are "higher is better".
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dfablate.errors import UserError

RUN_NAME = re.compile(r"^(?P<norm>[A-Za-z0-9_]+)-seed(?P<seed>\d+)$")
BOOTSTRAP_RESAMPLES = 10_000
VERDICT_EXCEEDS = "exceeds seed spread"
VERDICT_WITHIN = "within seed spread"
VERDICT_UNKNOWN = "unknown (needs >= 2 seeds per variant)"
SHORT_VERDICT = {VERDICT_EXCEEDS: "exceeds", VERDICT_WITHIN: "within", VERDICT_UNKNOWN: "n/a"}


@dataclass
class RunMetrics:
    """One evaluated run: its per-file scores and where they came from."""

    label: str
    variant: str
    seed: int | None
    csv_path: Path
    scores: pd.DataFrame  # index: file; columns: metrics (float, NaN where scoring failed)
    dataset: dict | None = None  # the `dataset` entry of summary.json next to the CSV, if any
    noisy: dict | None = None  # mean scores of the unprocessed input, from summary.json
    experiment: str | None = None  # the training config's `name`, when known


@dataclass
class Comparison:
    """Everything `compare_runs` computes; `write_outputs` turns it into files."""

    runs: list[RunMetrics]
    baseline: str
    variants: list[str]
    metrics: list[str]
    files: list[str]  # files present in every run
    only_in: dict[str, list[str]]  # file -> labels of the runs that have it (left out)
    failed: dict[str, list[str]]  # "label: file" -> metrics with no score (left out per metric)
    relative_diff: pd.DataFrame  # file, metric, a, b, rel_diff_pct (+ variant with > 2 variants)
    summary: pd.DataFrame  # one row per (variant, metric)
    run_means: pd.DataFrame  # one row per run: label, variant, seed, mean of every metric
    missing_metrics: list[str] = field(default_factory=list)
    missing_runs: dict[str, str] = field(default_factory=dict)  # run -> why it has no scores


# ---------------------------------------------------------------- statistics


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


def bootstrap_ci(
    diff: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences, resampling files (seeded)."""
    diff = np.asarray(diff, dtype=float)
    if diff.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // diff.size)  # bound memory for large test sets
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, diff.size, size=(stop - start, diff.size))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def seed_verdict(a_run_means: np.ndarray, b_run_means: np.ndarray) -> str:
    """Whether the variant difference exceeds seed-to-seed spread.

    Definition: with at least 2 seeds per variant, the difference "exceeds seed spread" when
    the ranges [min, max] of the per-seed means of the two variants do not overlap (every seed
    of one variant scores better than every seed of the other); otherwise it is "within".
    """
    a = np.asarray(a_run_means, dtype=float)
    b = np.asarray(b_run_means, dtype=float)
    if a.size < 2 or b.size < 2:
        return VERDICT_UNKNOWN
    if b.min() > a.max() or a.min() > b.max():
        return VERDICT_EXCEEDS
    return VERDICT_WITHIN


# ---------------------------------------------------------------- loading


def _find_csv(path: Path, dataset: str | None) -> Path:
    """Resolve a run directory, an eval directory or a CSV path to the metrics CSV."""
    if not path.exists():
        raise UserError(f"{path}: no such run directory or metrics CSV")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UserError(f"{path}: not a metrics CSV (expected a .csv file or a run directory)")
        return path
    if (path / "metrics.csv").is_file():
        return path / "metrics.csv"
    candidates = sorted((path / "eval").glob("*/metrics.csv"))
    if dataset is not None:
        chosen = path / "eval" / dataset / "metrics.csv"
        if not chosen.is_file():
            found = ", ".join(c.parent.name for c in candidates) or "none"
            raise UserError(
                f"{path}: no evaluation on dataset '{dataset}' (evaluated datasets: {found})"
            )
        return chosen
    if not candidates:
        raise UserError(
            f"{path}: no evaluation found (no eval/<dataset>/metrics.csv); "
            f"run `dfablate evaluate run={path}` first"
        )
    if len(candidates) > 1:
        names = ", ".join(c.parent.name for c in candidates)
        raise UserError(
            f"{path}: evaluated on several datasets ({names}); choose one with --dataset"
        )
    return candidates[0]


def _run_identity(
    csv_path: Path,
) -> tuple[str | None, int | None, str | None, str | None]:
    """(norm, seed, run name, experiment) from the run's .hydra/config.yaml, else from a
    `<norm>-seed<k>` directory name."""
    for parent in list(csv_path.parents)[:4]:
        config = parent / ".hydra" / "config.yaml"
        if config.is_file():
            from omegaconf import OmegaConf

            cfg = OmegaConf.load(config)
            norm = OmegaConf.select(cfg, "norm.name")
            seed = OmegaConf.select(cfg, "seed")
            experiment = OmegaConf.select(cfg, "name")
            return (
                None if norm is None else str(norm),
                None if seed is None else int(seed),
                parent.name,
                None if experiment is None else str(experiment),
            )
    for parent in [csv_path.parent, *csv_path.parents]:
        match = RUN_NAME.match(parent.name)
        if match:
            return match["norm"], int(match["seed"]), parent.name, None
    return None, None, None, None


def _default_label(csv_path: Path) -> str:
    if csv_path.stem != "metrics":
        return csv_path.stem
    parts = [p.name for p in csv_path.parents if p.name not in ("", "eval")]
    return parts[0] if parts else "run"


def read_scores(csv_path: Path) -> pd.DataFrame:
    """Per-file metric table indexed by file; metric columns coerced to float."""
    try:
        table = pd.read_csv(csv_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{csv_path}: cannot read metrics CSV ({exc})") from exc
    if "file" not in table.columns:
        raise UserError(f"{csv_path}: not a metrics CSV (no 'file' column)")
    metric_columns = [c for c in table.columns if c not in ("file", "error")]
    if not metric_columns:
        raise UserError(f"{csv_path}: no metric columns besides 'file'")
    table["file"] = table["file"].astype(str)
    duplicated = table["file"][table["file"].duplicated()]
    if len(duplicated):
        raise UserError(f"{csv_path}: file '{duplicated.iloc[0]}' appears more than once")
    scores = table.set_index("file")[metric_columns].apply(pd.to_numeric, errors="coerce")
    return scores.astype(float)


def load_run(path: str | Path, dataset: str | None = None, label: str | None = None) -> RunMetrics:
    """Load one input of `dfablate compare`: a run directory, eval directory or metrics CSV."""
    csv_path = _find_csv(Path(path), dataset)
    norm, seed, run_name, experiment = _run_identity(csv_path)
    summary_path = csv_path.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    label = label or run_name or _default_label(csv_path)
    return RunMetrics(
        label=label,
        variant=norm or label,
        seed=seed,
        csv_path=csv_path,
        scores=read_scores(csv_path),
        dataset=summary.get("dataset"),
        noisy=summary.get("noisy"),
        experiment=experiment,
    )


def load_runs(
    paths: list[str | Path], dataset: str | None = None, labels: list[str] | None = None
) -> list[RunMetrics]:
    """Load all inputs, make labels unique and group by variant.

    Runs are grouped by normalisation when that yields at least two groups; otherwise (e.g. two
    runs of the same norm from different experiments) each run is its own variant.
    """
    if len(paths) < 2:
        raise UserError("compare needs at least two runs (A = baseline, B, ...)")
    if labels and len(labels) != len(paths):
        raise UserError(f"--label given {len(labels)} times for {len(paths)} runs")
    runs = [load_run(p, dataset, labels[i] if labels else None) for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    for run in runs:
        count = seen.get(run.label, 0)
        seen[run.label] = count + 1
        if count:
            run.label = f"{run.label}#{count + 1}"
    if len({r.variant for r in runs}) < 2:
        for run in runs:
            run.variant = run.label
    _check_same_test_set(runs)
    return runs


def _check_same_test_set(runs: list[RunMetrics]) -> None:
    """Refuse runs whose evaluation summaries name different test sets."""
    known = [r for r in runs if r.dataset and r.dataset.get("fingerprint")]
    for run in known[1:]:
        if run.dataset["fingerprint"] != known[0].dataset["fingerprint"]:
            raise UserError(
                f"runs evaluated on different test sets: {known[0].csv_path} "
                f"({_describe_dataset(known[0].dataset)}) vs {run.csv_path} "
                f"({_describe_dataset(run.dataset)})"
            )
    common = set.intersection(*(set(r.scores.index) for r in runs))
    if not common:
        raise UserError(
            f"runs evaluated on different test sets: no file in common between "
            f"{runs[0].csv_path} and the other inputs"
        )


def _describe_dataset(dataset: dict) -> str:
    return f"{dataset.get('name', '?')} at {dataset.get('root', '?')}, {dataset.get('n_files', '?')} files"


# ---------------------------------------------------------------- comparison


def compare_runs(runs: list[RunMetrics], bootstrap_seed: int = 0) -> Comparison:
    """Per-file relative differences and per-metric statistics of every variant vs the baseline.

    With several seeds per variant the per-file value of a variant is the mean over its seeds;
    statistics over files use those means, the seed verdict uses per-seed means over files.
    """
    variants = list(dict.fromkeys(r.variant for r in runs))
    baseline = variants[0]
    all_metrics = [list(r.scores.columns) for r in runs]
    metrics = [m for m in all_metrics[0] if all(m in cols for cols in all_metrics)]
    missing_metrics = sorted({m for cols in all_metrics for m in cols} - set(metrics))
    if not metrics:
        raise UserError("the inputs share no metric column")

    file_sets = [set(r.scores.index) for r in runs]
    common = set.intersection(*file_sets)
    files = [f for f in runs[0].scores.index if f in common]
    only_in = {
        f: [r.label for r in runs if f in r.scores.index]
        for f in sorted(set.union(*file_sets) - common)
    }
    failed: dict[str, list[str]] = {}
    for run in runs:
        scores = run.scores.loc[files, metrics]
        for file, row in scores.iterrows():
            bad = [m for m in metrics if np.isnan(row[m])]
            if bad:
                failed[f"{run.label}: {file}"] = bad

    # per metric, files scored in every run: per-file and per-seed values use the same files
    per_metric_files = {
        m: [f for f in files if all(np.isfinite(r.scores.at[f, m]) for r in runs)] for m in metrics
    }
    run_means = pd.DataFrame(
        [
            {
                "label": r.label,
                "variant": r.variant,
                "seed": r.seed,
                **{m: float(r.scores.loc[per_metric_files[m], m].mean()) for m in metrics},
            }
            for r in runs
        ]
    )

    def variant_values(variant: str, metric: str) -> np.ndarray:
        members = [r for r in runs if r.variant == variant]
        stacked = np.stack(
            [r.scores.loc[per_metric_files[metric], metric].to_numpy() for r in members]
        )
        return stacked.mean(axis=0)

    long_tables, summary_rows = [], []
    for variant in variants[1:]:
        for metric in metrics:
            metric_files = per_metric_files[metric]
            a = variant_values(baseline, metric)
            b = variant_values(variant, metric)
            rel = relative_difference_pct(a, b)
            long_tables.append(
                pd.DataFrame(
                    {
                        "variant": variant,
                        "file": metric_files,
                        "metric": metric,
                        "a": a,
                        "b": b,
                        "rel_diff_pct": rel,
                    }
                )
            )
            a_seeds = run_means.loc[run_means["variant"] == baseline, metric].to_numpy()
            b_seeds = run_means.loc[run_means["variant"] == variant, metric].to_numpy()
            diff = b - a
            ci_low, ci_high = bootstrap_ci(diff, seed=bootstrap_seed)
            a_std = float(np.std(a_seeds, ddof=1)) if a_seeds.size > 1 else float("nan")
            b_std = float(np.std(b_seeds, ddof=1)) if b_seeds.size > 1 else float("nan")
            summary_rows.append(
                {
                    "variant": variant,
                    "metric": metric,
                    "a": baseline,
                    "b": variant,
                    "n_files": len(metric_files),
                    "a_mean": _mean(a),
                    "a_median": _median(a),
                    "b_mean": _mean(b),
                    "b_median": _median(b),
                    "mean_diff": _mean(diff),
                    "ci95_low": ci_low,
                    "ci95_high": ci_high,
                    "rel_diff_mean_pct": _mean(rel[np.isfinite(rel)]),
                    "rel_diff_median_pct": _median(rel[np.isfinite(rel)]),
                    "b_better_share": float(np.mean(b > a)) if len(a) else float("nan"),
                    "wilcoxon_p": wilcoxon_p(a, b),
                    "a_seeds": int(a_seeds.size),
                    "b_seeds": int(b_seeds.size),
                    "a_seed_std": a_std,
                    "b_seed_std": b_std,
                    "diff_over_seed_std": _diff_over_spread(_mean(diff), a_std, b_std),
                    "seed_verdict": seed_verdict(a_seeds, b_seeds),
                }
            )
    relative_diff = pd.concat(long_tables, ignore_index=True)
    summary = pd.DataFrame(summary_rows)
    if len(variants) == 2:
        relative_diff = relative_diff.drop(columns="variant")
        summary = summary.drop(columns="variant")
    return Comparison(
        runs=runs,
        baseline=baseline,
        variants=variants,
        metrics=metrics,
        files=files,
        only_in=only_in,
        failed=failed,
        relative_diff=relative_diff,
        summary=summary,
        run_means=run_means,
        missing_metrics=missing_metrics,
    )


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def _diff_over_spread(diff: float, a_std: float, b_std: float) -> float:
    """|difference of variant means| / pooled seed std sqrt((s_a^2 + s_b^2) / 2)."""
    pooled = float(np.sqrt((a_std**2 + b_std**2) / 2.0))
    if not np.isfinite(pooled) or pooled == 0:
        return float("nan")
    return abs(diff) / pooled


# ---------------------------------------------------------------- outputs


def _suffix(comparison: Comparison, variant: str) -> str:
    return "" if len(comparison.variants) == 2 else f"_{variant}"


def _variant_table(table: pd.DataFrame, comparison: Comparison, variant: str) -> pd.DataFrame:
    return table if "variant" not in table.columns else table[table["variant"] == variant]


def write_figures(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Per-file relative difference vs file index, its distribution, and per-seed means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    metrics = comparison.metrics
    ncols = min(4, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    for variant in comparison.variants[1:]:
        table = _variant_table(comparison.relative_diff, comparison, variant)
        title = f"{variant} vs {comparison.baseline}: 100 (B - A) / |A| per file"
        for kind in ("by_file", "distribution"):
            fig, axes = plt.subplots(
                nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False, constrained_layout=True
            )
            for ax, metric in zip(axes.flat, metrics, strict=False):
                rel = table.loc[table["metric"] == metric, "rel_diff_pct"].to_numpy()
                finite = rel[np.isfinite(rel)]
                if kind == "by_file":
                    ax.scatter(np.arange(len(rel)), rel, s=6, alpha=0.7)
                    ax.axhline(0.0, color="black", linewidth=0.8)
                    if finite.size:
                        ax.axhline(finite.mean(), color="tab:red", linestyle="--", linewidth=1)
                    ax.set_xlabel("file index")
                    ax.set_ylabel("relative difference (%)")
                else:
                    if finite.size:
                        ax.hist(finite, bins=min(40, max(5, finite.size // 3)), color="tab:blue")
                        ax.axvline(np.median(finite), color="tab:red", linestyle="--", linewidth=1)
                    ax.axvline(0.0, color="black", linewidth=0.8)
                    ax.set_xlabel("relative difference (%)")
                    ax.set_ylabel("files")
                ax.set_title(metric.upper())
            for ax in list(axes.flat)[len(metrics) :]:
                ax.set_visible(False)
            fig.suptitle(title + (" (red: mean)" if kind == "by_file" else " (red: median)"))
            path = out_dir / f"relative_diff_{kind}{_suffix(comparison, variant)}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(path)
    if comparison.run_means["variant"].value_counts().max() > 1:
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False, constrained_layout=True
        )
        for ax, metric in zip(axes.flat, metrics, strict=False):
            for x, variant in enumerate(comparison.variants):
                values = comparison.run_means.loc[
                    comparison.run_means["variant"] == variant, metric
                ].to_numpy()
                ax.scatter(np.full(values.size, x), values, s=20)
                ax.errorbar(
                    x + 0.15,
                    values.mean(),
                    yerr=values.std(ddof=1) if values.size > 1 else 0,
                    fmt="o",
                    color="black",
                    capsize=4,
                )
            ax.set_xticks(range(len(comparison.variants)), comparison.variants)
            ax.set_xlim(-0.5, len(comparison.variants) - 0.5)
            ax.set_title(metric.upper())
        for ax in list(axes.flat)[len(metrics) :]:
            ax.set_visible(False)
        fig.suptitle("mean over files per seed (black: mean +- std over seeds)")
        path = out_dir / "seed_means.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if abs(value) != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    if abs(value) >= 100:  # large relative differences: keep the columns narrow
        digits = 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no tabulate dependency)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


REPORT_COLUMNS = {
    "metric": "metric",
    "n_files": "files",
    "a_mean": "A mean",
    "b_mean": "B mean",
    "a_median": "A median",
    "b_median": "B median",
    "rel_diff_mean_pct": "rel. diff mean %",
    "rel_diff_median_pct": "rel. diff median %",
    "b_better_share": "B better (share)",
    "mean_diff": "mean B-A",
    "ci95_low": "95% CI low",
    "ci95_high": "95% CI high",
    "wilcoxon_p": "Wilcoxon p",
}
SEED_COLUMNS = {
    "metric": "metric",
    "a_seeds": "A seeds",
    "b_seeds": "B seeds",
    "a_mean": "A mean of seeds",
    "b_mean": "B mean of seeds",
    "mean_diff": "difference",
    "a_seed_std": "A seed std",
    "b_seed_std": "B seed std",
    "diff_over_seed_std": "abs diff / pooled std",
    "seed_verdict": "verdict",
}


def write_report(comparison: Comparison, out_dir: Path, figures: list[Path]) -> Path:
    """report.md: inputs, files left out, statistics, seed spread, definitions, figures."""
    c = comparison
    lines = [f"# Comparison: {', '.join(c.variants[1:])} vs {c.baseline} (baseline A)", ""]
    lines += ["## Inputs", ""]
    inputs = pd.DataFrame(
        [
            {
                "run": r.label,
                "variant": r.variant,
                "seed": "n/a" if r.seed is None else str(r.seed),
                "files": str(len(r.scores)),
                "metrics CSV": str(r.csv_path),
            }
            for r in c.runs
        ]
    )
    lines += [markdown_table(inputs), ""]
    if c.missing_runs:
        lines += [f"**{len(c.missing_runs)} runs are missing from this comparison:**", ""]
        lines += [f"- {run}: {why}" for run, why in c.missing_runs.items()]
        lines += [""]
    lines += [f"{len(c.files)} files are present in every run and compared."]
    if c.only_in:
        lines += [
            "",
            f"**{len(c.only_in)} files are missing from some runs and left out:**",
            "",
        ]
        lines += [f"- `{f}`: only in {', '.join(labels)}" for f, labels in c.only_in.items()]
    if c.failed:
        lines += ["", "**Scores missing (scoring error) — left out for those metrics:**", ""]
        lines += [f"- {where}: {', '.join(metrics)}" for where, metrics in c.failed.items()]
    if c.missing_metrics:
        lines += ["", f"Metrics not in every input, left out: {', '.join(c.missing_metrics)}."]
    noisy = next((r.noisy for r in c.runs if r.noisy), None)
    if noisy:
        lines += ["", "Unprocessed noisy input (mean over the test set), for reference:", ""]
        lines += [
            markdown_table(pd.DataFrame([{m: noisy.get(m, float("nan")) for m in c.metrics}]))
        ]
    for variant in c.variants[1:]:
        summary = _variant_table(c.summary, c, variant)
        lines += ["", f"## {variant} (B) vs {c.baseline} (A), per file", ""]
        lines += [markdown_table(summary[list(REPORT_COLUMNS)].rename(columns=REPORT_COLUMNS))]
        lines += ["", f"## {variant} vs {c.baseline}: difference vs seed-to-seed spread", ""]
        lines += [markdown_table(summary[list(SEED_COLUMNS)].rename(columns=SEED_COLUMNS))]
        for fig in figures:
            if fig.stem.endswith(_suffix(c, variant)) and fig.stem.startswith("relative_diff"):
                lines += ["", f"![{fig.stem}]({fig.name})"]
    seeds_fig = [f for f in figures if f.stem == "seed_means"]
    lines += ["", "## Per-seed means", "", markdown_table(c.run_means)]
    lines += [f"\n![seed means]({f.name})" for f in seeds_fig]
    lines += ["", "## Definitions", "", *DEFINITIONS]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


DEFINITIONS = [
    "- All metrics are higher-is-better (PESQ, STOI, CSIG, CBAK, COVL, segmental SNR, SI-SDR).",
    "- Per-file value of a variant: the mean of that file's score over the variant's seeds.",
    "- Relative difference per file: `100 * (B - A) / |A|` (undefined, left out, where A = 0 and "
    "B != 0). Its mean is sensitive to files where A is near 0 (SSNR, SI-SDR); prefer the median.",
    "- B better (share): fraction of files with B > A.",
    "- Wilcoxon p: two-sided paired Wilcoxon signed-rank test of B - A over files (scipy).",
    f"- 95% CI: percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples of files, seeded) of the "
    "mean of B - A.",
    "- Seed spread: each run's mean over the compared files is one 'seed mean'. Seed std is the "
    "sample standard deviation (ddof=1) of a variant's seed means; pooled std is "
    "sqrt((std_A^2 + std_B^2) / 2). The difference **exceeds seed spread** when the ranges "
    "[min, max] of the two variants' seed means do not overlap (every seed of one variant beats "
    "every seed of the other); otherwise it is **within seed spread**. With fewer than 2 seeds "
    "per variant the verdict is unknown. The file-level p-value and CI treat files as the only "
    "source of randomness; the seed verdict is the check against training randomness.",
]


def write_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """relative_diff.csv, summary.csv, seed_means.csv, figures and report.md in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "relative_diff": out_dir / "relative_diff.csv",
        "summary": out_dir / "summary.csv",
        "seed_means": out_dir / "seed_means.csv",
    }
    comparison.relative_diff.to_csv(paths["relative_diff"], index=False)
    comparison.summary.to_csv(paths["summary"], index=False)
    comparison.run_means.to_csv(paths["seed_means"], index=False)
    figures = write_figures(comparison, out_dir)
    paths["report"] = write_report(comparison, out_dir, figures)
    paths.update({f.stem: f for f in figures})
    return paths


def print_summary(comparison: Comparison, report: Path | None = None, console=None) -> None:
    """The relative-difference summary table in the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    columns = {
        "metric": "metric",
        "a_mean": "A mean",
        "b_mean": "B mean",
        "rel_diff_mean_pct": "mean %",
        "rel_diff_median_pct": "median %",
        "b_better_share": "B better",
        "wilcoxon_p": "p",
        "seed_verdict": "vs seeds",
    }
    for variant in comparison.variants[1:]:
        summary = _variant_table(comparison.summary, comparison, variant)
        table = Table(
            title=f"{variant} (B) vs {comparison.baseline} (A): {len(comparison.files)} files",
            caption="relative difference 100 (B - A) / |A| per file; p: paired Wilcoxon",
        )
        for name in columns.values():
            table.add_column(name, justify="left" if name in ("metric", "seeds") else "right")
        for row in summary[list(columns)].itertuples(index=False):
            table.add_row(*(_fmt(v) for v in row[:-1]), SHORT_VERDICT[row[-1]])
        console.print(table)
    for run, why in comparison.missing_runs.items():
        console.print(f"missing run {run}: {why}", highlight=False)
    if comparison.only_in:
        console.print(f"{len(comparison.only_in)} files missing from some runs were left out")
    if comparison.failed:
        console.print(
            f"{len(comparison.failed)} file scores missing (scoring errors) were left out"
        )
    if report is not None:
        console.print(f"report: {report}")


def default_out_dir(root: Path = Path("outputs")) -> Path:
    """A new folder outputs/compare/<timestamp> (suffixed if it already exists)."""
    from datetime import datetime

    base = root / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}_{k}")
    return path


def log_comparison_to_wandb(
    comparison: Comparison, paths: dict[str, Path], mode: str = "auto", project: str = "dfablate"
) -> None:
    """One W&B run (job_type "compare") in the output folder: the relative-difference, summary
    and seed tables, every figure, and the headline numbers in the run summary."""
    from dfablate.evaluation import quiet_wandb
    from dfablate.tracking import wandb_mode

    if wandb_mode(mode) == "disabled":
        return
    with quiet_wandb():
        _log_comparison(comparison, paths, mode, project)


def _log_comparison(comparison: Comparison, paths: dict[str, Path], mode: str, project: str):
    import wandb

    from dfablate.tracking import init_wandb

    out_dir = paths["report"].parent
    experiments = {r.experiment for r in comparison.runs}
    group = experiments.pop() if len(experiments) == 1 and None not in experiments else "compare"
    config = {
        "baseline": comparison.baseline,
        "variants": comparison.variants,
        "runs": [
            {"label": r.label, "norm": r.variant, "seed": r.seed, "csv": str(r.csv_path)}
            for r in comparison.runs
        ],
        "n_files": len(comparison.files),
        "left_out_files": list(comparison.only_in),
    }
    run = init_wandb(
        out_dir, config, project=project, group=group, job_type="compare", mode=mode,
        tags=[f"norm:{v}" for v in comparison.variants],
    )  # fmt: skip
    try:
        data = {
            "compare/relative_diff": wandb.Table(dataframe=comparison.relative_diff),
            "compare/summary": wandb.Table(dataframe=comparison.summary),
            "compare/seed_means": wandb.Table(dataframe=comparison.run_means),
        }
        data.update(
            {f"compare/{p.stem}": wandb.Image(str(p)) for p in paths.values() if p.suffix == ".png"}
        )
        run.log(data)
        for row in comparison.summary.itertuples(index=False):
            prefix = f"compare/{row.b}_vs_{row.a}/{row.metric}"
            for key in ("rel_diff_mean_pct", "rel_diff_median_pct", "mean_diff", "wilcoxon_p",
                        "b_better_share", "seed_verdict"):  # fmt: skip
                run.summary[f"{prefix}/{key}"] = getattr(row, key)
    finally:
        run.finish()
