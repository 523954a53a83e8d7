"""What a comparison is made of: one run's per-file scores (`RunMetrics`) and the result
(`Comparison`), with the patterns of evaluation folder names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfablate.comparison.design import Design
from dfablate.records import EvalRecord, RunRecord

EVAL_FOLDER = re.compile(r"^(?P<base>.+?)(?:@(?P<gain>[+-]\d+(?:\.\d+)?)dB)?$")
DB_METRICS = ("ssnr", "sisdr")  # no meaningful zero: no relative differences for these
NO_RELATIVE = "no relative figure on a dB scale (no meaningful zero)"
EVAL_DATASET = "eval dataset"  # the variant key's entry for the test set


@dataclass
class RunMetrics:
    """One evaluation of one run (at one input gain) in a comparison: its per-file scores, its
    variant key (the run's, plus the evaluation dataset) and the variant it was put in."""

    label: str
    variant: str
    evaluation: EvalRecord
    scores: pd.DataFrame  # index: file; columns: metrics (float, NaN where scoring failed)
    gain_db: float = 0.0  # input gain of the evaluation
    variant_key: dict[str, str] = field(default_factory=dict)  # what the run is, seed left out

    @property
    def where(self) -> str:
        """The label, with the input gain when it is not 0 dB."""
        return self.label + gain_suffix(self.gain_db)

    @property
    def run(self) -> RunRecord:
        return self.evaluation.run

    @property
    def seed(self) -> int | None:
        return self.evaluation.run.seed

    @property
    def csv_path(self) -> Path:
        return self.evaluation.metrics_csv

    @property
    def choices(self) -> dict[str, str]:
        return self.evaluation.run.choices

    @property
    def dataset(self) -> dict | None:
        return self.evaluation.dataset

    @property
    def noisy(self) -> dict | None:
        return self.evaluation.noisy

    @property
    def experiment(self) -> str | None:
        return self.evaluation.run.experiment

    @property
    def scored_at(self) -> str | None:
        return self.evaluation.scored_at

    @property
    def has_summary(self) -> bool:
        return self.evaluation.has_summary


@dataclass
class Comparison:
    """Everything `compare_runs` computes; `write_outputs` turns it into files."""

    runs: list[RunMetrics]  # every evaluation: run x input gain
    baseline: str
    variants: list[str]
    definitions: dict[str, dict[str, str]]  # variant -> what defines it, for the report
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
