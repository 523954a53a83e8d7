"""`dfablate evaluate`: the composed `evaluate.yaml` -> checks, checkpoint, test set, evaluation
(a trained run or checkpoint, or a released upstream model folder)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.table import Table

from dfablate.config import config_file, override_key
from dfablate.cores import check_core_count
from dfablate.devices import check_device, resolve_device
from dfablate.errors import UserError
from dfablate.evaluation.pipeline import Evaluation, evaluate_checkpoint, evaluate_model
from dfablate.evaluation.testset import check_gain_db, gain_dir_name, load_test_set
from dfablate.evaluation.wandb_log import log_evaluation_to_wandb
from dfablate.features import get_norm
from dfablate.metrics import parse_metrics
from dfablate.models.upstream import NORM, load_upstream_model
from dfablate.paths import check_output_dir, default_noisy_cache_dir
from dfablate.records import RunRecord
from dfablate.runs import file_sha1, resolve_checkpoint
from dfablate.wandb_settings import follow_run

_ABSENT = object()


def check_evaluate_options(cfg, overrides: list[str]) -> None:
    """Refuse what `evaluate` would otherwise ignore or misread: unknown keys, non-integer
    counts, an unknown `expect_norm`, a device this machine does not have."""
    known = set(OmegaConf.load(config_file("evaluate.yaml"))) - {"defaults"} | {"data", "hydra"}
    for override in overrides:
        top = override_key(override).split(".", 1)[0]
        if top not in known:
            hint = (
                "; to refuse a checkpoint of another norm use expect_norm=NAME"
                if top == "norm"
                else ""
            )
            raise UserError(
                f"{override}: evaluate has no option {top!r} (the model, norm and features come "
                f"from the checkpoint){hint}"
            )
    value = cfg.get("max_files")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise UserError(f"max_files={value}: must be an integer")
    for key in ("jobs", "num_threads"):
        check_core_count(cfg.get(key), key)
    if cfg.get("out_dir"):
        check_output_dir(Path(str(cfg.out_dir)), "out_dir")
    if cfg.expect_norm is not None:
        try:
            get_norm(cfg.expect_norm)
        except UserError as exc:
            raise UserError(f"expect_norm={cfg.expect_norm}: {exc}") from None
    check_device(str(cfg.device))


def evaluate_from_config(cfg, overrides: list[str]) -> Evaluation:
    """`dfablate evaluate`: the composed evaluate.yaml -> checkpoint, test set, evaluation.

    With run=DIR and no data= override, the run is evaluated on the dataset it was trained on,
    with any data.KEY=VALUE overrides applied to that dataset's config (e.g. data.root= for a
    dataset that moved). W&B follows the run's logger unless wandb.mode= is given (`follow_run`).
    """
    check_evaluate_options(cfg, overrides)
    input_gain_db = check_gain_db(cfg.input_gain_db, "input_gain_db")
    metrics = check_metrics_option(cfg.metrics, "metrics")
    if cfg.get("upstream"):
        return evaluate_upstream(cfg, input_gain_db, metrics)
    ckpt, run_dir = resolve_checkpoint(cfg.run, cfg.ckpt, cfg.checkpoint)
    data_cfg, data_name = cfg.data, cfg.hydra.runtime.choices.data
    recorded = RunRecord.recorded_in(run_dir, depth=1)
    train_cfg = recorded.config if recorded else {}
    train_data_name = recorded.choices.get("data") if recorded else None
    data_given = any(override_key(o) == "data" for o in overrides)
    if cfg.run and not recorded and not data_given:
        raise UserError(
            f"run={cfg.run}: no recorded config (.hydra/config.yaml), so the data it trained on "
            "is unknown; give data=NAME (and data.root=DIR) to say what to evaluate on"
        )
    if not data_given:
        if train_cfg.get("data") and train_data_name:
            data_cfg, data_name = OmegaConf.create(train_cfg["data"]), train_data_name
            for override in overrides:
                key = override_key(override)
                if not key.startswith("data."):
                    continue
                if OmegaConf.select(data_cfg, key[len("data.") :], default=_ABSENT) is _ABSENT:
                    raise UserError(
                        f"{override}: the data this run trained on ({data_name}) has no "
                        f"{key}; add data=NAME to evaluate on another dataset"
                    )
                data_cfg.merge_with_dotlist([override.lstrip("+")[len("data.") :]])
    wandb_settings = follow_run(OmegaConf.to_container(cfg.wandb), train_cfg.get("logger"))
    test_set = load_test_set(data_cfg, data_name, cfg.split, cfg.max_files)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    evaluation = evaluate_checkpoint(
        ckpt,
        run_dir,
        test_set,
        Path(cfg.out_dir) if cfg.out_dir else None,
        expect_norm=cfg.expect_norm,
        save_enhanced=bool(cfg.save_enhanced),
        jobs=cfg.jobs,
        device=cfg.device,
        noisy_cache_dir=Path(cfg.noisy_cache_dir) if cfg.noisy_cache_dir else None,
        progress=bool(cfg.progress),
        input_gain_db=input_gain_db,
        metrics=metrics,
        run=recorded,
    )
    log_evaluation_to_wandb(evaluation, wandb_settings)
    return evaluation


def check_metrics_option(value, option: str) -> tuple[str, ...]:
    """A `metrics=[...]` option (names or groups, e.g. [pesq,dnsmos]) as the selected metrics;
    UserError naming the option."""
    names = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if not isinstance(names, list | tuple | str) or not names:
        raise UserError(f"{option}={value}: give a list of metrics, e.g. {option}=[pesq,dnsmos]")
    try:
        return parse_metrics(names)
    except UserError as exc:
        raise UserError(f"{option}={value}: {exc}") from None


def evaluate_upstream(
    cfg, input_gain_db: float = 0.0, metrics: tuple[str, ...] | None = None
) -> Evaluation:
    """`dfablate evaluate upstream=DIR`: a released DeepFilterNet folder (config.ini +
    checkpoints/*.ckpt.best), scored like a run; results in DIR/eval/<dataset>[@<G>dB]/ unless
    out_dir=. Its summary says norm "original" and label "upstream-<folder name>" for `compare`.
    W&B: `wandb.mode` as given, else auto (there is no training logger to follow)."""
    if cfg.run is not None or cfg.ckpt is not None:
        raise UserError("give upstream=DIR alone, without run= or ckpt=")
    if cfg.expect_norm is not None and cfg.expect_norm != NORM:
        raise UserError(f"upstream models use norm={NORM}, but expect_norm={cfg.expect_norm}")
    released = load_upstream_model(cfg.upstream)
    folder = Path(cfg.upstream)
    test_set = load_test_set(cfg.data, cfg.hydra.runtime.choices.data, cfg.split, cfg.max_files)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    provenance = {
        "checkpoint": str(released.checkpoint),
        "checkpoint_sha1": file_sha1(released.checkpoint),
        "run_dir": str(folder),
        "experiment": None,
        "norm": NORM,
        "seed": None,
        "arch": released.arch,
        "label": released.label,
        "source": "upstream",
    }
    evaluation = evaluate_model(
        released.features,
        released.model,
        test_set,
        Path(cfg.out_dir)
        if cfg.out_dir
        else folder / "eval" / gain_dir_name(test_set.name, input_gain_db),
        provenance=provenance,
        run=RunRecord(
            folder,
            norm=NORM,
            arch=released.arch,
            label=released.label,
            variant_key={"label": released.label},
        ),  # fmt: skip
        noisy_cache_dir=Path(cfg.noisy_cache_dir)
        if cfg.noisy_cache_dir
        else default_noisy_cache_dir(),
        save_enhanced=bool(cfg.save_enhanced),
        jobs=cfg.jobs,
        device=resolve_device(str(cfg.device)),
        progress=bool(cfg.progress),
        input_gain_db=input_gain_db,
        metrics=metrics or parse_metrics(cfg.metrics),
    )
    log_evaluation_to_wandb(evaluation, follow_run(OmegaConf.to_container(cfg.wandb), None))
    return evaluation


def summary_table(evaluation: Evaluation):
    """A rich table: mean of each metric for the enhanced output and the noisy input."""
    summary = evaluation.summary
    table = Table(
        title=f"{gain_dir_name(summary['dataset']['name'], summary['input_gain_db'])}: "
        f"{summary['n_files']} files "
        f"({summary['n_failed']} not scored), norm={summary['norm']}"
    )
    table.add_column("")
    metrics = summary["metrics"]
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_row("enhanced", *(f"{summary['mean'][m]:.3f}" for m in metrics))
    table.add_row("noisy", *(f"{summary['noisy'][m]:.3f}" for m in metrics))
    return table
