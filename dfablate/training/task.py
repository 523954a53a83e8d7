"""`dfablate train`: the Hydra task that trains one DeepFilterNet variant with Lightning.

`run_cli(overrides)` runs Hydra on `configs/train.yaml` with command-line overrides (`-m` for a
multirun); each job calls `train(cfg)`, which builds the data module, `DfnSystem`, loggers and
callbacks from the config and fits. Hydra errors and `UserError`s come out as one-line
`UserError`s. The configs ship inside the package (`dfablate.config`), so the command works
from any directory, installed from a wheel too.

DDP and multiruns: Lightning's `ddp` strategy starts ranks > 0 by re-running the command line.
Jobs run by the CLI process re-run `dfablate train <this job's overrides>` in the job's run
directory (never the sweep); jobs in launcher workers (joblib, submitit_local) use `ddp_spawn`;
on SLURM (submitit_slurm with tasks_per_node = devices) the ranks come from SLURM itself.

Refusals (`check_run`: an existing run without resume=true, a checkpoint of another model, bad
values) come before anything is written: for a single run before Hydra starts, in a sweep before
the job writes its `.hydra/` records, so a refused command leaves a run directory untouched.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dfablate.config import CONFIG_SEARCH_PATH, as_user_error, compose_config, one_line
from dfablate.errors import Interrupted, UserError

log = logging.getLogger(__name__)
MINI_DATAMODULE = "dfablate.data.mini_datamodule"  # data=mini: data.root must be a built corpus

_cli_pid: int | None = None  # the process that runs `dfablate train`
_cli_argv0: str | None = None


def compose_train_config(
    overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False
) -> Any:
    """The composed train config (a DictConfig) for `overrides`, outside a Hydra run (scripts,
    tests). Not for use inside a running Hydra job."""
    return compose_config("train", overrides, return_hydra_config=return_hydra_config)


def _job_label() -> str:
    """ "" for a single run; "job <n> (<overrides>): " inside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return ""
    return f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): "


def run_hydra(task_function, config_name: str, overrides: list[str]) -> None:
    """Run `task_function(cfg)` under Hydra with `overrides` (as on a command line, `-m` too).

    A job that raises UserError is reported, not fatal to the other jobs of a multirun; after
    all jobs, the failures (and any Hydra/OmegaConf error) are raised as one one-line UserError.
    """
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    failures: list[str] = []
    parent_pid = os.getpid()

    def job(cfg) -> None:
        try:
            task_function(cfg)
        except UserError as exc:
            if os.getpid() != parent_pid:
                raise  # a launcher worker: the launcher reports it to the parent
            label = _job_label()
            failures.append(label + one_line(exc))
            if label:  # multirun: say so now; Hydra marks the job failed, the others go on
                print(f"error: {failures[-1]}", file=sys.stderr)  # not into the run's train.log
                raise

    job.__module__, job.__qualname__ = task_function.__module__, task_function.__qualname__
    main = hydra.main(config_path=CONFIG_SEARCH_PATH, config_name=config_name, version_base="1.3")(
        job
    )
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [saved_argv[0], *overrides]  # Hydra reads its arguments from sys.argv
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise instead of printing a traceback and exiting
    try:
        main()
    except UserError:  # a failed multirun job, re-raised by Hydra's sweeper after the others
        if not failures:
            raise
    except (HydraException, OmegaConfBaseException) as exc:
        raise as_user_error(exc) from exc
    finally:
        sys.argv = saved_argv
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    if len(failures) == 1:
        raise UserError(failures[0])
    if failures:
        raise UserError(f"{len(failures)} jobs failed: " + "; ".join(failures))


def _task(cfg) -> None:
    train(cfg)


# Sweep jobs write Hydra's records (.hydra/config.yaml, hydra.yaml, overrides.yaml) themselves,
# once their checks have passed; the folder name reaches launcher workers through the job's env.
_RECORDS_ENV = "DFABLATE_HYDRA_RECORDS"


def run_cli(overrides: list[str]) -> int:
    """`dfablate train [overrides]`: run the training task (or a sweep with -m)."""
    global _cli_pid, _cli_argv0
    _cli_pid, _cli_argv0 = os.getpid(), sys.argv[0]
    overrides = list(overrides)
    _preflight(overrides)
    sweep = any(arg in ("-m", "--multirun") for arg in overrides)
    if sweep and not any(arg.lstrip("+").startswith("hydra.output_subdir=") for arg in overrides):
        overrides += ["hydra.output_subdir=null", f"+hydra.job.env_set.{_RECORDS_ENV}=.hydra"]
    run_hydra(_task, "train", overrides)
    return 0


def _write_hydra_records(cfg, run_dir: Path, subdir: str) -> None:
    """What Hydra writes into `<run dir>/<subdir>/` before a job (see `_RECORDS_ENV`)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    records = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    records.hydra.output_subdir = subdir
    out = run_dir / subdir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (out / "hydra.yaml").write_text(OmegaConf.to_yaml(records))
    (out / "overrides.yaml").write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task))


# --- the task --------------------------------------------------------------------------------


def _strategy(requested: Any) -> Any:
    """The Lightning strategy to use; see the module docstring for DDP under multiruns."""
    if requested != "ddp":
        return requested
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
        return requested  # ranks are started by the cluster
    if _cli_pid is None:
        return requested  # called from a user's own script: Lightning re-runs that script
    if os.getpid() != _cli_pid:
        log.warning("DDP inside a launcher worker process: using strategy ddp_spawn")
        return "ddp_spawn"
    from hydra.core.hydra_config import HydraConfig

    # Lightning re-runs sys.argv (+ hydra.run.dir=<this run dir>) for ranks > 0: make that
    # this single job, not the whole sweep.
    overrides = HydraConfig.get().overrides
    searchpath = [o for o in overrides.hydra if o.lstrip("+").startswith("hydra.searchpath=")]
    sys.argv = [_cli_argv0 or sys.argv[0], "train", *overrides.task, *searchpath]
    return requested


@dataclass(frozen=True)
class RunStart:
    """What `check_run` decided: a new run, or a resume from `ckpt_path` at `step`."""

    ckpt_path: str | None = None
    step: int | None = None


def _integer(cfg, key: str) -> int | None:
    value = OmegaConf.select(cfg, key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise UserError(f"{key}={value}: must be an integer")


def check_run(cfg, run_dir: Path) -> RunStart:
    """Every refusal `train` can make before it writes anything: bad values, a run directory
    that already holds a run, a checkpoint that is unreadable or of another model."""
    from dfablate.data.mini import mini_root
    from dfablate.features import get_norm, register_norm_function
    from dfablate.training.checkpoints import (
        IDENTITY_KEY,
        check_identity,
        model_identity,
        read_checkpoint,
    )

    _integer(cfg, "seed")
    max_steps = _integer(cfg, "trainer.max_steps")
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        raise UserError(
            f"trainer.max_steps={max_steps}: nothing to train; give a positive number of "
            "optimizer steps, or -1 for no limit (trainer.max_epochs decides)"
        )
    if cfg.norm.get("function"):
        register_norm_function(cfg.norm.name, cfg.norm.function)
    get_norm(cfg.norm.name)
    if cfg.data.get("_target_") == MINI_DATAMODULE and cfg.data.get("root") is not None:
        mini_root(cfg.data.root)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    identity = model_identity(cfg.norm.name, model["arch"], dict(model.get("params") or {}))
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise UserError(f"ckpt_path={cfg.ckpt_path}: checkpoint not found")
    elif cfg.get("resume") and last.is_file():
        path = last
    elif cfg.get("resume"):
        return RunStart()
    elif last.is_file():
        raise UserError(
            f"{run_dir} already holds a training run (checkpoints/last.ckpt): pass resume=true "
            "to continue it, or choose another name= / seed="
        )
    else:
        return RunStart()
    checkpoint = read_checkpoint(path)
    try:
        check_identity(checkpoint.get(IDENTITY_KEY), identity, "this run's config")
    except UserError as exc:
        raise UserError(f"{path}: {exc}; resume it with the config it was trained with") from None
    return RunStart(str(path), int(checkpoint["global_step"]))


def _preflight(overrides: list[str]) -> None:
    """Run `check_run` for a single run before Hydra creates or rewrites its run directory
    (its `.hydra/` records), so that a refused command changes nothing. Sweeps (-m) and
    Hydra's own flags (--cfg, --info, ...) are checked inside each job instead."""
    if any(arg.startswith("-") for arg in overrides):
        return
    cfg = compose_train_config(overrides, return_hydra_config=True)
    run_dir = Path(cfg.hydra.run.dir)
    check_run(cfg, run_dir)


def _csv_logger(run_dir: Path, resume_step: int | None) -> Any:
    """CSVLogger in <run dir>/csv/. Resuming, it keeps the rows logged before the checkpoint
    (Lightning's CSVLogger would delete them) and drops those the resumed run will redo."""
    import csv
    import warnings

    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=str(run_dir), name="csv", version="")
    path = Path(logger.log_dir) / "metrics.csv"
    rows: list[dict[str, str]] = []
    header: list[str] = []
    if resume_step is not None and path.is_file():
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            rows = [row for row in reader if int(row["step"]) < resume_step]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "previous log files ... will be deleted"
        writer = logger.experiment
    if rows:
        with path.open("w", newline="") as file:
            out = csv.DictWriter(file, fieldnames=header)
            out.writeheader()
            out.writerows(rows)
        writer.metrics_keys = sorted(header)
    return logger


def _loggers(cfg, run_dir: Path, resolved: dict[str, Any], resume_step: int | None) -> list[Any]:
    loggers: list[Any] = []
    logger_cfg = cfg.get("logger") or {}
    if logger_cfg.get("csv") is not None:
        loggers.append(_csv_logger(run_dir, resume_step))
    wandb_cfg = logger_cfg.get("wandb")
    if wandb_cfg is not None:
        from lightning.pytorch.loggers import WandbLogger

        from dfablate.tracking import wandb_init_kwargs

        kwargs = wandb_init_kwargs(
            run_dir,
            project=wandb_cfg.project,
            group=wandb_cfg.get("group"),
            tags=list(wandb_cfg.get("tags") or []),
            job_type="train",
            mode=wandb_cfg.get("mode", "auto"),
            entity=wandb_cfg.get("entity"),
        )
        kwargs["save_dir"] = kwargs.pop("dir")
        logger = WandbLogger(**kwargs)
        logger.log_hyperparams(resolved)
        loggers.append(logger)
    return loggers


def train(cfg, run_dir: str | Path | None = None) -> Path:
    """Train one run described by the composed train config; returns its run directory."""
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.utilities import rank_zero_only

    from dfablate.training.checkpoints import RunCheckpoints
    from dfablate.training.module import DfnSystem

    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)
    start = check_run(cfg, run_dir)
    ckpt_path, resume_step = start.ckpt_path, start.step
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if rank_zero_only.rank == 0:
        if records := os.environ.get(_RECORDS_ENV):
            _write_hydra_records(cfg, run_dir, records)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        print(
            f"resuming {run_dir} from step {resume_step} ({ckpt_path})"
            if ckpt_path
            else f"new run in {run_dir}",
            flush=True,
        )
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(cfg.data, seed=int(cfg.seed))  # crops and order follow the run seed
    system = DfnSystem(
        norm=cfg.norm.name,
        model=resolved["model"],
        loss=resolved.get("loss"),
        optim=resolved.get("optim"),
        val_metric_utterances=int(cfg.get("val_metric_utterances", 3)),
        norm_function=cfg.norm.get("function"),
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # checkpoints last: one written after a validation then holds what it changed in the others
    callbacks.sort(key=lambda callback: isinstance(callback, RunCheckpoints))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["strategy"] = _strategy(trainer_cfg.get("strategy", "auto"))
    if getattr(datamodule, "batch_size_schedule", None):  # a new batch size, a new loader
        trainer_cfg["reload_dataloaders_every_n_epochs"] = 1
    loggers = _loggers(cfg, run_dir, resolved, resume_step)
    saved_env = {key: os.environ.get(key) for key in _DDP_ENV}
    finished = False
    try:
        trainer = instantiate(
            trainer_cfg,
            default_root_dir=str(run_dir),
            logger=loggers or False,
            callbacks=callbacks,
            enable_checkpointing=False,
        )
        try:
            if ckpt_path is None and cfg.get("validate_first", True):
                trainer.validate(system, datamodule=datamodule, verbose=False)
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit:
            if not trainer.interrupted:
                raise
            # Lightning turns Ctrl-C into exit(1) after saving last.ckpt (on_exception)
            raise Interrupted(
                f"training stopped at step {trainer.global_step}; continue with: "
                f"{_resume_command()}"
            ) from None
        finished = True
    finally:
        _finish_wandb(loggers, finished)
        _end_distributed(saved_env)
    if rank_zero_only.rank == 0:
        print(closing_summary(run_dir, callbacks, trainer), flush=True)
    return run_dir


def _resume_command() -> str:
    """The command line that continues this job (its overrides + resume=true)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # train() called outside Hydra
        return "the same training call with resume=true"
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "resume"]
    return " ".join(["dfablate train", *kept, "resume=true"])


def closing_summary(run_dir: Path, callbacks: list[Any], trainer: Any) -> str:
    """What a finished run left and what to run next (printed at the end of `train`)."""
    from dfablate.training.checkpoints import RunCheckpoints

    checkpoints = next((c for c in callbacks if isinstance(c, RunCheckpoints)), None)
    lines = [f"run: {run_dir} (finished at step {trainer.global_step})"]
    if checkpoints is None:
        lines.append("checkpoints: none (callbacks.checkpoints=null)")
    elif checkpoints.best_path.is_file():
        lines.append(
            f"best checkpoint: {checkpoints.best_path} "
            f"({checkpoints.monitor} {checkpoints.best_score:.4f})"
        )
    else:
        lines.append(
            f"best checkpoint: none (no validation during training); last: {checkpoints.last_path}"
        )
    lines.append(f"next: dfablate evaluate run={run_dir}")
    return "\n".join(lines)


# Lightning's start-up chatter: an advert, device lines, a note per checkpoint load.
_LIGHTNING_NOISE = (
    "litlogger",
    "GPU available",
    "TPU available",
    "HPU available",
    "`weights_only`",
    "to estimate number of stepping batches",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _LIGHTNING_NOISE)


def quiet_lightning() -> None:
    """Leave Lightning's records to Hydra's handlers (console, train.log) without the noise."""
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()  # Hydra's handlers print them
    for handler in logging.getLogger().handlers:  # records of child loggers reach these
        if not any(isinstance(f, _DropNoise) for f in handler.filters):
            handler.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")


# Set by Lightning's DDP launcher in the launching process; left behind they make the next job
# of a multirun believe its ranks already exist.
_DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _end_distributed(saved_env: dict[str, str | None]) -> None:
    """Tear down this job's process group and DDP environment (multiruns run jobs in turn)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _finish_wandb(loggers: list[Any], finished: bool) -> None:
    """Close this job's W&B run (the next job of a multirun must not log into it)."""
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0:
            logger.experiment.finish(exit_code=0 if finished else 1)
