"""`runs_per_device=k`: a sweep's training runs, k at a time on each device, as separate processes.

`train -m ... runs_per_device=k` (and `ablate.runs_per_device=k`) replaces the launcher's
`n_jobs`: the sweep is expanded as Hydra's basic sweeper expands it (the experiment's
`hydra.sweeper.params` first, then the command line), and each job runs as its own process, a
sweep of that one job (`dfablate train -m <its overrides> runs_per_device=1`), so its folder,
checkpoint, W&B run, status records and results are those of the same job in a sequential sweep
(and of the same run started alone). With N visible GPUs, k x N processes run at once and each sees
only its own GPU (CUDA_VISIBLE_DEVICES); without a GPU, k processes share the CPU. A job's
failure does not stop the others. Killing the sweep kills its runs; each keeps its last
checkpoint, and the same command with resume=true continues them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from dfablate.config import compose_config
from dfablate.errors import UserError

POLL_SECONDS = 0.2
INTERRUPT_GRACE_SECONDS = 10.0


def device_count() -> int:
    """Visible CUDA devices (0 without a GPU: the runs share the CPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_slots(runs_per_device: int, devices: int) -> list[str | None]:
    """One entry per concurrent run: the device it sees (None: the CPU), in an order that
    spreads consecutive runs over the devices before stacking k on any one."""
    if runs_per_device < 1:
        raise UserError(f"runs_per_device={runs_per_device}: must be at least 1")
    if devices == 0:
        return [None] * runs_per_device
    return [str(d) for _ in range(runs_per_device) for d in range(devices)]


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """The overrides of each job of `train -m <overrides>`, in Hydra's basic sweeper's order."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg = compose_config("train", fixed, return_hydra_config=True)
    params = cfg.hydra.sweeper.get("params") or {}
    from_config = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    given = {o.get_key_element() for o in parsed}
    merged = [o for o in from_config if o.get_key_element() not in given] + parsed
    (jobs,) = BasicSweeper.split_arguments(merged, max_batch_size=None)
    return [list(job) for job in jobs]


def run_spread(commands: Sequence[Sequence[str]], runs_per_device: int, devices: int) -> list[int]:
    """Run `commands` as processes, at most one per device slot at a time (see device_slots);
    their exit codes, in order. Interrupted, it interrupts the running ones and waits for them
    (they save their last checkpoint), then re-raises."""
    free = device_slots(runs_per_device, devices)
    waiting = list(enumerate(commands))
    running: dict[int, tuple[subprocess.Popen, str | None]] = {}
    codes = [0] * len(commands)
    try:
        while waiting or running:
            while waiting and free:
                index, command = waiting.pop(0)
                slot = free.pop(0)
                env = dict(os.environ)
                if slot is not None:
                    env["CUDA_VISIBLE_DEVICES"] = slot
                running[index] = (subprocess.Popen(list(command), env=env), slot)
            time.sleep(POLL_SECONDS)
            for index, (process, slot) in list(running.items()):
                if process.poll() is not None:
                    codes[index] = process.returncode
                    free.insert(0, slot)
                    del running[index]
    except BaseException as stop:
        # Ctrl-C in a terminal reaches the runs too: give them time to stop on their own, so
        # none gets a second interrupt while it saves its last checkpoint
        grace = time.time() + (
            INTERRUPT_GRACE_SECONDS if isinstance(stop, KeyboardInterrupt) else 0
        )
        while time.time() < grace and any(p.poll() is None for p, _ in running.values()):
            time.sleep(POLL_SECONDS)
        for process, _ in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in running.values():
            process.wait()
        raise
    return codes


def train_sweep(overrides: Sequence[str], runs_per_device: int) -> None:
    """`dfablate train -m <overrides>` with `runs_per_device` runs at once on each device."""
    jobs = sweep_jobs([o for o in overrides if o not in ("-m", "--multirun")])
    # each run a sweep of one job: the jobs' own checks, records and status callbacks, as today
    one = "runs_per_device=1"
    commands = [[sys.executable, "-m", "dfablate", "train", "-m", *job, one] for job in jobs]
    devices = device_count()
    where = f"{devices} GPU(s)" if devices else "the CPU"
    print(f"{len(jobs)} runs, {runs_per_device} at a time on each of {where}", flush=True)
    codes = run_spread(commands, runs_per_device, devices)
    failed = [" ".join(job) for job, code in zip(jobs, codes, strict=True) if code != 0]
    if failed:
        raise UserError(f"{len(failed)} of {len(jobs)} runs failed: " + "; ".join(failed))
