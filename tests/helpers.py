"""Paths, constants and helpers the tests share (imported by name; conftest holds only fixtures)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TESTS_DIR = Path(__file__).parent  # helper modules (upstream, wandb_offline, ...) live here
DATA_DIR = TESTS_DIR / "data"
ROOT = TESTS_DIR.parent
CONFIG_DIR = ROOT / "dfablate" / "configs"

# The lean run the subprocess-heavy tests share: shorter than one epoch of the mini corpus
# (18 batches of 2), so it also shows that such a run ends with a checkpoint.
SHORT_RUN = [
    "data=mini",
    "model=dfn3_tiny",
    "trainer=cpu",
    "logger=csv",
    "num_threads=1",
    "trainer.max_steps=2",
    "trainer.limit_val_batches=1",
    "data.batch_size=2",
    "data.crop_seconds=1.0",
    "val_metric_utterances=0",
    "callbacks.progress_bar=null",
]


@dataclass(frozen=True)
class TrainedRun:
    """A finished `dfablate train` run, as the `short_run` fixture gives it."""

    args: list[str]  # the `dfablate train` arguments that made it
    run_dir: Path
    output: str  # what `train` printed on stdout


@dataclass
class Output:
    """What a `captured_output` block printed (filled in when the block ends)."""

    out: str = ""
    err: str = ""


@contextlib.contextmanager
def captured_output(folder: Path) -> Iterator[Output]:
    """stdout and stderr at the file-descriptor level, as pytest's `capfd` takes them (this
    process's prints and those of the processes it starts), for the module-scoped fixtures
    where `capfd` is not available. The text is kept in `folder`."""
    output = Output()
    files = {1: open(folder / "stdout.txt", "a+"), 2: open(folder / "stderr.txt", "a+")}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in files}
    try:
        for fd, file in files.items():
            os.dup2(file.fileno(), fd)
        with contextlib.redirect_stdout(files[1]), contextlib.redirect_stderr(files[2]):
            yield output
    finally:
        for fd, file in files.items():
            file.flush()
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            file.close()
    output.out = (folder / "stdout.txt").read_text()
    output.err = (folder / "stderr.txt").read_text()


# Evaluated runs as `dfablate train` + `evaluate` leave them, for comparison tests.
FILES = ["f1.wav", "f2.wav", "f3.wav", "f4.wav"]


def write_csv(path: Path, scores: dict[str, list[float]], files=FILES, errors=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"file": files, **scores, "error": errors or [""] * len(files)})
    table.to_csv(path, index=False)
    return path


def write_run(
    root: Path,
    norm: str,
    seed: int,
    scores: dict[str, list[float]],
    files=FILES,
    extra: str = "",
    folder: str = "mini",
    gain: float | None = None,
) -> Path:
    """A run directory as `dfablate train` + `evaluate` leave it (config, eval folder)."""
    run_dir = root / f"{norm}-seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    config = f"seed: {seed}\nnorm:\n  name: {norm}\n{extra}"
    (run_dir / ".hydra" / "config.yaml").write_text(config)
    csv = write_csv(run_dir / "eval" / folder / "metrics.csv", scores, files)
    if gain is not None:
        (csv.parent / "summary.json").write_text(
            json.dumps({"input_gain_db": gain, "scored_at": "reference"})
        )
    return run_dir


# three seeds per variant, five files, a higher-is-better metric and a dB metric
SEED_FILES = ["u1.wav", "u2.wav", "u3.wav", "u4.wav", "u5.wav"]
BASE = np.array([2.1, 1.4, 3.0, 2.6, 1.8])
OFFSETS_A = [0.00, 0.05, -0.04]
OFFSETS_B = [0.06, 0.15, 0.02]


def seed_study(root: Path, b_seeds=(0, 1, 2), b_norm="fixed") -> list[Path]:
    """original seeds 0-2 and `b_norm` seeds `b_seeds`, with per-file wiggles."""
    wiggle = np.array([0.01, -0.02, 0.0, 0.03, -0.01])
    runs = []
    for norm, seeds, offsets in (("original", (0, 1, 2), OFFSETS_A), (b_norm, b_seeds, OFFSETS_B)):
        for k, (seed, offset) in enumerate(zip(seeds, offsets, strict=True)):
            pesq = BASE + offset + wiggle * (k + 1)
            sisdr = 5 * (BASE - 2) + 10 * offset - wiggle * k
            runs.append(
                write_run(root, norm, seed, {"pesq": list(pesq), "sisdr": list(sisdr)}, SEED_FILES)
            )
    return runs
