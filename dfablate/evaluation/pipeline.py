"""Evaluate a trained model on a test set: enhance, score every file, resume where it stopped.

Inference runs in the main process and feeds a pool of scoring processes, so enhancing the next
file overlaps with scoring the previous ones and all cores stay busy. Each finished file is
appended to `metrics.csv` at once (one complete line per write), so an interrupted evaluation
resumes with the files still missing. The unprocessed noisy input is scored once per test set
(unscaled, whatever the input gain) into a cache shared by all runs; it is the "noisy" reference
row.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from dfablate.audio import AudioError, load_audio
from dfablate.devices import resolve_device
from dfablate.enhance import enhance_waveform
from dfablate.evaluation.file_scores import at_gain, score_file
from dfablate.evaluation.testset import TestSet, gain_dir_name
from dfablate.metrics import METRICS
from dfablate.paths import default_noisy_cache_dir
from dfablate.progress import progress_bar
from dfablate.records import EvalRecord, RunRecord
from dfablate.runs import file_sha1
from dfablate.scoring import (
    MetricsCsv,
    Row,
    available_cores,
    scoring_pool,
)
from dfablate.training.module import DfnSystem

# What produced the results, recorded in summary.json and eval_state.json: results of another
# version are scored again, never mixed. 1: end padding of delay + hop remainder; 2: fft_size
# zeros as df.enhance.enhance, and input gains; 3: scores at the reference level (the output
# divided by the input gain, against the unscaled clean file).
PIPELINE_VERSION = 3
SCORED_AT = "reference"  # summary.json's `scored_at`: how an input gain is scored


def noisy_cache_path(cache_dir: Path, test_set: TestSet, metrics: Sequence[str] = METRICS) -> Path:
    """Where the noisy input's scores live: keyed by the dataset root, its file list and the
    metric list (the default metrics keep the key they had before). The noisy input is scored
    unscaled, so one entry serves every input gain."""
    text = f"{test_set.root.resolve()}|{test_set.fingerprint}"
    if tuple(metrics) != METRICS:
        text += "|" + ",".join(metrics)
    key = hashlib.sha1(text.encode()).hexdigest()
    name = test_set.name
    return cache_dir / f"noisy-{name}-{key[:16]}" / "metrics.csv"


def summarise(rows: list[dict], metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """Mean and median of each metric over the files that were scored."""
    values = {m: np.array([r[m] for r in rows], dtype=float) for m in metrics}
    return {
        "mean": {m: _nan_stat(np.nanmean, v) for m, v in values.items()},
        "median": {m: _nan_stat(np.nanmedian, v) for m, v in values.items()},
    }


def _nan_stat(fn, values: np.ndarray) -> float:
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


@dataclass
class Evaluation:
    """What `evaluate_model` produced: its record (summary.json) and the rows of both CSVs."""

    record: EvalRecord
    rows: list[dict]
    noisy_rows: list[dict]

    @property
    def metrics_csv(self) -> Path:
        return self.record.metrics_csv

    @property
    def summary_json(self) -> Path:
        return self.record.summary_json

    @property
    def summary(self) -> dict:
        return self.record.to_json()


@dataclass
class _Scores:
    """One evaluation's rows: those finished (enhanced and noisy, by file), the CSVs they are
    appended to, and the scoring work in flight."""

    results: MetricsCsv
    noisy_csv: MetricsCsv
    done: dict[str, Row]
    noisy_done: dict[str, Row]
    inflight: dict[Future, tuple[str, str]] = field(default_factory=dict)

    def record(self, kind: str, row: Row) -> None:
        """Append a finished row to its CSV (one complete line) and keep it."""
        (self.results if kind == "enhanced" else self.noisy_csv).append(row)
        (self.done if kind == "enhanced" else self.noisy_done)[row["file"]] = row

    def submit(self, pool: ProcessPoolExecutor, kind: str, name: str, *args: Any) -> None:
        metrics = self.results.metrics
        self.inflight[pool.submit(score_file, name, *args, metrics=metrics)] = (kind, name)

    def submit_noisy(
        self,
        pool: ProcessPoolExecutor,
        todo: list,
        sample_rate: int,
        limit: int,
    ) -> None:
        """Give the pool noisy inputs from `todo` until `limit` scores are in flight."""
        while todo and len(self.inflight) < limit:
            pair = todo.pop(0)
            self.submit(pool, "noisy", pair.noisy.name, pair.clean, pair.noisy, sample_rate)

    def collect(self, limit: int, on_row) -> None:
        """Wait until at most `limit` scores are in flight, recording each finished one."""
        while len(self.inflight) > limit:
            finished, _ = wait(list(self.inflight), return_when=FIRST_COMPLETED)
            for future in finished:
                kind, _ = self.inflight.pop(future)
                self.record(kind, future.result())
                on_row()

    def keep_finished(self) -> None:
        """On a stop: record what finished before it (the rest is scored on resume)."""
        for future, (kind, _) in self.inflight.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                self.record(kind, future.result())


def _resume_scores(
    out_dir: Path, test_set: TestSet, noisy_cache: Path, metrics: Sequence[str]
) -> _Scores:
    """The rows an interrupted evaluation already has (partial lines and failures dropped)."""
    results = MetricsCsv(out_dir / "metrics.csv", metrics)
    noisy_csv = MetricsCsv(noisy_cache, metrics)
    names = {p.noisy.name for p in test_set.pairs}
    done = results.finished(lambda name: name in names)
    noisy_done = noisy_csv.finished(lambda name: name in names)
    results.rewrite(done.values())
    noisy_csv.rewrite(noisy_done.values())
    return _Scores(results, noisy_csv, done, noisy_done)


def evaluate_model(
    features,
    model,
    test_set: TestSet,
    out_dir: Path,
    *,
    provenance: dict,
    noisy_cache_dir: Path,
    run: RunRecord | None = None,
    save_enhanced: bool = False,
    jobs: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    input_gain_db: float = 0.0,
    metrics: Sequence[str] = METRICS,
) -> Evaluation:
    """Enhance and score every pair of `test_set` into `out_dir` (metrics.csv, summary.json).

    `provenance` says what produced the results (checkpoint path and hash, norm, seed, ...) and
    `run` is the run evaluated (by default, the one `out_dir` lies in); results written
    for another model, test set, input gain or pipeline version are discarded rather than mixed
    with new ones. `input_gain_db` scales the model's input; its output is divided by the same
    gain and scored against the unscaled clean reference (`score_file`).
    A metrics.csv of the same model scored with another metric list is refused (UserError).
    """
    MetricsCsv(out_dir / "metrics.csv", metrics).check_metrics()
    out_dir.mkdir(parents=True, exist_ok=True)
    _reset_if_stale(out_dir, provenance, test_set, input_gain_db, metrics)
    scores = _resume_scores(
        out_dir, test_set, noisy_cache_path(noisy_cache_dir, test_set, metrics), metrics
    )
    enhanced_dir = out_dir / "enhanced" if save_enhanced else None
    if enhanced_dir is not None:
        enhanced_dir.mkdir(exist_ok=True)
    features = features.to(device).eval()
    model = model.to(device).eval()
    jobs = jobs or available_cores()
    pairs = len(test_set.pairs)
    with progress_bar(progress) as bar, scoring_pool(jobs) as pool:
        enhance_task = bar.add_task("enhance", total=pairs, completed=len(scores.done))
        score_task = bar.add_task(
            "score", total=2 * pairs, completed=len(scores.done) + len(scores.noisy_done)
        )
        try:
            _enhance_and_score(
                test_set,
                scores,
                pool,
                jobs,
                enhance=lambda noisy: _enhance(noisy, features, model, device),
                enhanced_dir=enhanced_dir,
                sample_rate=features.sr,
                input_gain_db=input_gain_db,
                on_enhanced=lambda: bar.advance(enhance_task),
                on_scored=lambda: bar.advance(score_task),
            )
        except BaseException:
            scores.keep_finished()
            raise
    run = run or RunRecord.from_dir(out_dir, provenance)
    return _write_summary(out_dir, test_set, scores, run, provenance, input_gain_db, enhanced_dir)


def _enhance(noisy: np.ndarray, features, model, device: str) -> np.ndarray:
    return enhance_waveform(torch.from_numpy(noisy).to(device), features, model).cpu().numpy()


def _enhance_and_score(
    test_set: TestSet,
    scores: _Scores,
    pool: ProcessPoolExecutor,
    jobs: int,
    *,
    enhance,
    enhanced_dir: Path | None,
    sample_rate: int,
    input_gain_db: float,
    on_enhanced,
    on_scored,
) -> None:
    """Enhance the files still missing in this process while the pool scores the enhanced and
    noisy files (the noisy ones fill the pool between enhancements)."""
    noisy_todo = [p for p in test_set.pairs if p.noisy.name not in scores.noisy_done]
    score_noisy = (pool, noisy_todo, sample_rate)
    for pair in [p for p in test_set.pairs if p.noisy.name not in scores.done]:
        name = pair.noisy.name
        try:
            noisy = at_gain(load_audio(pair.noisy, sample_rate), input_gain_db)
        except AudioError:  # scored as a failed file, like a bad clean file
            scores.record(
                "enhanced", score_file(name, pair.clean, pair.noisy, sample_rate, input_gain_db)
            )
            on_enhanced()
            on_scored()
            continue
        enhanced = enhance(noisy)
        if enhanced_dir is not None:
            _write_wav_atomic(enhanced_dir / name, enhanced, sample_rate)
        scores.submit(pool, "enhanced", name, pair.clean, enhanced, sample_rate, input_gain_db)
        on_enhanced()
        scores.submit_noisy(*score_noisy, limit=jobs)
        scores.collect(2 * jobs, on_scored)
    scores.submit_noisy(*score_noisy, limit=len(noisy_todo) + len(scores.inflight))
    scores.collect(0, on_scored)


def _write_summary(
    out_dir: Path,
    test_set: TestSet,
    scores: _Scores,
    run: RunRecord,
    provenance: dict,
    input_gain_db: float,
    enhanced_dir: Path | None,
) -> Evaluation:
    """The rows in test-set order (both CSVs rewritten so) and `summary.json`."""
    order = [p.noisy.name for p in test_set.pairs]
    rows = [scores.done[n] for n in order]
    noisy_rows = [scores.noisy_done[n] for n in order]
    scores.results.rewrite(rows)
    scores.noisy_csv.rewrite(noisy_rows)
    record = EvalRecord(
        run=run,
        metrics_csv=scores.results.path,
        provenance=provenance,
        dataset=test_set.describe(),
        input_gain_db=float(input_gain_db),
        pipeline_version=PIPELINE_VERSION,
        scored_at=SCORED_AT,
        results={
            "n_files": len(rows),
            "n_failed": sum(1 for r in rows if r["error"]),
            "metrics": list(scores.results.metrics),
            **summarise(rows, scores.results.metrics),
            "noisy": summarise(noisy_rows, scores.results.metrics)["mean"],
            "noisy_metrics_csv": str(scores.noisy_csv.path),
            "enhanced_dir": str(enhanced_dir) if enhanced_dir is not None else None,
        },
        complete=True,
        has_summary=True,
    )
    record.write()
    return Evaluation(record, rows, noisy_rows)


def _reset_if_stale(
    out_dir: Path,
    provenance: dict,
    test_set: TestSet,
    input_gain_db: float = 0.0,
    metrics: Sequence[str] = METRICS,
) -> None:
    """Discard earlier results made by another checkpoint, on another test set, at another
    input gain or by another pipeline version (results without a recorded state included)."""
    state_path = out_dir / "eval_state.json"
    state = {
        "checkpoint_sha1": provenance.get("checkpoint_sha1"),
        "dataset": test_set.fingerprint,
        "input_gain_db": float(input_gain_db),
        "pipeline_version": PIPELINE_VERSION,
    }
    known = json.loads(state_path.read_text()) if state_path.is_file() else None
    earlier = (out_dir / "metrics.csv").is_file()
    MetricsCsv(out_dir / "metrics.csv", metrics).files()  # never deletes a file that is not one
    if (known is not None and known != state) or (known is None and earlier):
        warnings.warn(
            f"{out_dir}: earlier results are from another checkpoint, test set, input gain or "
            f"pipeline version (now {PIPELINE_VERSION}); re-evaluating",
            stacklevel=3,
        )
        for name in ("metrics.csv", "summary.json"):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "enhanced", ignore_errors=True)
    state_path.write_text(json.dumps(state) + "\n")


def _write_wav_atomic(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, audio, sample_rate, subtype="FLOAT", format="WAV")
    os.replace(tmp, path)


def evaluate_checkpoint(
    ckpt: Path,
    run_dir: Path,
    test_set: TestSet,
    out_dir: Path | None = None,
    *,
    expect_norm: str | None = None,
    save_enhanced: bool = False,
    jobs: int | None = None,
    device: str = "auto",
    noisy_cache_dir: Path | None = None,
    progress: bool = True,
    input_gain_db: float = 0.0,
    metrics: Sequence[str] = METRICS,
    run: RunRecord | None = None,
) -> Evaluation:
    """Load `ckpt` (refusing another norm than `expect_norm`), evaluate it at `input_gain_db`
    (default folder `<run dir>/eval/<dataset>[@<G>dB]`) on `metrics`. `run`: the record of
    `run_dir` when the caller has read it already."""
    device = resolve_device(device)
    system = DfnSystem.load_checkpoint(ckpt, expect_norm=expect_norm, map_location=device)
    run = run or RunRecord.recorded_in(run_dir, depth=1) or RunRecord(run_dir)
    provenance = {
        "checkpoint": str(ckpt),
        "checkpoint_sha1": file_sha1(ckpt),
        "run_dir": str(run_dir),
        "experiment": run.experiment,
        "norm": system.norm,
        "seed": run.seed,
        "arch": system.model_identity["model"]["arch"],
    }
    out_dir = out_dir or run_dir / "eval" / gain_dir_name(test_set.name, input_gain_db)
    return evaluate_model(
        system.features,
        system.dfnet,
        test_set,
        out_dir,
        provenance=provenance,
        run=run,
        noisy_cache_dir=noisy_cache_dir or default_noisy_cache_dir(),
        save_enhanced=save_enhanced,
        jobs=jobs,
        device=device,
        progress=progress,
        input_gain_db=input_gain_db,
        metrics=metrics,
    )


def is_evaluated(
    run_dir: Path,
    test_set: TestSet,
    ckpt: Path,
    input_gain_db: float = 0.0,
    metrics: Sequence[str] = METRICS,
) -> bool:
    """Whether `run_dir` already has a complete evaluation of `ckpt` on `test_set` at
    `input_gain_db` with `metrics`, made by this pipeline version."""
    record = EvalRecord.from_dir(run_dir / "eval" / gain_dir_name(test_set.name, input_gain_db))
    return (
        record.complete
        and record.pipeline_version == PIPELINE_VERSION
        and record.input_gain_db == input_gain_db
        and record.results.get("metrics", list(METRICS)) == list(metrics)
        and record.provenance.get("checkpoint_sha1") == file_sha1(ckpt)
        and (record.dataset or {}).get("fingerprint") == test_set.fingerprint
    )
