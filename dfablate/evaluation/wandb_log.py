"""An evaluation's W&B run: the per-file tables and the means, grouped with its training runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import wandb

from dfablate.evaluation.pipeline import Evaluation
from dfablate.evaluation.testset import gain_dir_name
from dfablate.tracking import init_wandb, quiet_wandb
from dfablate.wandb_settings import wandb_mode


def log_evaluation_to_wandb(evaluation: Evaluation, settings: Mapping[str, Any] | None) -> None:
    """One W&B run per evaluation (job_type "eval", grouped with its training runs): the
    per-file table, the noisy reference table and the means in the summary. `settings`: mode,
    project and entity (`dfablate.tracking.follow_run`); None: no W&B.

    A separate run rather than resuming the training run: offline runs resumed elsewhere would
    restart W&B's step counter and clash with the training history on upload.
    """
    if settings is None or wandb_mode(settings.get("mode") or "auto") == "disabled":
        return
    with quiet_wandb():
        _log_evaluation(evaluation, settings)


def _log_evaluation(evaluation: Evaluation, settings: Mapping[str, Any]) -> None:

    summary = evaluation.summary
    run_dir = evaluation.record.run.run_dir
    dataset = gain_dir_name(summary["dataset"]["name"], summary["input_gain_db"])
    config = {
        "norm": {"name": summary["norm"]},
        "seed": summary["seed"],
        "name": summary["experiment"],
        "dataset": summary["dataset"],
        "input_gain_db": summary["input_gain_db"],
        "pipeline_version": summary["pipeline_version"],
        "checkpoint": summary["checkpoint"],
    }
    run = init_wandb(
        evaluation.metrics_csv.parent,
        config,
        project=settings.get("project") or "dfablate",
        entity=settings.get("entity"),
        group=summary["experiment"] or run_dir.name,
        tags=[f"norm:{summary['norm']}", f"seed:{summary['seed']}", f"dataset:{dataset}"],
        job_type="eval",
        mode=settings.get("mode") or "auto",
        name=f"{run_dir.name}-eval-{dataset}",
    )
    try:
        run.log(
            {
                f"eval/{dataset}/per_file": wandb.Table(dataframe=pd.DataFrame(evaluation.rows)),
                f"eval/{dataset}/noisy_per_file": wandb.Table(
                    dataframe=pd.DataFrame(evaluation.noisy_rows)
                ),
            }
        )
        for stat in ("mean", "median"):
            for metric, value in summary[stat].items():
                run.summary[f"eval/{dataset}/{metric}" + ("" if stat == "mean" else "_median")] = (
                    value
                )
        for metric, value in summary["noisy"].items():
            run.summary[f"eval/{dataset}/noisy_{metric}"] = value
        run.summary[f"eval/{dataset}/n_failed"] = summary["n_failed"]
    finally:
        run.finish()
