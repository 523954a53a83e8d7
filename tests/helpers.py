"""Paths and constants the tests share (imported by name; conftest holds only fixtures)."""

from __future__ import annotations

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
