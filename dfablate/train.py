"""`dfablate train`: the Hydra task that trains one DeepFilterNet variant with Lightning.

`run_cli(overrides)` runs Hydra on `configs/train.yaml` with command-line overrides (`-m` for a
multirun); each job calls `train(cfg)`, which builds the data module, `DfnSystem`, loggers and
callbacks from the config and fits. Hydra errors and `UserError`s come out as one-line
`UserError`s. The configs live in `configs/` next to the `dfablate` package (the project is
installed editable), so the command works from any directory.

DDP and multiruns: Lightning's `ddp` strategy starts ranks > 0 by re-running the command line.
Jobs run by the CLI process re-run `dfablate train <this job's overrides>` in the job's run
directory (never the sweep); jobs in launcher workers (joblib, submitit_local) use `ddp_spawn`;
on SLURM (submitit_slurm with tasks_per_node = devices) the ranks come from SLURM itself.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from dfablate.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
log = logging.getLogger(__name__)

_cli_pid: int | None = None  # the process that runs `dfablate train`
_cli_argv0: str | None = None


def config_dir() -> Path:
    """The project's Hydra config directory (`configs/` beside the package)."""
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise UserError(
            f"config directory {CONFIG_DIR} not found: dfablate runs from a source checkout "
            "(pip install -e .)"
        )
    return CONFIG_DIR


def compose_train_config(overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The composed train config (a DictConfig) for `overrides`, outside a Hydra run (scripts,
    tests). Not for use inside a running Hydra job."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Hydra's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _user_error_cause(exc: BaseException) -> UserError | None:
    """The UserError that caused `exc` (Hydra wraps errors raised during instantiate)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
            if label:  # multirun: say so now, the other jobs go on
                log.error("%s", failures[-1])

    job.__module__, job.__qualname__ = task_function.__module__, task_function.__qualname__
    main = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        job
    )
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [saved_argv[0], *overrides]  # Hydra reads its arguments from sys.argv
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise instead of printing a traceback and exiting
    try:
        main()
    except (HydraException, OmegaConfBaseException) as exc:
        cause = _user_error_cause(exc)
        raise UserError(one_line(cause if cause is not None else exc)) from exc
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


def run_cli(overrides: list[str]) -> int:
    """`dfablate train [overrides]`: run the training task (or a sweep with -m)."""
    global _cli_pid, _cli_argv0
    _cli_pid, _cli_argv0 = os.getpid(), sys.argv[0]
    run_hydra(_task, "train", list(overrides))
    return 0


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
    sys.argv = [_cli_argv0 or sys.argv[0], "train", *HydraConfig.get().overrides.task]
    return requested


def _checkpoint_to_resume(cfg, run_dir: Path) -> str | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise UserError(f"ckpt_path={cfg.ckpt_path}: checkpoint not found")
        return str(path)
    if cfg.get("resume"):
        if last.is_file():
            return str(last)
        log.warning("resume=true but %s does not exist: starting from scratch", last)
        return None
    if last.is_file():
        raise UserError(
            f"{run_dir} already holds a training run (checkpoints/last.ckpt): pass resume=true "
            "to continue it, or choose another name= / seed="
        )
    return None


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
    from omegaconf import OmegaConf

    from dfablate.training import DfnSystem

    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()  # Hydra's handlers (console, train.log) print them
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if rank_zero_only.rank == 0:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    ckpt_path = _checkpoint_to_resume(cfg, run_dir)
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
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["strategy"] = _strategy(trainer_cfg.get("strategy", "auto"))
    if getattr(datamodule, "batch_size_schedule", None):  # a new batch size, a new loader
        trainer_cfg["reload_dataloaders_every_n_epochs"] = 1
    resume_step = None
    if ckpt_path is not None:
        resume_step = int(
            torch.load(ckpt_path, map_location="cpu", weights_only=True)["global_step"]
        )
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
        if ckpt_path is None and cfg.get("validate_first", True):
            trainer.validate(system, datamodule=datamodule, verbose=False)
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
        finished = True
    finally:
        _finish_wandb(loggers, finished)
        _end_distributed(saved_env)
    return run_dir


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
