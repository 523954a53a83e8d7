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
import dataclasses
import io
import itertools
import json
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import ListConfig, OmegaConf
from rich.console import Console

from dfablate.ablation_config import ABLATE_PREFIX, SWEEP_KEYS, ablation_config, sweep_values
from dfablate.comparison.design import parse_design
from dfablate.comparison.loading import load_runs
from dfablate.comparison.report import print_summary, write_outputs
from dfablate.comparison.stats import compare_runs
from dfablate.comparison.wandb_log import log_comparison_to_wandb
from dfablate.config import compose_config
from dfablate.devices import check_device
from dfablate.errors import UserError
from dfablate.evaluation.command import check_metrics_option
from dfablate.evaluation.pipeline import evaluate_checkpoint, is_evaluated
from dfablate.evaluation.testset import check_gain_db, gain_dir_name, load_test_set
from dfablate.evaluation.wandb_log import log_evaluation_to_wandb
from dfablate.runs import file_sha1, run_checkpoint
from dfablate.wandb_report.build import require_workspaces
from dfablate.wandb_report.publish import ReportPublisher, command_line
from dfablate.wandb_settings import follow_run, wandb_mode

STATUS_FILE = "train_status.json"
MAX_ERROR_CHARS = 300  # a failed job's error as train_status.json keeps it


class TrainStatusCallback(Callback):
    """Hydra callback: record each training job's outcome in `<run dir>/train_status.json`."""

    def on_job_end(self, config, job_return, **kwargs) -> None:

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
    design: object  # dfablate.comparison.design.Design from ablate.compare.*
    num_threads: int | None  # the training config's torch threads, used for inference too
    wandb: dict[str, Any] | None = None  # evaluations' W&B settings (follow_run); None: no W&B
    overrides: list[str] = field(default_factory=list)  # as given to `dfablate ablate`
    skipped: dict[str, list[str]] = field(default_factory=dict)


def plan(overrides: list[str]) -> Plan:
    """Compose the training config of the experiment and list its variant x seed jobs."""
    cfg, settings, train_overrides, sweeps = ablation_config(overrides)
    check_device(str(settings.evaluate.get("device", "auto")), f"{ABLATE_PREFIX}evaluate.device")
    extra = set((cfg.hydra.sweeper.get("params") or {}).keys()) - set(SWEEP_KEYS)
    if extra:
        raise UserError(
            f"the experiment sweeps {', '.join(sorted(extra))}: ablate sweeps only norm and seed"
        )
    wandb_settings = follow_run(settings.wandb, cfg.get("logger"))
    settings.wandb.mode = wandb_settings["mode"] if wandb_settings else "disabled"
    settings.wandb.project = (
        (wandb_settings or {}).get("project") or settings.wandb.project or "dfablate"
    )
    norms, seeds = sweep_values(cfg, "norm", sweeps), sweep_values(cfg, "seed", sweeps)
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
    options.metrics = list(check_metrics_option(options.metrics, "ablate.evaluate.metrics"))
    design = _design(settings.compare)
    test_set = load_test_set(data_cfg, data_name, options.split, options.max_files)
    return Plan(
        design=design,
        name=str(cfg.name),
        experiment_dir=Path(str(cfg.hydra.sweep.dir)),
        jobs=jobs,
        train_overrides=train_overrides,
        test_set=test_set,
        settings=settings,
        num_threads=cfg.get("num_threads"),
        wandb=wandb_settings,
        overrides=list(overrides),
    )


def _design(compare):
    """`ablate.compare.*` as a comparison design (checked before anything is trained)."""
    margins = OmegaConf.to_container(compare.margins) if compare.get("margins") else None
    contrasts = list(compare.contrasts) if compare.get("contrasts") else None
    if margins is not None and not isinstance(margins, dict):
        raise UserError(f"ablate.compare.margins={margins}: expected a mapping metric: value")
    return parse_design(
        compare.get("primary"), margins, compare.get("pairing"), contrasts, "ablate.compare."
    )


def input_gains(value) -> list[float]:
    """`ablate.evaluate.input_gains_db` as distinct gains in dB, in the given order."""
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
            "resume=true", f"runs_per_device={plan.settings.get('runs_per_device', 1)}",
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
    options, test_set = plan.settings.evaluate, plan.test_set
    if plan.num_threads:
        torch.set_num_threads(int(plan.num_threads))
    skipped = plan.skipped.setdefault("evaluate", [])
    noisy_cache_dir = Path(options.noisy_cache_dir) if options.noisy_cache_dir else None
    for job in plan.jobs:
        for gain in options.input_gains_db:
            if job.failure:
                break
            ckpt = job.checkpoint
            where = gain_dir_name(test_set.name, gain)
            if is_evaluated(job.run_dir, test_set, ckpt, gain, options.metrics):
                skipped.append(job.label if gain == 0 else f"{job.label} {where}")
                continue
            console.print(f"evaluate: {job.label} ({ckpt.name}) on {where}")
            try:
                evaluation = evaluate_checkpoint(
                    ckpt,
                    job.run_dir,
                    test_set,
                    expect_norm=job.norm,
                    save_enhanced=bool(options.save_enhanced),
                    jobs=options.jobs,
                    device=options.device,
                    noisy_cache_dir=noisy_cache_dir,
                    input_gain_db=gain,
                    metrics=options.metrics,
                )
            except UserError as exc:
                job.failure = f"evaluation failed ({where}): {exc}"
                continue
            log_evaluation_to_wandb(evaluation, plan.wandb)
    if skipped:
        if len(options.input_gains_db) == 1:
            console.print(f"evaluate: {len(skipped)} runs already evaluated, skipped")
        else:
            console.print(
                f"evaluate: {len(skipped)} evaluations (run x gain) already done, skipped"
            )


def compare_evaluated(plan: Plan, console):
    """Compare the evaluated runs (baseline: the first norm); None when fewer than 2 variants."""
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
    design = _contrasts_of(plan.design, {job.norm for job in available}, console)
    comparison = compare_runs(runs, left_out_gains, design=design)
    comparison.missing_runs = missing
    csvs = [run.csv_path for run in runs]
    inputs = {
        "runs": [str(p) for p in csvs],
        "sha1": [file_sha1(p) for p in csvs],
        "missing": missing,
        "design": json.loads(json.dumps(dataclasses.asdict(design))),  # as inputs.json reads
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
    publisher = report_publisher(plan, comparison, out_dir)
    log_comparison_to_wandb(
        comparison,
        paths,
        mode=plan.settings.wandb.mode,
        project=plan.settings.wandb.project,
        on_run=publisher,
    )
    inputs_path.write_text(json.dumps(inputs, indent=1) + "\n")
    print_summary(comparison, paths["report"], console)
    if publisher is not None:
        console.print(publisher.message(), highlight=False)
    return comparison


def report_publisher(plan: Plan, comparison, out_dir: Path):
    """The W&B Report's publisher when `ablate.wandb.report` is on and W&B is not disabled;
    without the wandb-report extra, one warning and no Report (the ablation still succeeds)."""
    settings = plan.settings.wandb
    if not settings.get("report", True) or wandb_mode(settings.mode) == "disabled":
        return None

    try:
        require_workspaces("the W&B Report")
    except UserError as exc:
        warnings.warn(f"{exc}; skipping the Report", stacklevel=2)
        return None
    command = command_line(["ablate", *plan.overrides])
    return ReportPublisher(comparison, out_dir, project=str(settings.project), command=command)


def _contrasts_of(design, norms: set[str], console):
    """The design with the contrasts whose two norms have evaluated runs (a sweep given on the
    command line, or failed runs, can leave some out: each is listed)."""
    kept = [(b, a) for b, a in design.contrasts if b in norms and a in norms]
    for b, a in design.contrasts:
        if (b, a) not in kept:
            console.print(f"compare: contrast {b}:{a} left out (no evaluated runs of both)")
    return dataclasses.replace(design, contrasts=kept)


def run_ablation(overrides: list[str]) -> int:
    """The whole ablation; exit status 0 when every run was trained, evaluated and compared."""
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
