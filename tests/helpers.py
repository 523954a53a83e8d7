"""Paths, constants and helpers the tests share (imported by name; conftest holds only fixtures)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
