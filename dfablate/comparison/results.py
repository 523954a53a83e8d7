"""What a comparison is made of: one run's per-file scores (`RunMetrics`) and the result
(`Comparison`), with the names and patterns that identify runs and evaluations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfablate.comparison.design import Design

RUN_NAME = re.compile(r"^(?P<norm>[A-Za-z0-9_]+)-seed(?P<seed>\d+)$")
EVAL_FOLDER = re.compile(r"^(?P<base>.+?)(?:@(?P<gain>[+-]\d+(?:\.\d+)?)dB)?$")
DB_METRICS = ("ssnr", "sisdr")  # no meaningful zero: no relative differences for these
NO_RELATIVE = "no relative figure on a dB scale (no meaningful zero)"
# config keys that do not change the trained model or the test: left out of a run's identity
NOT_IDENTITY = (
    "seed", "output_root", "resume", "ckpt_path", "num_threads", "validate_first",
    "val_metric_utterances", "logger", "callbacks.media", "callbacks.progress_bar",
    "callbacks.checkpoints.every_n_train_steps", "data.cache_dir", "data.root",
    "data.num_workers", "data.pin_memory", "data.preload", "model.compile", "runs_per_device",
    "trainer.accelerator", "trainer.devices",
    "trainer.num_nodes", "trainer.strategy", "trainer.log_every_n_steps",
    "trainer.enable_progress_bar", "ablate", "hydra",
)  # fmt: skip
TRAIN_GAINS = "data.gains_db"  # training gain augmentation; missing means none ([0])
EVAL_DATASET = "eval dataset"


@dataclass
class RunMetrics:
    """One evaluation of one run (at one input gain): its per-file scores and its identity."""

    label: str
    variant: str
    seed: int | None
    csv_path: Path
    scores: pd.DataFrame  # index: file; columns: metrics (float, NaN where scoring failed)
    gain_db: float = 0.0  # input gain of the evaluation
    identity: dict = field(default_factory=dict)  # what the run is, seed and gain left out
    choices: dict = field(default_factory=dict)  # Hydra config group choices (model: dfn3, ...)
    dataset: dict | None = None  # the `dataset` entry of summary.json next to the CSV, if any
    noisy: dict | None = None  # mean scores of the unprocessed input, from summary.json
    experiment: str | None = None  # the training config's `name`, when known
    scored_at: str | None = None  # summary.json's `scored_at` ("reference"); None: older or bare
    has_summary: bool = False  # a summary.json lies next to the CSV

    @property
    def where(self) -> str:
        """The label, with the input gain when it is not 0 dB."""
        return self.label + gain_suffix(self.gain_db)


@dataclass
class Comparison:
    """Everything `compare_runs` computes; `write_outputs` turns it into files."""

    runs: list[RunMetrics]  # every evaluation: run x input gain
    baseline: str
    variants: list[str]
    identities: dict[str, dict[str, str]]  # variant -> what defines it, for the report
    gains: list[float]  # input gains compared, each its own condition
    metrics: list[str]
    files: list[str]  # files present in every evaluation
    only_in: dict[str, list[str]]  # file -> evaluations that have it (left out)
    failed: dict[str, list[str]]  # "label: file" -> metrics with no score (left out per metric)
    relative_diff: pd.DataFrame  # variant, gain_db, file, metric, a, b, diff, rel_diff_pct
    per_file: pd.DataFrame  # variant, gain_db, file, <metric>_a/_b/_diff/_rel_diff_pct
    summary: pd.DataFrame  # one row per (contrast, gain, metric), each contrast's primary first
    run_means: pd.DataFrame  # one row per evaluation: label, variant, seed, gain_db, metrics
    missing_metrics: list[str] = field(default_factory=list)
    missing_runs: dict[str, str] = field(default_factory=dict)  # run -> why it has no scores
    left_out_gains: dict[str, list[float]] = field(default_factory=dict)  # input -> gains
    contrasts: list[tuple[str, str]] = field(default_factory=list)  # (B, A) pairs compared
    design: Design = field(default_factory=Design)  # primary, margins, pairing, contrasts
    interaction: pd.DataFrame = field(default_factory=pd.DataFrame)  # interaction.csv


def gain_suffix(gain_db: float) -> str:
    """The eval folder suffix of an input gain: '' for 0 dB, else '@-20dB', '@+2.5dB'."""
    return "" if gain_db == 0 else f"@{gain_db:+g}dB"
