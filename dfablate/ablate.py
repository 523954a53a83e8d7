"""`dfablate ablate`: train every variant x seed of an experiment, evaluate each, compare them.

Each stage is skipped when its outputs exist, so running the command again resumes:
- train: a Hydra multirun of `dfablate train` (the experiment's `hydra.sweeper.params` over
  `norm` and `seed`, the configured launcher) in a subprocess, for the runs without a completed
  `train_status.json` (written by `TrainStatusCallback` at the end of each job); unfinished runs
  continue from their last checkpoint (`resume=true`).
- evaluate: `dfablate.evaluation` on each trained run at every input gain of
  `ablate.evaluate.input_gains_db`, unless a complete evaluation of the same checkpoint on the
  same test set at that gain exists.
- compare: `dfablate.comparison` over all evaluated runs at every input gain they were all
  evaluated at (baseline: the first norm of the sweep), unless `compare/inputs.json` shows the
  same inputs.
A failed job does not stop the others; the comparison runs on what exists and lists what is
missing, and the command exits with status 1.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from dfablate.errors import UserError
from dfablate.runs import file_sha1, run_checkpoint

STATUS_FILE = "train_status.json"
SWEEP_KEYS = ("norm", "seed")
ABLATE_PREFIX = "ablate."
MAX_ERROR_CHARS = 300  # a failed job's error as train_status.json keeps it


class TrainStatusCallback(Callback):
    """Hydra callback: record each training job's outcome in `<run dir>/train_status.json`."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        run_dir = Path(job_return.hydra_cfg.hydra.runtime.output_dir)
        status = {"status": job_return.status.name}
        if job_return.status != JobStatus.COMPLETED:
            try:  # the public accessor re-raises a failed job's exception (and says so on stderr)
                with contextlib.redirect_stderr(io.StringIO()):
                    _ = job_return.return_value
                error: BaseException = RuntimeError("job failed without an exception")
            except Exception as raised:
                error = raised
            message = " ".join(f"{type(error).__name__}: {error}".split())
            status["error"] = (
                message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STATUS_FILE).write_text(json.dumps(status) + "\n")


@dataclass
class Job:
    """One variant x seed of the experiment and where its run lives."""

    norm: str
    seed: int
    run_dir: Path
    failure: str | None = None  # why this run is missing from the comparison

    @property
    def label(self) -> str:
        return self.run_dir.name

    @property
    def checkpoint(self) -> Path | None:
        return run_checkpoint(self.run_dir)

    def trained(self) -> bool:
        status_path = self.run_dir / STATUS_FILE
        if not status_path.is_file() or self.checkpoint is None:
            return False
        return json.loads(status_path.read_text()).get("status") == "COMPLETED"


@dataclass
class Plan:
    """The composed experiment: its jobs, the training overrides, evaluation settings."""

    name: str
    experiment_dir: Path
    jobs: list[Job]
    train_overrides: list[str]
    test_set: object  # dfablate.evaluation.TestSet every run is evaluated on
    settings: object  # configs/ablate.yaml merged with the experiment's `ablate:` section
    num_threads: int | None  # the training config's torch threads, used for inference too
    skipped: dict[str, list[str]] = field(default_factory=dict)


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(ablate.* overrides, plain training overrides, sweeps over norm/seed given on the line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    ablate, train, sweeps = [], [], {}
    parser = OverridesParser.create()
    for text in overrides:
        if text in ("-m", "--multirun"):
            continue
        if text.startswith(ABLATE_PREFIX):
            ablate.append(text[len(ABLATE_PREFIX) :])
            continue
        override = parser.parse_override(text)
        key = override.get_key_element()
        if override.is_sweep_override():
            if key not in SWEEP_KEYS:
                raise UserError(f"{text}: ablate sweeps only {' and '.join(SWEEP_KEYS)}")
            sweeps[key] = [str(v) for v in override.sweep_string_iterator()]
        elif key in SWEEP_KEYS:  # one value replaces the experiment's sweep over that key
            sweeps[key] = [str(override.value())]
        else:
            train.append(text)
    return ablate, train, sweeps


def _sweep_values(cfg, key: str, sweeps: dict[str, list[str]]) -> list[str]:
    if key in sweeps:
        return sweeps[key]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = cfg.hydra.sweeper.get("params") or {}
    if key not in params:
        return [str(cfg.norm.name if key == "norm" else cfg.seed)]
    override = OverridesParser.create().parse_override(f"{key}={params[key]}")
    if not override.is_sweep_override():
        return [str(override.value())]
    return [str(v) for v in override.sweep_string_iterator()]


def ablation_config(overrides: list[str]) -> tuple[Any, Any, list[str], dict[str, list[str]]]:
    """(the experiment's training config, its `ablate.*` settings, the training overrides, the
    norm/seed sweeps given on the line) for `dfablate ablate` arguments (default experiment:
    demo). The settings are configs/ablate.yaml merged with the experiment's `ablate:` section
    and the ablate.* overrides."""
    from omegaconf import OmegaConf

    from dfablate.config import compose_config, config_file

    ablate_overrides, train_overrides, sweeps = _split_overrides(overrides)
    if not any(o.split("=", 1)[0] == "experiment" for o in train_overrides):
        train_overrides.insert(0, "experiment=demo")
    cfg = compose_config("train", train_overrides)
    settings = OmegaConf.load(config_file("ablate.yaml"))
    if cfg.get("ablate") is not None:
        settings = OmegaConf.merge(settings, cfg.ablate)
    if ablate_overrides:
        settings = OmegaConf.merge(settings, OmegaConf.from_dotlist(ablate_overrides))
    return cfg, settings, train_overrides, sweeps


def plan(overrides: list[str]) -> Plan:
    """Compose the training config of the experiment and list its variant x seed jobs."""
    from dfablate.config import compose_config
    from dfablate.evaluation import load_test_set

    cfg, settings, train_overrides, sweeps = ablation_config(overrides)
    extra = set((cfg.hydra.sweeper.get("params") or {}).keys()) - set(SWEEP_KEYS)
    if extra:
        raise UserError(
            f"the experiment sweeps {', '.join(sorted(extra))}: ablate sweeps only norm and seed"
        )
    train_wandb = (cfg.get("logger") or {}).get("wandb")
    if settings.wandb.mode is None:  # follow the training logger: no W&B there, none here
        settings.wandb.mode = train_wandb.get("mode", "auto") if train_wandb else "disabled"
    if settings.wandb.project is None:
        settings.wandb.project = train_wandb.project if train_wandb else "dfablate"
    norms, seeds = _sweep_values(cfg, "norm", sweeps), _sweep_values(cfg, "seed", sweeps)
    jobs = []
    for norm, seed in itertools.product(norms, seeds):
        job_cfg = compose_config("train", [*train_overrides, f"norm={norm}", f"seed={seed}"])
        sweep = job_cfg.hydra.sweep
        jobs.append(Job(norm, int(seed), Path(str(sweep.dir)) / str(sweep.subdir)))
    data_cfg, data_name = cfg.data, cfg.hydra.runtime.choices.data
    if settings.evaluate.get("data"):
        data_cfg = compose_config("evaluate", [f"data={settings.evaluate.data}"]).data
        data_name = settings.evaluate.data
    options = settings.evaluate
    options.input_gains_db = input_gains(options.get("input_gains_db", [0]))
    test_set = load_test_set(data_cfg, data_name, options.split, options.max_files)
    return Plan(
        name=str(cfg.name),
        experiment_dir=Path(str(cfg.hydra.sweep.dir)),
        jobs=jobs,
        train_overrides=train_overrides,
        test_set=test_set,
        settings=settings,
        num_threads=cfg.get("num_threads"),
    )


def input_gains(value) -> list[float]:
    """`ablate.evaluate.input_gains_db` as distinct gains in dB, in the given order."""
    from omegaconf import ListConfig

    from dfablate.evaluation import check_gain_db

    option = "ablate.evaluate.input_gains_db"
    if not isinstance(value, list | tuple | ListConfig) or len(value) == 0:
        raise UserError(f"{option}={value}: must be a non-empty list of gains in dB, e.g. [0, -20]")
    gains = [check_gain_db(v, option) for v in value]
    return list(dict.fromkeys(gains))


# ---------------------------------------------------------------- stages


def train_missing(plan: Plan, console) -> None:
    """Run `dfablate train -m` for the jobs not trained yet; record failures on the jobs."""
    missing = [job for job in plan.jobs if not job.trained()]
    plan.skipped["train"] = [job.label for job in plan.jobs if job not in missing]
    if not missing:
        console.print(f"train: all {len(plan.jobs)} runs already trained, skipped")
        return
    norms = list(dict.fromkeys(job.norm for job in missing))
    seeds = list(dict.fromkeys(job.seed for job in missing))
    if len(missing) == len(norms) * len(seeds):  # a full grid: one sweep
        batches = [(norms, seeds)]
    else:
        batches = [([n], [j.seed for j in missing if j.norm == n]) for n in norms]
    for batch_norms, batch_seeds in batches:
        command = [
            sys.executable, "-m", "dfablate", "train", "-m", *plan.train_overrides,
            f"norm={','.join(batch_norms)}", f"seed={','.join(str(s) for s in batch_seeds)}",
            "resume=true",
            f"+hydra.callbacks.ablate_status._target_={__name__}.TrainStatusCallback",
        ]  # fmt: skip
        console.print(f"train: {' '.join(command[3:])}")
        subprocess.run(command, check=False)
    for job in missing:
        if job.trained():
            continue
        status_path = job.run_dir / STATUS_FILE
        if status_path.is_file() and "error" in (status := json.loads(status_path.read_text())):
            job.failure = f"training failed: {status['error']}"
        elif job.checkpoint is None:
            job.failure = f"training produced no checkpoint (see {job.run_dir / 'train.log'})"
        else:
            job.failure = f"training did not finish (see {job.run_dir / 'train.log'})"


def evaluate_trained(plan: Plan, console) -> None:
    """Evaluate every trained run at every input gain that has no complete evaluation of its
    checkpoint there yet."""
    from omegaconf import OmegaConf

    from dfablate.evaluation import evaluate_checkpoint, gain_dir_name, is_evaluated

    options, test_set = plan.settings.evaluate, plan.test_set
    if plan.num_threads:
        import torch

        torch.set_num_threads(int(plan.num_threads))
    skipped = plan.skipped.setdefault("evaluate", [])
    noisy_cache_dir = Path(options.noisy_cache_dir) if options.noisy_cache_dir else None
    for job in plan.jobs:
        for gain in options.input_gains_db:
            if job.failure:
                break
            ckpt = job.checkpoint
            where = gain_dir_name(test_set.name, gain)
            if is_evaluated(job.run_dir, test_set, ckpt, gain):
                skipped.append(job.label if gain == 0 else f"{job.label} {where}")
                continue
            console.print(f"evaluate: {job.label} ({ckpt.name}) on {where}")
            try:
                evaluate_checkpoint(
                    ckpt,
                    job.run_dir,
                    test_set,
                    expect_norm=job.norm,
                    save_enhanced=bool(options.save_enhanced),
                    jobs=options.jobs,
                    device=options.device,
                    noisy_cache_dir=noisy_cache_dir,
                    wandb_cfg=OmegaConf.to_container(plan.settings.wandb),
                    input_gain_db=gain,
                )
            except UserError as exc:
                job.failure = f"evaluation failed ({where}): {exc}"
    if skipped:
        if len(options.input_gains_db) == 1:
            console.print(f"evaluate: {len(skipped)} runs already evaluated, skipped")
        else:
            console.print(
                f"evaluate: {len(skipped)} evaluations (run x gain) already done, skipped"
            )


def compare_evaluated(plan: Plan, console):
    """Compare the evaluated runs (baseline: the first norm); None when fewer than 2 variants."""
    from dfablate.comparison import (
        compare_runs,
        load_runs,
        log_comparison_to_wandb,
        print_summary,
        write_outputs,
    )

    available = [job for job in plan.jobs if not job.failure]
    missing = {job.label: job.failure for job in plan.jobs if job.failure}
    if len({job.norm for job in available}) < 2:
        console.print(
            "compare: needs evaluated runs of at least two norms; "
            f"have {', '.join(j.label for j in available) or 'none'}"
        )
        return None
    out_dir = Path(plan.settings.compare_dir or plan.experiment_dir / "compare")
    # every input gain the runs were evaluated at (eval/<dataset>@<G>dB/ beside eval/<dataset>/)
    runs, left_out_gains = load_runs([job.run_dir for job in available], plan.test_set.name)
    comparison = compare_runs(runs, left_out_gains)
    comparison.missing_runs = missing
    csvs = [run.csv_path for run in runs]
    inputs = {
        "runs": [str(p) for p in csvs],
        "sha1": [file_sha1(p) for p in csvs],
        "missing": missing,
    }
    inputs_path = out_dir / "inputs.json"
    report = out_dir / "report.md"
    if report.is_file() and inputs_path.is_file():
        if json.loads(inputs_path.read_text()) == inputs:
            plan.skipped["compare"] = [str(out_dir)]
            console.print(f"compare: {out_dir} is up to date, skipped")
            print_summary(comparison, report, console)
            return comparison
    paths = write_outputs(comparison, out_dir)
    log_comparison_to_wandb(
        comparison, paths, mode=plan.settings.wandb.mode, project=plan.settings.wandb.project
    )
    inputs_path.write_text(json.dumps(inputs, indent=1) + "\n")
    print_summary(comparison, paths["report"], console)
    return comparison


def run_ablation(overrides: list[str]) -> int:
    """The whole ablation; exit status 0 when every run was trained, evaluated and compared."""
    from rich.console import Console

    console = Console()
    ablation = plan(overrides)
    console.print(
        f"ablation {ablation.name}: {len(ablation.jobs)} runs "
        f"({', '.join(j.label for j in ablation.jobs)}) in {ablation.experiment_dir}"
    )
    train_missing(ablation, console)
    evaluate_trained(ablation, console)
    comparison = compare_evaluated(ablation, console)
    failed = [job for job in ablation.jobs if job.failure]
    if comparison is None:  # otherwise the comparison's summary has listed them
        for job in failed:
            console.print(f"missing run {job.label}: {job.failure}", highlight=False)
    return 1 if failed or comparison is None else 0
