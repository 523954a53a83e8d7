"""A comparison's outputs: CSV tables, figures, the Markdown report and the terminal summary."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from rich import box
from rich.console import Console
from rich.table import Table
from scipy import stats

from dfablate.comparison import seed_stats
from dfablate.comparison.results import NO_RELATIVE, Comparison, gain_suffix


def _suffix(comparison: Comparison, contrast: tuple[str, str], gain: float) -> str:
    """File name suffix of one contrast at one gain: B (with > 2 variants; `B_vs_A` when A is
    not the baseline), then the gain."""
    b, a = contrast
    name = b if a == comparison.baseline else f"{b}_vs_{a}"
    name = "" if len(comparison.variants) == 2 else "_" + re.sub(r"[^\w.+-]", "_", name)
    return name + gain_suffix(gain)


def _condition(table: pd.DataFrame, contrast: tuple[str, str], gain: float) -> pd.DataFrame:
    """The rows of one contrast (B, A) at one gain (of the summary or a per-file table)."""
    b, a = contrast
    if "contrast" in table.columns:
        chosen = table["contrast"] == f"{b}:{a}"
    else:
        chosen = (table["b"] == b) & (table["a"] == a)
    return table[chosen & (table["gain_db"] == gain)]


def _gains_primary_first(c: Comparison) -> list[float]:
    """The compared gains, the primary's first."""
    first = [g for g in c.gains if g == c.design.primary_gain_db]
    return first + [g for g in c.gains if g not in first]


def _panels(plt, n: int):
    ncols = min(4, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False, constrained_layout=True
    )
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:n]


def write_figures(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Per condition: B - A per file (files sorted by A's score) and its distribution; per gain:
    per-seed means with the seed-aware interval; with several gains: robustness curves."""
    matplotlib.use("Agg")

    c, paths = comparison, []
    for contrast in c.contrasts:
        for gain in c.gains:
            paths += _per_file_figures(plt, c, contrast, gain, out_dir)
    paths += [_seed_means_figure(plt, c, gain, out_dir) for gain in c.gains]
    if len(c.gains) > 1:
        paths.append(_robustness_figure(plt, c, out_dir))
        paths.append(_robustness_means_figure(plt, c, out_dir))
    return paths


def _save(plt, fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _per_file_figures(
    plt, c: Comparison, contrast: tuple[str, str], gain: float, out_dir: Path
) -> list[Path]:
    """B - A per file (files sorted by A's score) and its distribution, one panel a metric."""
    table = _condition(c.relative_diff, contrast, gain)
    summary = _condition(c.summary, contrast, gain).set_index("metric")
    where = f"{contrast[0]} vs {contrast[1]}" + (f" at {gain:+g} dB input gain" if gain else "")
    fig, axes = _panels(plt, len(c.metrics))
    for ax, metric in zip(axes, c.metrics, strict=True):
        rows = table[table["metric"] == metric].sort_values(["a", "file"])
        rank = np.arange(1, len(rows) + 1)
        ax.scatter(rank, rows["diff"], s=8, alpha=0.7, label="file")
        ax.axhline(0.0, color="black", linewidth=0.8)
        row = summary.loc[metric]
        ax.axhline(row["mean_diff"], color="tab:red", linestyle="--", linewidth=1,
                   label="B - A of variant means")  # fmt: skip
        if np.isfinite(row["ci95_low"]):
            ax.axhspan(row["ci95_low"], row["ci95_high"], color="tab:red", alpha=0.15,
                       label="95 % interval (seeds)")  # fmt: skip
        if len(rows) <= 30:
            ax.set_xticks(rank, [Path(f).stem for f in rows["file"]], rotation=90,
                          fontsize=6)  # fmt: skip
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("file, sorted by A's score" + ("" if len(rows) <= 30 else " (rank)"))
        ax.set_ylabel(f"B - A ({metric})")
        ax.set_title(metric.upper())
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{where}: B - A per file (files listed in per_file.csv)")
    paths = [_save(plt, fig, out_dir / f"per_file_diff{_suffix(c, contrast, gain)}.png")]

    fig, axes = _panels(plt, len(c.metrics))
    for ax, metric in zip(axes, c.metrics, strict=True):
        diff = table.loc[table["metric"] == metric, "diff"].to_numpy()
        if diff.size:
            ax.hist(diff, bins=min(40, max(5, diff.size // 3)), color="tab:blue")
            ax.axvline(diff.mean(), color="tab:red", linestyle="--", linewidth=1)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"B - A ({metric})")
        ax.set_ylabel("files")
        ax.set_title(metric.upper())
    fig.suptitle(f"{where}: distribution of B - A over files (red: mean)")
    paths.append(
        _save(plt, fig, out_dir / f"per_file_diff_distribution{_suffix(c, contrast, gain)}.png")
    )
    return paths


def _seed_means_figure(plt, c: Comparison, gain: float, out_dir: Path) -> Path:
    """Per-seed means of every variant with B's mean and the seed-aware interval of B - A."""
    fig, axes = _panels(plt, len(c.metrics))
    means = c.run_means[c.run_means["gain_db"] == gain]
    for ax, metric in zip(axes, c.metrics, strict=True):
        a_mean = means.loc[means["variant"] == c.baseline, metric].mean()
        ax.axhline(a_mean, color="grey", linestyle=":", linewidth=1)
        for x, variant in enumerate(c.variants):
            runs = means[means["variant"] == variant]
            ax.scatter(np.full(len(runs), x), runs[metric], s=20, color=f"C{x}")
            for seed, value in zip(runs["seed"], runs[metric], strict=True):
                if pd.notna(seed):
                    ax.annotate(f"{int(seed)}", (x, value), xytext=(4, 0), fontsize=7,
                                textcoords="offset points", va="center")  # fmt: skip
            rows = _condition(c.summary, (variant, c.baseline), gain)
            if variant == c.baseline or rows.empty:
                continue
            row = rows.set_index("metric").loc[metric]
            if np.isfinite(row["ci95_low"]):
                low, high = a_mean + row["ci95_low"], a_mean + row["ci95_high"]
                ax.errorbar(x + 0.25, row["b_mean"], fmt="o", color="black", capsize=4,
                            yerr=[[row["b_mean"] - low], [high - row["b_mean"]]])  # fmt: skip
        ax.set_xticks(range(len(c.variants)), c.variants, fontsize=7)
        ax.set_xlim(-0.5, len(c.variants) - 0.3)
        ax.set_title(metric.upper())
    fig.suptitle(
        "per-seed means over files (numbers: seed); black: B's mean with the 95 % interval "
        "of B - A placed on A's mean (dotted)" + (f", input gain {gain:+g} dB" if gain else "")
    )
    return _save(plt, fig, out_dir / f"seed_means{gain_suffix(gain)}.png")


def _robustness_figure(plt, c: Comparison, out_dir: Path) -> Path:
    """B - A vs input gain, one line per contrast with its seed-aware 95 % interval, and the
    margin (-m, m) shaded: where the interval stays inside the band, the norms are equivalent
    at that level."""
    fig, axes = _panels(plt, len(c.metrics))
    for ax, metric in zip(axes, c.metrics, strict=True):
        margin = c.design.margin(metric)
        if np.isfinite(margin):
            ax.axhspan(-margin, margin, color="grey", alpha=0.15, label=f"margin ±{margin:g}")
        ax.axhline(0.0, color="black", linewidth=0.8)
        for k, (b, a) in enumerate(c.contrasts):
            rows = c.summary[
                (c.summary["b"] == b) & (c.summary["a"] == a) & (c.summary["metric"] == metric)
            ].sort_values("gain_db")
            ax.plot(rows["gain_db"], rows["mean_diff"], marker="o", color=f"C{k}",
                    label=f"{b} - {a}")  # fmt: skip
            if np.isfinite(rows["ci95_low"]).any():
                ax.fill_between(rows["gain_db"], rows["ci95_low"], rows["ci95_high"],
                                color=f"C{k}", alpha=0.2)  # fmt: skip
        ax.set_xticks(c.gains)
        ax.set_xlabel("input gain (dB)")
        ax.set_ylabel(f"B - A ({metric})")
        ax.set_title(metric.upper())
    axes[0].legend(fontsize=7)
    fig.suptitle("B - A vs input gain (band: 95 % interval over seeds; grey: the margin)")
    return _save(plt, fig, out_dir / "robustness.png")


def _robustness_means_figure(plt, c: Comparison, out_dir: Path) -> Path:
    """Mean over seeds vs input gain, with the 95 % interval over seeds."""
    fig, axes = _panels(plt, len(c.metrics))
    for ax, metric in zip(axes, c.metrics, strict=True):
        for k, variant in enumerate(c.variants):
            curve = (
                c.run_means[c.run_means["variant"] == variant]
                .groupby("gain_db")[metric]
                .agg(["mean", "std", "count"])
                .sort_index()
            )
            ax.plot(curve.index, curve["mean"], marker="o", color=f"C{k}", label=variant)
            half = _t_half_width(curve["std"].to_numpy(), curve["count"].to_numpy())
            if np.isfinite(half).any():
                ax.fill_between(curve.index, curve["mean"] - half, curve["mean"] + half,
                                color=f"C{k}", alpha=0.2)  # fmt: skip
        ax.set_xticks(c.gains)
        ax.set_xlabel("input gain (dB)")
        ax.set_title(metric.upper())
    axes[0].legend(fontsize=7)
    fig.suptitle("mean over seeds vs input gain (band: 95 % interval over seeds)")
    return _save(plt, fig, out_dir / "robustness_means.png")


def _t_half_width(std: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Half-width of the 95 % t interval of a mean of `count` runs (NaN with one run)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            count > 1, stats.t.ppf(0.975, np.maximum(count - 1, 1)) * std / np.sqrt(count), np.nan
        )


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) or float(value).is_integer() and abs(value) >= 2:
        return str(int(value))
    if abs(value) != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    if abs(value) >= 100:  # large relative differences: keep the columns narrow
        digits = 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


def _interval(row, low: str = "ci95_low", high: str = "ci95_high") -> str:
    if not np.isfinite(row[low]):
        return "unknown"
    digits = 3 if max(abs(row[low]), abs(row[high])) < 10 else 1
    return f"[{row[low]:.{digits}f}, {row[high]:.{digits}f}]"


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no tabulate dependency)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def headline_table(summary: pd.DataFrame, mark: str = " (primary)") -> pd.DataFrame:
    """The report's headline per metric: B - A, its seed-aware interval, Holm's p, verdict;
    the primary row's metric carries `mark`."""
    return pd.DataFrame(
        {
            "metric": [r["metric"] + (mark if r["primary"] else "") for _, r in summary.iterrows()],
            "A mean": summary["a_mean"],
            "B mean": summary["b_mean"],
            "B - A": summary["mean_diff"],
            "95% interval": [_interval(r) for _, r in summary.iterrows()],
            "p (Holm)": summary["p_holm"],
            "verdict": summary["verdict"],
        }
    )


def planning_table(summary: pd.DataFrame) -> pd.DataFrame:
    """What the study can detect: margins, TOST, seed figures (spread pooled over gains)."""
    return pd.DataFrame(
        {
            "metric": summary["metric"],
            "margin": summary["margin"],
            "90% interval": [_interval(r, "ci90_low", "ci90_high") for _, r in summary.iterrows()],
            "TOST p": summary["tost_p"],
            "p": summary["p_value"],
            "seeds A+B": [f"{r.a_seeds}+{r.b_seeds}" for r in summary.itertuples()],
            "seed corr": summary["seed_corr"],
            "mde": summary["mde"],
            "seeds needed": [
                f"{n:.0f}+" if n >= seed_stats.MAX_SEEDS else n for n in summary["seeds_needed"]
            ],
        }
    )


FILE_COLUMNS = {
    "metric": "metric",
    "n_files": "files",
    "a_median": "A median",
    "b_median": "B median",
    "rel_diff_mean_pct": "rel. diff mean %",
    "rel_diff_median_pct": "rel. diff median %",
    "b_better_share": "B better (share)",
    "wilcoxon_p_files": "Wilcoxon p (files)",
}


def spread_notes(summary: pd.DataFrame) -> list[str]:
    """What the headline of one condition rests on, and what it cannot claim."""
    first = summary.iloc[0]
    notes = [
        f"Test: {first['test']} on per-run means"
        + (" (paired by seed)" if first["paired"] else "")
        + f", {first['a_seeds']} + {first['b_seeds']} seeds."
    ]
    if first["seed_spread"] != "known":
        notes.append(
            f"**Seed spread {first['seed_spread']}**: no interval, p-value, mde or seeds "
            "needed can be given, and the difference cannot be told apart from retraining noise."
        )
    return notes


def write_report(comparison: Comparison, out_dir: Path, figures: list[Path]) -> Path:
    """report.md: inputs and what defines each variant, files left out, the seed-aware headline per condition,
    per-file statistics, robustness, per-seed means, the method, figures."""
    c = comparison
    lines = [f"# Comparison: {', '.join(c.variants[1:])} vs {c.baseline} (baseline A)", ""]
    lines += [f"- {sentence}" for sentence in answers(c)]
    lines += ["", "## Inputs", ""]
    variants = pd.DataFrame(
        [
            {
                "variant": v,
                "runs": str(len({r.label for r in c.runs if r.variant == v})),
                "seeds": ", ".join(
                    sorted({str(r.seed) for r in c.runs if r.variant == v and r.seed is not None})
                )
                or "n/a",
                "defined by": "; ".join(f"{k}: {val}" for k, val in c.definitions[v].items())
                or "-",
            }
            for v in c.variants
        ]
    )
    lines += [markdown_table(variants), ""]
    inputs = pd.DataFrame(
        [
            {
                "run": r.label,
                "variant": r.variant,
                "seed": "n/a" if r.seed is None else str(r.seed),
                "input gain dB": f"{r.gain_db:g}",
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
    if c.left_out_gains:
        lines += ["**Input gains not evaluated for every run, left out:**", ""]
        lines += [
            f"- {name}: {', '.join(f'{g:g}' for g in gains)} dB"
            for name, gains in c.left_out_gains.items()
        ]
        lines += [""]
    lines += [f"{len(c.files)} files are present in every run and compared."]
    if c.only_in:
        lines += ["", f"**{len(c.only_in)} files are missing from some runs and left out:**", ""]
        lines += [f"- `{f}`: only in {', '.join(labels)}" for f, labels in c.only_in.items()]
    if c.failed:
        lines += ["", "**Scores missing (scoring error) — left out for those metrics:**", ""]
        lines += [f"- {where}: {', '.join(metrics)}" for where, metrics in c.failed.items()]
    if c.missing_metrics:
        lines += ["", f"Metrics not in every input, left out: {', '.join(c.missing_metrics)}."]
    noisy = next((r.noisy for r in c.runs if r.noisy and r.gain_db == c.gains[0]), None)
    if noisy:
        lines += ["", "Unprocessed noisy input (mean over the test set), for reference:", ""]
        lines += [
            markdown_table(pd.DataFrame([{m: noisy.get(m, float("nan")) for m in c.metrics}]))
        ]
    for contrast in c.contrasts:
        for gain in _gains_primary_first(c):
            summary = _condition(c.summary, contrast, gain)
            title = f"{contrast[0]} (B) vs {contrast[1]} (A)" + (
                f", input gain {gain:+g} dB" if len(c.gains) > 1 or gain else ""
            )
            lines += ["", f"## {title}", "", markdown_table(headline_table(summary)), ""]
            lines += [f"- {note}" for note in spread_notes(summary)]
            lines += ["", "Margins, equivalence and planning:", ""]
            lines += [markdown_table(planning_table(summary))]
    if any(f.name == "robustness.png" for f in figures):
        lines += ["", "## Robustness to input gain", "", "![robustness](robustness.png)", ""]
        lines += ["![robustness_means](robustness_means.png)"]
    if not c.interaction.empty:
        lines += ["", "## Interaction: does B change how the input level affects quality?", ""]
        lines += [
            "Per run, delta = mean at the gain minus mean at the reference gain; diff = B's mean "
            "delta - A's (interaction.csv).",
            "",
            markdown_table(c.interaction.drop(columns=["test"])),
        ]
    seed_means = c.run_means.assign(gain_db=[f"{g:g}" for g in c.run_means["gain_db"]])
    lines += ["", "## Per-seed means", "", markdown_table(seed_means)]
    lines += [f"\n![{f.stem}]({f.name})" for f in figures if f.stem.startswith("seed_means")]
    lines += _per_file_appendix(c)
    lines += ["", "## Method", "", *METHOD, "", "## Definitions", "", *DEFINITIONS]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _per_file_appendix(c: Comparison) -> list[str]:
    """File-level statistics: they describe these trained models, not the variants."""
    lines = ["", "## Per file (appendix)", ""]
    lines += [
        "A file's value is the mean over its variant's seeds. These figures describe these "
        "particular trained models; they ignore the seed-to-seed spread and are no evidence "
        "for a difference between the variants."
    ]
    for contrast in c.contrasts:
        for gain in c.gains:
            summary = _condition(c.summary, contrast, gain)
            where = f"{contrast[0]} vs {contrast[1]}" + (f", {gain:+g} dB" if gain else "")
            lines += ["", f"### {where}", ""]
            lines += [markdown_table(summary[list(FILE_COLUMNS)].rename(columns=FILE_COLUMNS))]
            suffix = _suffix(c, contrast, gain)
            for name in ("per_file_diff", "per_file_diff_distribution"):
                lines += ["", f"![{name}{suffix}]({name}{suffix}.png)"]
    return lines


def answers(c: Comparison) -> list[str]:
    """One sentence per contrast: the verdict of its primary row (or why there is none)."""
    rows = c.summary[c.summary["primary"].astype(bool)]
    if rows.empty:
        return [f"No answer: the primary endpoint {c.design.primary} is not in this comparison."]
    return [_answer(c, row) for _, row in rows.iterrows()]


def _answer(c: Comparison, row) -> str:
    unit = row["metric"].upper()
    where = f"{row['b']} vs {row['a']} at {row['gain_db']:g} dB"
    seeds = f"{row['a_seeds']}+{row['b_seeds']} seeds"
    margin = f"±{row['margin']:g} {unit}"
    ci90 = _interval(row, "ci90_low", "ci90_high")
    if row["verdict"] == "equivalent":
        return f"{where}: equivalent within {margin} (90 % interval {ci90}, {seeds})"
    if row["verdict"] in ("B better", "A better"):
        winner = row["b"] if row["verdict"] == "B better" else row["a"]
        return (
            f"{where}: {winner} better by {abs(row['mean_diff']):.3f} {unit} (95 % interval "
            f"{_interval(row)}, p (Holm) {_fmt(row['p_holm'])}, {seeds})"
        )
    needed = row["seeds_needed"]
    text = f"{where}: inconclusive at {margin} (90 % interval {ci90}, {seeds})"
    if not np.isfinite(needed):
        return text + "; the seed spread is unknown, so no seed count can be planned"
    if needed >= seed_stats.MAX_SEEDS:
        return text + f"; even {seed_stats.MAX_SEEDS} seeds per variant would not give 80 % power"
    have = int(max(row["a_seeds"], row["b_seeds"]))
    plan = int(max(needed, have + 1))
    experiments = {r.experiment for r in c.runs}
    experiment = experiments.pop() if len(experiments) == 1 else None
    command = (
        f"dfablate ablate experiment={experiment} 'seed=range(0,{plan})'"
        if experiment
        else f"train seeds {have}..{plan - 1} of each variant and compare again"
    )
    return (
        text + f"; {needed:.0f} seeds per variant give 80 % power at a difference of "
        f"{row['margin']:g} {unit} (run-to-run spread pooled over gains); extend the study "
        f"with `{command}`"
    )


METHOD = [
    "Each trained run adds its own offset to the score of every file, so the unit of variation "
    "is the run, not the file: every run is reduced to its mean over the compared files. "
    "B - A is the difference of the two variants' averages of these per-run means, and its 95 % "
    "interval and p-value come from a t-test on them: paired over seeds (a one-sample t-test of "
    "the per-seed differences) when both variants have the same seeds, because the same seed "
    "means the same initial weights and crop order, else Student's two-sample t-test. "
    "This is exact when run offsets add to the scores (score = file quality + run offset + "
    "noise) and are roughly Gaussian with one spread for both variants; simulated studies in "
    "the test suite reject a true zero difference in 5 % of studies at 2, 3, 5 and 10 seeds "
    "(Welch's test, `--unpaired-test welch`, allows unequal spreads but rejects only 2-3 % at "
    "2-3 seeds: its intervals are too wide there). "
    "Each metric has a margin, the smallest difference of interest (`--margin`): two one-sided "
    "tests at ±margin (`tost_p`, from the same t distribution) declare the variants "
    "`equivalent` when the 90 % interval of B - A lies inside (-margin, margin); otherwise the "
    "verdict is `B better` or `A better` when Holm's p is below 0.05, else `inconclusive` (no "
    "difference found, and none ruled out). Holm corrects two families: the primary row "
    "(`--primary`, default pesq@0) across all contrasts, and every other row within its "
    "contrast. `mde` is the smallest |B - A| the test detects with 80 % power at alpha 0.05, "
    "and `seeds_needed` the seeds per variant giving 80 % power at a true difference equal to "
    "the margin (not the observed difference: that would be post-hoc power); both use the "
    "per-run spread pooled over all gains of the metric (`sd_df` degrees of freedom). "
    "With one seed in a variant the run-to-run spread is unknown and nothing is claimed; the "
    "file-level Wilcoxon p (`wilcoxon_p_files`) describes only these particular trained models.",
    "",
    "What it cannot tell: the answer holds for this test set and this training recipe (data, "
    "model, schedule, amount of training); another test set or recipe can change it, and with "
    "2-3 seeds the per-run spread itself is poorly known (hence wide intervals).",
]
DEFINITIONS = [
    "- All metrics are higher-is-better (PESQ, STOI, CSIG, CBAK, COVL, segmental SNR, SI-SDR).",
    "- Per-run mean: a run's mean score over the files compared for that metric (files scored "
    "in every run). A seed std is the sample std (ddof 1) of a variant's per-run means.",
    "- Per-file value of a variant: the mean of that file's score over the variant's seeds; "
    "`diff` = B - A in the metric's unit, `rel_diff_pct` = `100 (B - A) / |A|` (undefined, "
    "left out, where A = 0 and B != 0).",
    "- The spread behind p, the intervals, TOST and the verdict is the row's own test's: the "
    "std of the per-seed differences when paired (often much smaller than either seed std, as "
    "both runs of a seed share its initial weights and crop order; `seed_corr` is the "
    "correlation of same-seed per-run means), the pooled seed std for Student's t, both seed "
    "stds for Welch's. mde and seeds needed use that spread pooled over the gains (Welch: "
    "pooled as Student's). Seeds needed: 1000+ means 1000 or more.",
    f"- SSNR and SI-SDR: {NO_RELATIVE}; their relative columns in summary.csv are empty.",
    "- B better (share): fraction of files with B > A. Wilcoxon p (files): two-sided paired "
    "Wilcoxon signed-rank test of the per-file B - A (scipy); it ignores seed-to-seed spread.",
]


def write_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """relative_diff.csv, per_file.csv, summary.csv, seed_means.csv, interaction.csv, figures
    and report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "relative_diff": out_dir / "relative_diff.csv",
        "per_file": out_dir / "per_file.csv",
        "summary": out_dir / "summary.csv",
        "seed_means": out_dir / "seed_means.csv",
        "interaction": out_dir / "interaction.csv",
    }
    comparison.relative_diff.to_csv(paths["relative_diff"], index=False)
    comparison.per_file.to_csv(paths["per_file"], index=False)
    comparison.summary.to_csv(paths["summary"], index=False)
    comparison.run_means.to_csv(paths["seed_means"], index=False)
    comparison.interaction.to_csv(paths["interaction"], index=False)
    figures = write_figures(comparison, out_dir)
    paths["report"] = write_report(comparison, out_dir, figures)
    paths.update({f.stem: f for f in figures})
    return paths


def _files_compared(summary: pd.DataFrame) -> str:
    """How many files the rows compared (files failed in a run are left out per metric)."""
    low, high = int(summary["n_files"].min()), int(summary["n_files"].max())
    return f"{high} files" if low == high else f"{low}-{high} files (per metric)"


def print_summary(comparison: Comparison, report: Path | None = None, console=None) -> None:
    """The seed-aware headline per condition in the terminal (rich)."""
    console = console or Console()
    c = comparison
    for contrast in c.contrasts:
        for gain in _gains_primary_first(c):
            summary = _condition(c.summary, contrast, gain)
            first = summary.iloc[0]
            spread = "known" if first["seed_spread"] == "known" else "UNKNOWN"
            table = Table(
                box=box.SIMPLE_HEAD,
                pad_edge=False,
                title=f"{contrast[0]} (B) vs {contrast[1]} (A)"
                + (f" at {gain:+g} dB input gain" if gain else "")
                + f": {first['a_seeds']}+{first['b_seeds']} seeds, seed spread {spread}, "
                f"{_files_compared(summary)}",
                caption=f"{first['test']} on per-run means"
                + (" (paired by seed)" if first["paired"] else "")
                + "; * primary endpoint; verdict at each metric's margin",
            )
            headline = headline_table(summary, mark=" *")
            for name in headline.columns:
                table.add_column(
                    name, justify="left" if name in ("metric", "verdict") else "right",
                    no_wrap=True, min_width=len("inconclusive") if name == "verdict" else None,
                )  # fmt: skip
            for row in headline.itertuples(index=False):
                table.add_row(*[_fmt(v) for v in row])
            console.print(table)
            if first["seed_spread"] != "known":
                console.print(
                    f"seed spread {first['seed_spread']}: no interval or p-value; the difference "
                    "cannot be told apart from retraining with another seed",
                    highlight=False,
                )
    for sentence in answers(c):
        console.print(sentence, highlight=False, soft_wrap=True)
    for run, why in c.missing_runs.items():
        console.print(f"missing run {run}: {why}", highlight=False)
    for name, gains in c.left_out_gains.items():
        listed = ", ".join(f"{g:g}" for g in gains)
        console.print(f"{name}: input gains {listed} dB not evaluated for every run, left out")
    if c.only_in:
        console.print(f"{len(c.only_in)} files missing from some runs were left out")
    if c.failed:
        console.print(f"{len(c.failed)} file scores missing (scoring errors) were left out")
    if report is not None:
        console.print(f"report: {report}")


def default_out_dir(root: Path = Path("outputs")) -> Path:
    """A new folder outputs/compare/<timestamp> (suffixed if it already exists)."""
    base = root / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}_{k}")
    return path
