"""A comparison's W&B run: its tables, figures and headline figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import wandb

from dfablate.comparison.results import Comparison, gain_suffix
from dfablate.tracking import init_wandb, quiet_wandb
from dfablate.wandb_report.spec import PER_FILE_RUNS_KEY, merged_per_file
from dfablate.wandb_settings import wandb_mode

WANDB_SUMMARY_KEYS = (
    "a_mean", "b_mean", "mean_diff", "ci95_low", "ci95_high", "p_value", "p_holm", "mde",
    "seeds_needed", "rel_diff_of_means_pct", "wilcoxon_p_files", "margin", "tost_p", "ci90_low",
    "ci90_high",
)  # fmt: skip


def log_comparison_to_wandb(
    comparison: Comparison,
    paths: dict[str, Path],
    mode: str = "auto",
    project: str = "dfablate",
    on_run: Callable[[Any], None] | None = None,
) -> None:
    """One W&B run (job_type "compare") in the output folder: the summary, per-file and seed
    tables, every figure, and the seed-aware headline of every metric in the run summary.

    `on_run` (the W&B Report's publisher) is called with the run before it finishes, or with
    None when W&B is disabled.
    """
    if wandb_mode(mode) == "disabled":
        if on_run is not None:
            on_run(None)
        return
    with quiet_wandb():
        _log_comparison(comparison, paths, mode, project, on_run)


def _log_comparison(
    comparison: Comparison,
    paths: dict[str, Path],
    mode: str,
    project: str,
    on_run: Callable[[Any], None] | None,
):

    out_dir = paths["report"].parent
    experiments = {r.experiment for r in comparison.runs}
    group = experiments.pop() if len(experiments) == 1 and None not in experiments else "compare"
    config = {
        "baseline": comparison.baseline,
        "variants": comparison.variants,
        "definitions": comparison.definitions,
        "input_gains_db": comparison.gains,
        "runs": [
            {
                "label": r.label,
                "variant": r.variant,
                "seed": r.seed,
                "gain_db": r.gain_db,
                "csv": str(r.csv_path),
            }
            for r in comparison.runs
        ],  # fmt: skip
        "n_files": len(comparison.files),
        "left_out_files": list(comparison.only_in),
    }
    norms = {r.variant_key.get("norm.name") for r in comparison.runs} - {None}
    run = init_wandb(
        out_dir, config, project=project, group=group, job_type="compare", mode=mode,
        tags=[f"norm:{n}" for n in sorted(norms)],
    )  # fmt: skip
    try:
        data = {
            "compare/summary": wandb.Table(dataframe=comparison.summary),
            "compare/per_file": wandb.Table(dataframe=comparison.per_file),
            "compare/relative_diff": wandb.Table(dataframe=comparison.relative_diff),
            "compare/seed_means": wandb.Table(dataframe=comparison.run_means),
            PER_FILE_RUNS_KEY: wandb.Table(dataframe=merged_per_file(comparison)),
            "compare/interaction": wandb.Table(dataframe=comparison.interaction),
        }
        data.update(
            {f"compare/{p.stem}": wandb.Image(str(p)) for p in paths.values() if p.suffix == ".png"}
        )
        run.log(data)
        for _, row in comparison.summary.iterrows():
            prefix = (
                f"compare/{row['b']}_vs_{row['a']}{gain_suffix(row['gain_db'])}/{row['metric']}"
            )
            for key in WANDB_SUMMARY_KEYS:
                run.summary[f"{prefix}/{key}"] = float(row[key])
            run.summary[f"{prefix}/seed_spread_known"] = row["seed_spread"] == "known"
            run.summary[f"{prefix}/verdict"] = row["verdict"]
            run.summary[f"{prefix}/primary"] = bool(row["primary"])
        if on_run is not None:
            on_run(run)
    finally:
        run.finish()
