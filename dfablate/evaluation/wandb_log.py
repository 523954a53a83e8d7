"""An evaluation's W&B run: the per-file tables and the means, grouped with its training runs."""

from __future__ import annotations

from pathlib import Path

from dfablate.evaluation.pipeline import Evaluation
from dfablate.evaluation.testset import gain_dir_name


def log_evaluation_to_wandb(
    run_dir: Path, evaluation: Evaluation, train_cfg: dict, wandb_cfg: dict
) -> None:
    """One W&B run per evaluation (job_type "eval", grouped with its training runs): the
    per-file table, the noisy reference table and the means in the summary.

    A separate run rather than resuming the training run: offline runs resumed elsewhere would
    restart W&B's step counter and clash with the training history on upload.
    """
    from dfablate.tracking import quiet_wandb, wandb_mode

    if wandb_mode(wandb_cfg.get("mode", "auto")) == "disabled":
        return
    with quiet_wandb():
        _log_evaluation(run_dir, evaluation, train_cfg, wandb_cfg)


def _log_evaluation(run_dir: Path, evaluation: Evaluation, train_cfg: dict, wandb_cfg: dict):
    import pandas as pd
    import wandb

    from dfablate.tracking import init_wandb

    summary = evaluation.summary
    dataset = gain_dir_name(summary["dataset"]["name"], summary["input_gain_db"])
    train_wandb = (train_cfg.get("logger") or {}).get("wandb") or {}
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
        project=train_wandb.get("project") or wandb_cfg.get("project", "dfablate"),
        entity=wandb_cfg.get("entity") or train_wandb.get("entity"),
        group=summary["experiment"] or run_dir.name,
        tags=[f"norm:{summary['norm']}", f"seed:{summary['seed']}", f"dataset:{dataset}"],
        job_type="eval",
        mode=wandb_cfg.get("mode", "auto"),
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
