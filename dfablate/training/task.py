"""`dfablate train`: the Hydra task that trains one DeepFilterNet variant with Lightning.

`run_cli(overrides)` runs Hydra on `configs/train.yaml` with command-line overrides (`-m` for a
multirun); each job calls `train(cfg)`, which builds the data module, `DfnSystem`, loggers and
callbacks from the config and fits. Hydra errors and `UserError`s come out as one-line
`UserError`s. The configs ship inside the package (`dfablate.config`), so the command works
from any directory, installed from a wheel too.

DDP and multiruns: Lightning's `ddp` strategy starts ranks > 0 by re-running the command line.
Jobs run by the CLI process re-run `dfablate train <this job's overrides>` in the job's run
directory (never the sweep); jobs in launcher workers (joblib, submitit_local) use `ddp_spawn`;
on SLURM (submitit_slurm with tasks_per_node = devices) the ranks come from SLURM itself. What
decides this is `Launch`, made once per `run_cli` and passed down to `train`.

Refusals (`check_run`: an existing run without resume=true, a checkpoint of another model, bad
values) come before anything is written: for a single run before Hydra starts, in a sweep before
the job writes its `.hydra/` records, so a refused command leaves a run directory untouched.
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.connector import _convert_precision_to_unified_args
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dfablate.config import (
    CONFIG_SEARCH_PATH,
    as_user_error,
    compose_config,
    one_line,
    override_key,
)
from dfablate.cores import check_core_count
from dfablate.data.datamodule import check_preload_config
from dfablate.errors import Interrupted, UserError
from dfablate.features import get_norm, register_norm_function
from dfablate.parallel import train_sweep
from dfablate.paths import check_output_dir
from dfablate.records import RunRecord
from dfablate.tracking import record_wandb_run, wandb_init_kwargs
from dfablate.training.checkpoints import (
    IDENTITY_KEY,
    RunCheckpoints,
    check_identity,
    model_identity,
    read_checkpoint,
)
from dfablate.training.module import check_compile_mode, check_recipe, compile_model

log = logging.getLogger(__name__)


def compose_train_config(
    overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False
) -> Any:
    """The composed train config (a DictConfig) for `overrides`, outside a Hydra run (scripts,
    tests). Not for use inside a running Hydra job."""
    return compose_config("train", overrides, return_hydra_config=return_hydra_config)


def _job_label() -> str:
    """ "" for a single run; "job <n> (<overrides>): " inside a multirun."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return ""
    return f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): "


def run_hydra(task_function: Callable[[Any], None], config_name: str, overrides: list[str]) -> None:
    """Run `task_function(cfg)` under Hydra with `overrides` (as on a command line, `-m` too).

    A job that raises UserError is reported, not fatal to the other jobs of a multirun; after
    all jobs, the failures (and any Hydra/OmegaConf error) are raised as one one-line UserError.
    """
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


# Sweep jobs write Hydra's records (.hydra/config.yaml, hydra.yaml, overrides.yaml) themselves,
# once their checks have passed; the folder name reaches launcher workers through the job's env.
_RECORDS_ENV = "DFABLATE_HYDRA_RECORDS"


@dataclass(frozen=True)
class Launch:
    """The process that runs `dfablate train`, as `run_cli` found it: what `train` needs to
    choose a DDP strategy whose ranks > 0 run this job (see the module docstring)."""

    cli_pid: int  # the process of `dfablate train`; a job elsewhere is in a launcher worker
    argv0: str  # its sys.argv[0], the program Lightning re-runs for ranks > 0
    relaunched: bool  # this process is a rank > 0 that Lightning's ddp started (LOCAL_RANK set)

    @classmethod
    def of_this_process(cls) -> Launch:
        return cls(os.getpid(), sys.argv[0], "LOCAL_RANK" in os.environ)

    def strategy(
        self, requested: Any, job_overrides: Sequence[str], pid: int | None = None
    ) -> tuple[Any, list[str] | None]:
        """The Lightning strategy for a job with `job_overrides` (its task overrides, then its
        `hydra.searchpath`) run in process `pid` (default: this one), and the command line
        Lightning must re-run for the job's ranks > 0 (None: leave sys.argv as it is)."""
        if requested != "ddp" or SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
            return requested, None  # no re-run, or the ranks are started by the cluster
        if (os.getpid() if pid is None else pid) != self.cli_pid:
            log.warning("DDP inside a launcher worker process: using strategy ddp_spawn")
            return "ddp_spawn", None
        if self.relaunched:
            return requested, None  # a rank > 0: its command line is already this job's
        return requested, [self.argv0, "train", *job_overrides]


def run_cli(overrides: list[str]) -> int:
    """`dfablate train [overrides]`: run the training task (or a sweep with -m)."""
    launch = Launch.of_this_process()
    overrides = list(overrides)
    _preflight(overrides)
    sweep = any(arg in ("-m", "--multirun") for arg in overrides)
    if sweep and (runs_per_device := _runs_per_device(overrides)) > 1:
        train_sweep(overrides, runs_per_device)
        return 0
    if sweep and not any(override_key(arg) == "hydra.output_subdir" for arg in overrides):
        overrides += ["hydra.output_subdir=null", f"+hydra.job.env_set.{_RECORDS_ENV}=.hydra"]

    def task(cfg) -> None:
        train(cfg, launch=launch)

    run_hydra(task, "train", overrides)
    return 0


def _runs_per_device(overrides: list[str]) -> int:
    """The sweep's `runs_per_device` (1: the configured Hydra launcher runs the jobs)."""
    parsed = OverridesParser.create().parse_overrides(
        [o for o in overrides if o not in ("-m", "--multirun")]
    )
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    value = compose_train_config(fixed).get("runs_per_device", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"runs_per_device={value}: must be an integer of at least 1")
    return value


def _write_hydra_records(cfg, run_dir: Path, subdir: str) -> None:
    """What Hydra writes into `<run dir>/<subdir>/` before a job (see `_RECORDS_ENV`)."""
    hydra_cfg = HydraConfig.get()
    records = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    records.hydra.output_subdir = subdir
    out = run_dir / subdir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (out / "hydra.yaml").write_text(OmegaConf.to_yaml(records))
    (out / "overrides.yaml").write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task))


# --- the task --------------------------------------------------------------------------------


def _job_overrides() -> list[str]:
    """This Hydra job's overrides and the command's `hydra.searchpath` (a config folder of the
    user's own): what re-runs this one job, not the whole sweep."""
    overrides = HydraConfig.get().overrides
    searchpath = [o for o in overrides.hydra if override_key(o) == "hydra.searchpath"]
    return [*overrides.task, *searchpath]


@contextmanager
def _command_line(argv: list[str] | None) -> Iterator[None]:
    """sys.argv is `argv` (unless None) for the duration: Lightning's ddp re-runs it."""
    if argv is None:
        yield
        return
    saved, sys.argv = sys.argv, argv
    try:
        yield
    finally:
        sys.argv = saved


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


def _check_output(cfg, run_dir: Path) -> None:
    """The run folder can be made and written: output_root is a writable folder."""
    root = cfg.get("output_root")
    if root is not None and run_dir.is_relative_to(Path(str(root))):
        check_output_dir(Path(str(root)), "output_root")
        check_output_dir(run_dir, "output_root")
    else:
        check_output_dir(run_dir, "hydra.run.dir")


def _check_trainer(cfg) -> None:
    """Trainer and device settings that Lightning would refuse (or obey by training nothing)
    only after the run folder and the W&B run exist."""
    max_steps = _integer(cfg, "trainer.max_steps")
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        raise UserError(
            f"trainer.max_steps={max_steps}: nothing to train; give a positive number of "
            "optimizer steps, or -1 for no limit (trainer.max_epochs decides)"
        )
    max_epochs = _integer(cfg, "trainer.max_epochs")
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise UserError(
            f"trainer.max_epochs={max_epochs}: nothing to train; give a positive number of "
            "epochs, or -1 for no limit (trainer.max_steps decides)"
        )
    if max_epochs == -1 and max_steps in (None, -1):
        raise UserError(
            "trainer.max_epochs=-1 with trainer.max_steps=-1: training would never end; "
            "limit one of them"
        )
    limit = OmegaConf.select(cfg, "trainer.limit_train_batches")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)):
        raise UserError(f"trainer.limit_train_batches={limit}: must be a number")
    if limit is not None and limit <= 0:
        raise UserError(
            f"trainer.limit_train_batches={limit}: nothing to train; give a fraction in (0, 1] "
            "or a number of batches"
        )
    _check_trainer_arguments(cfg)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator") or "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator}: no CUDA GPU here; use trainer=cpu")
    if accelerator not in ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"):
        raise UserError(f"trainer.accelerator={accelerator}: not an accelerator (auto, cpu, gpu)")
    devices = OmegaConf.select(cfg, "trainer.devices")
    if isinstance(devices, bool) or (isinstance(devices, int) and devices < 1):
        raise UserError(f"trainer.devices={devices}: give at least 1 device, or auto")
    if accelerator in ("gpu", "cuda") and isinstance(devices, int):
        if devices > torch.cuda.device_count():
            raise UserError(
                f"trainer.devices={devices}: this machine has {torch.cuda.device_count()} GPU(s)"
            )


def _check_trainer_arguments(cfg) -> None:
    """Keys Lightning's Trainer does not take, and a precision it does not know."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer.get("_target_") in ("lightning.pytorch.Trainer", "lightning.Trainer"):
        accepted = set(inspect.signature(L.Trainer.__init__).parameters)
        unknown = sorted(set(trainer) - accepted - {"_target_"})
        if unknown:
            raise UserError(f"trainer.{unknown[0]}: not an argument of Lightning's Trainer")
    precision = trainer.get("precision")
    if precision is not None:
        try:
            _convert_precision_to_unified_args(precision)
        except ValueError as exc:
            raise UserError(f"trainer.precision={precision}: {one_line(exc)}") from None


def build_datamodule(cfg) -> Any:
    """The run's data module: its crops, gains and order follow the run's seed."""
    try:
        return instantiate(cfg.data, seed=int(cfg.seed))
    except InstantiationException as exc:
        raise as_user_error(exc) from exc


def _check_data(cfg) -> None:
    """The data settings and the dataset's folders (listing only, no file opened)."""
    datamodule = build_datamodule(cfg)
    if hasattr(datamodule, "training_pairs"):
        datamodule.training_pairs()


def check_run(cfg, run_dir: Path) -> RunStart:
    """Every refusal `train` can make before it writes anything (before Hydra makes the run
    folder and before W&B starts): bad values, trainer, device and data settings, a run
    directory that already holds a run, a checkpoint that is unreadable or of another model."""
    _integer(cfg, "seed")
    for flag in ("resume", "validate_first"):
        if not isinstance(cfg.get(flag, False), bool):
            raise UserError(f"{flag}={cfg.get(flag)}: must be true or false")
    check_core_count(cfg.get("num_threads"), "num_threads")
    _check_output(cfg, run_dir)
    _check_trainer(cfg)
    if cfg.norm.get("function"):
        register_norm_function(cfg.norm.name, cfg.norm.function)
    get_norm(cfg.norm.name)
    check_preload_config(cfg.data, OmegaConf.select(cfg, "trainer.accelerator"))
    check_compile_mode(str(cfg.model.get("compile", "none")))
    check_recipe(cfg.get("optim"))
    model = OmegaConf.to_container(cfg.model, resolve=True)
    configured = model_identity(cfg.norm.name, model["arch"], dict(model.get("params") or {}))
    _check_data(cfg)
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
        check_identity(checkpoint.get(IDENTITY_KEY), configured, "this run's config")
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
        kwargs = wandb_init_kwargs(
            run_dir,
            project=wandb_cfg.project,
            group=wandb_cfg.get("group"),
            tags=list(wandb_cfg.get("tags") or []),
            job_type="train",
            mode=wandb_cfg.get("mode", "auto"),
            entity=wandb_cfg.get("entity"),
        )
        record_wandb_run(run_dir, kwargs)
        kwargs["save_dir"] = kwargs.pop("dir")
        logger = WandbLogger(**kwargs)
        logger.log_hyperparams(resolved)
        loggers.append(logger)
    return loggers


def train(cfg, run_dir: str | Path | None = None, launch: Launch | None = None) -> Path:
    """Train one run described by the composed train config; returns its run directory.

    `launch`: the `dfablate train` process (`run_cli`); None when called from a script of one's
    own, whose command line Lightning's ddp then re-runs as it is."""
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)
    start = check_run(cfg, run_dir)
    ckpt_path, resume_step = start.ckpt_path, start.step
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    if cfg.get("num_threads"):  # 0 or unset: all cores
        torch.set_num_threads(int(cfg.num_threads))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if rank_zero_only.rank == 0:
        _record_run(cfg, run_dir, resolved)
        print(
            f"resuming {run_dir} from step {resume_step} ({ckpt_path})"
            if ckpt_path
            else f"new run in {run_dir}",
            flush=True,
        )
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    system = _build_system(cfg)
    compile_model(system, str(cfg.model.get("compile", "none")))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # checkpoints last: one written after a validation then holds what it changed in the others
    callbacks.sort(key=lambda callback: isinstance(callback, RunCheckpoints))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    argv = None
    if launch is not None:
        requested = trainer_cfg.get("strategy", "auto")
        trainer_cfg["strategy"], argv = launch.strategy(requested, _job_overrides())
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
            with _command_line(argv):
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


def _record_run(cfg, run_dir: Path, resolved: dict[str, Any]) -> None:
    """Rank 0, once the run folder exists and before training: what the run folder records
    of its config (a sweep job's `.hydra/` records, `config.yaml` resolved) and `run.json`,
    the run's record for evaluate, compare and ablate (from the `.hydra/` record, so both say
    the same; from `cfg` when train() runs outside Hydra)."""
    if records := os.environ.get(_RECORDS_ENV):
        _write_hydra_records(cfg, run_dir, records)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    record = RunRecord.from_hydra(run_dir) or RunRecord.of_config(
        run_dir, OmegaConf.to_container(cfg, resolve=False), {}
    )
    record.write()


def _build_system(cfg) -> L.LightningModule:
    """The config's `system:` node instantiated (`DfnSystem` with the run's norm, model, loss
    and optimiser recipe)."""
    try:
        return instantiate(cfg.system)
    except InstantiationException as exc:
        raise as_user_error(exc) from exc


def _resume_command() -> str:
    """The command line that continues this job (its overrides + resume=true)."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # train() called outside Hydra
        return "the same training call with resume=true"
    kept = [o for o in overrides if override_key(o) != "resume"]
    return " ".join(["dfablate train", *kept, "resume=true"])


def closing_summary(run_dir: Path, callbacks: list[Any], trainer: Any) -> str:
    """What a finished run left and what to run next (printed at the end of `train`)."""
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
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _finish_wandb(loggers: list[Any], finished: bool) -> None:
    """Close this job's W&B run (the next job of a multirun must not log into it)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0:
            logger.experiment.finish(exit_code=0 if finished else 1)
