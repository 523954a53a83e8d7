"""Weights & Biases runs: offline unless credentials exist (`dfablate.wandb_settings`), one run
id per run directory, the record of each run, and a quiet terminal while a stage logs. What
training logs as media (audio, spectrograms, feature-std tables) is `training.callbacks`.

Without network or credentials W&B writes `<run_dir>/wandb/offline-run-*/run-<id>.wandb`;
`wandb sync <that folder>` uploads it later.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import wandb

from dfablate.wandb_settings import wandb_mode

RUN_ID_FILE = "dfablate_run_id"
RUN_RECORD_FILE = "dfablate_run.json"  # what the run is in W&B: id, project, group, job_type, mode
RECORDED_KEYS = ("id", "project", "entity", "group", "job_type", "mode", "name")


def run_id(run_dir: str | Path) -> str:
    """The W&B run id of `run_dir`: created once, then reused so a resumed run continues it."""
    path = Path(run_dir) / "wandb" / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    new_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new_id + "\n")
    return new_id


def wandb_init_kwargs(
    run_dir: str | Path,
    project: str,
    group: str | None = None,
    tags: Sequence[str] = (),
    job_type: str = "train",
    mode: str = "auto",
    entity: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Arguments for `wandb.init` (or Lightning's WandbLogger) for a run living in `run_dir`."""
    return {
        "project": project,
        "entity": entity,
        "group": group,
        "tags": [str(t) for t in tags],
        "job_type": job_type,
        "mode": wandb_mode(mode),
        "dir": str(Path(run_dir)),
        "id": run_id(run_dir),
        "name": name or Path(run_dir).name,
        "resume": "allow",
    }


def init_wandb(run_dir: str | Path, config: Mapping[str, Any] | None = None, **kwargs: Any):
    """Start (or resume) the W&B run of `run_dir`; kwargs as for `wandb_init_kwargs`."""
    init_kwargs = wandb_init_kwargs(run_dir, **kwargs)
    record_wandb_run(run_dir, init_kwargs)
    return wandb.init(config=dict(config or {}), **init_kwargs)


def record_wandb_run(run_dir: str | Path, init_kwargs: Mapping[str, Any]) -> None:
    """Write `<run_dir>/wandb/dfablate_run.json`: where the run lives in W&B, so a Report can
    select it (group, job_type) and `wandb-report push` can check it was synced."""
    if init_kwargs.get("mode") == "disabled":
        return
    path = Path(run_dir) / "wandb" / RUN_RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {key: init_kwargs.get(key) for key in RECORDED_KEYS}
    path.write_text(json.dumps(record, indent=1) + "\n")


def recorded_wandb_run(run_dir: str | Path) -> dict[str, Any] | None:
    """The record `record_wandb_run` left in `run_dir` (None: never logged to W&B)."""
    path = Path(run_dir) / "wandb" / RUN_RECORD_FILE
    if not path.is_file():
        return None
    return {**json.loads(path.read_text()), "dir": str(Path(run_dir).resolve())}


def offline_run_files(run_dir: str | Path, run_id: str) -> list[Path]:
    """The offline W&B files (`run-<id>.wandb`) of run `run_id` under `<run_dir>/wandb/`."""
    return sorted(Path(run_dir, "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))


def is_synced(run_file: Path) -> bool:
    """Whether `wandb sync` has uploaded an offline run file (it leaves `<file>.synced`)."""
    return run_file.with_name(run_file.name + ".synced").exists()


@contextmanager
def quiet_wandb():
    """No W&B banner or run summary in the terminal (the stage prints its own results)."""
    saved = os.environ.get("WANDB_SILENT")
    os.environ["WANDB_SILENT"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("WANDB_SILENT", None)
        else:
            os.environ["WANDB_SILENT"] = saved
