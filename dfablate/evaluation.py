"""Evaluate a trained model on a test set: enhance, score every file, resume where it stopped.

Inference runs in the main process and feeds a pool of scoring processes, so enhancing the next
file overlaps with scoring the previous ones and all cores stay busy. Each finished file is
appended to `metrics.csv` at once (one complete line per write), so an interrupted evaluation
resumes with the files still missing. The unprocessed noisy input is scored once per test set
(and input gain) into a cache shared by all runs; it is the "noisy" reference row.

`input_gain_db` evaluates at a shifted input level: the noisy input and the clean reference are
both scaled by 10^(G/20) before enhancement and scoring, and the results go to
`eval/<dataset>@<G>dB` (0 dB: `eval/<dataset>`, as before gains existed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from dfablate.audio import AudioError, load_audio
from dfablate.errors import UserError
from dfablate.metrics import METRICS, score_pair
from dfablate.progress import progress_bar
from dfablate.runs import file_sha1, read_run_config, resolve_checkpoint
from dfablate.scoring import (
    MetricsCsv,
    available_cores,
    failed_row,
    failure_text,
    scoring_pool,
)

# What produced the results, recorded in summary.json and eval_state.json: results of another
# version are scored again, never mixed. 1: end padding of delay + hop remainder; 2: fft_size
# zeros as df.enhance.enhance, and input gains.
PIPELINE_VERSION = 2


def gain_factor(input_gain_db: float) -> float:
    """The amplitude factor 10^(G/20) of an input gain in dB."""
    return 10.0 ** (input_gain_db / 20.0)


def check_gain_db(value, option: str) -> float:
    """`value` as a finite gain in dB; a UserError naming `option` otherwise."""
    try:
        gain = float(value)
    except (TypeError, ValueError):
        gain = float("nan")
    if isinstance(value, bool) or not np.isfinite(gain):
        raise UserError(f"{option}={value}: must be a finite number of dB (e.g. -20, 0, 10)")
    return gain + 0.0  # -0.0 is 0 dB


def gain_dir_name(dataset: str, input_gain_db: float) -> str:
    """The results folder of a dataset at an input gain: `valentini` at 0 dB, else with an
    explicit sign, `valentini@-20dB`, `valentini@+10dB`, `valentini@+2.5dB`."""
    if input_gain_db == 0:
        return dataset
    return f"{dataset}@{input_gain_db:+g}dB"


@dataclass(frozen=True)
class TestSet:
    """The pairs of one test split and what identifies them."""

    name: str
    root: Path
    pairs: list  # of dfablate.data.valentini.Pair (name, clean, noisy)

    @cached_property
    def fingerprint(self) -> str:
        """Content identity: file names and sizes (the same set at another root matches)."""
        digest = hashlib.sha1()
        for pair in sorted(self.pairs, key=lambda p: p.name):
            digest.update(
                f"{pair.noisy.name}:{pair.clean.stat().st_size}:{pair.noisy.stat().st_size};".encode()
            )
        return digest.hexdigest()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "root": str(self.root),
            "n_files": len(self.pairs),
            "fingerprint": self.fingerprint,
        }


# ---------------------------------------------------------------- scoring worker


def score_file(
    name: str,
    clean_path: Path,
    degraded: np.ndarray | Path,
    sample_rate: int,
    input_gain_db: float = 0.0,
) -> dict:
    """One CSV row: all metrics of `degraded` (array or file) against the clean file.

    At an input gain, the clean reference (and `degraded` when it is a file: the noisy input)
    is scaled by 10^(G/20) first; an array is already the output for the scaled input.

    As in `dfablate score`, a pair that cannot be scored (unreadable file, no speech for PESQ,
    even an unexpected failure) gives NaN metrics and a one-line reason in `error`, so one bad
    file never stops the evaluation; such rows are tried again when the evaluation resumes.
    """
    try:
        clean = _at_gain(load_audio(clean_path, sample_rate), input_gain_db)
        if isinstance(degraded, Path):
            degraded = _at_gain(load_audio(degraded, sample_rate), input_gain_db)
        scores = score_pair(clean, degraded, sample_rate)
    except Exception as exc:  # a bad file must not stop the other files
        return failed_row(name, failure_text(exc)[0])
    return {"file": name, **{m: float(scores[m]) for m in METRICS}, "error": ""}


def _at_gain(audio: np.ndarray, input_gain_db: float) -> np.ndarray:
    if input_gain_db == 0:
        return audio
    return (audio * np.float32(gain_factor(input_gain_db))).astype(np.float32)


# ---------------------------------------------------------------- pipeline


def noisy_cache_path(cache_dir: Path, test_set: TestSet, input_gain_db: float = 0.0) -> Path:
    """Where the noisy input's scores live: keyed by the dataset root, its file list and the
    input gain (0 dB keeps the key it had before gains existed)."""
    text = f"{test_set.root.resolve()}|{test_set.fingerprint}"
    if input_gain_db != 0:
        text += f"|{input_gain_db!r}dB"
    key = hashlib.sha1(text.encode()).hexdigest()
    name = gain_dir_name(test_set.name, input_gain_db)
    return cache_dir / f"noisy-{name}-{key[:16]}" / "metrics.csv"


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and median of each metric over the files that were scored."""
    values = {m: np.array([r[m] for r in rows], dtype=float) for m in METRICS}
    return {
        "mean": {m: _nan_stat(np.nanmean, v) for m, v in values.items()},
        "median": {m: _nan_stat(np.nanmedian, v) for m, v in values.items()},
    }


def _nan_stat(fn, values: np.ndarray) -> float:
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


@dataclass
class Evaluation:
    """What `evaluate_model` produced."""

    metrics_csv: Path
    summary_json: Path
    summary: dict
    rows: list[dict]
    noisy_rows: list[dict]


def evaluate_model(
    features,
    model,
    test_set: TestSet,
    out_dir: Path,
    *,
    identity: dict,
    noisy_cache_dir: Path,
    save_enhanced: bool = False,
    jobs: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    input_gain_db: float = 0.0,
) -> Evaluation:
    """Enhance and score every pair of `test_set` into `out_dir` (metrics.csv, summary.json).

    `identity` describes the model (checkpoint path and hash, norm, seed, ...); results written
    for another model, test set, input gain or pipeline version are discarded rather than mixed
    with new ones. `input_gain_db` scales the noisy input and the clean reference together.
    """
    import torch

    from dfablate.enhance import enhance_waveform

    out_dir.mkdir(parents=True, exist_ok=True)
    _reset_if_stale(out_dir, identity, test_set, input_gain_db)
    results = MetricsCsv(out_dir / "metrics.csv")
    noisy_csv = MetricsCsv(noisy_cache_path(noisy_cache_dir, test_set, input_gain_db))
    names = {p.noisy.name for p in test_set.pairs}
    done = {k: v for k, v in results.finished().items() if k in names}
    noisy_done = {k: v for k, v in noisy_csv.finished().items() if k in names}
    results.rewrite(done.values())  # drops partial lines and failures (scored again)
    noisy_csv.rewrite(noisy_done.values())
    todo = [p for p in test_set.pairs if p.noisy.name not in done]
    noisy_todo = [p for p in test_set.pairs if p.noisy.name not in noisy_done]
    enhanced_dir = out_dir / "enhanced"
    if save_enhanced:
        enhanced_dir.mkdir(exist_ok=True)

    sr = features.sr
    jobs = jobs or available_cores()
    features = features.to(device).eval()
    model = model.to(device).eval()
    inflight: dict[Future, tuple[str, str]] = {}

    bar = progress_bar(progress)
    with bar, scoring_pool(jobs) as pool:
        enhance_task = bar.add_task("enhance", total=len(test_set.pairs), completed=len(done))
        score_task = bar.add_task(
            "score", total=2 * len(test_set.pairs), completed=len(done) + len(noisy_done)
        )

        def collect(limit: int) -> None:
            while len(inflight) > limit:
                finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for future in finished:
                    kind, name = inflight.pop(future)
                    row = future.result()
                    (results if kind == "enhanced" else noisy_csv).append(row)
                    (done if kind == "enhanced" else noisy_done)[name] = row
                    bar.advance(score_task)

        def submit_noisy(limit: int) -> None:
            while noisy_todo and len(inflight) < limit:
                pair = noisy_todo.pop(0)
                future = pool.submit(
                    score_file, pair.noisy.name, pair.clean, pair.noisy, sr, input_gain_db
                )
                inflight[future] = ("noisy", pair.noisy.name)

        try:
            for pair in todo:
                try:
                    noisy = _at_gain(load_audio(pair.noisy, sr), input_gain_db)
                except AudioError:  # scored as a failed file, like a bad clean file
                    row = score_file(pair.noisy.name, pair.clean, pair.noisy, sr, input_gain_db)
                    results.append(row)
                    done[pair.noisy.name] = row
                    bar.advance(enhance_task)
                    bar.advance(score_task)
                    continue
                noisy = torch.from_numpy(noisy).to(device)
                enhanced = enhance_waveform(noisy, features, model).cpu().numpy()
                if save_enhanced:
                    _write_wav_atomic(enhanced_dir / pair.noisy.name, enhanced, sr)
                future = pool.submit(
                    score_file, pair.noisy.name, pair.clean, enhanced, sr, input_gain_db
                )
                inflight[future] = ("enhanced", pair.noisy.name)
                bar.advance(enhance_task)
                submit_noisy(jobs)
                collect(2 * jobs)
            submit_noisy(len(noisy_todo) + len(inflight))
            collect(0)
        except BaseException:
            for future, (kind, _) in inflight.items():  # keep what finished before the stop
                if future.done() and not future.cancelled() and future.exception() is None:
                    (results if kind == "enhanced" else noisy_csv).append(future.result())
            raise

    order = [p.noisy.name for p in test_set.pairs]
    rows = [done[n] for n in order]
    noisy_rows = [noisy_done[n] for n in order]
    results.rewrite(rows)
    noisy_csv.rewrite(noisy_rows)
    summary = {
        **identity,
        "dataset": test_set.describe(),
        "input_gain_db": float(input_gain_db),
        "pipeline_version": PIPELINE_VERSION,
        "n_files": len(rows),
        "n_failed": sum(1 for r in rows if r["error"]),
        **summarise(rows),
        "noisy": summarise(noisy_rows)["mean"],
        "noisy_metrics_csv": str(noisy_csv.path),
        "enhanced_dir": str(enhanced_dir) if save_enhanced else None,
        "complete": True,
    }
    summary_json = out_dir / "summary.json"
    summary_json.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
    return Evaluation(results.path, summary_json, summary, rows, noisy_rows)


def _reset_if_stale(
    out_dir: Path, identity: dict, test_set: TestSet, input_gain_db: float = 0.0
) -> None:
    """Discard earlier results made by another checkpoint, on another test set, at another
    input gain or by another pipeline version (results without a recorded state included)."""
    state_path = out_dir / "eval_state.json"
    state = {
        "checkpoint_sha1": identity.get("checkpoint_sha1"),
        "dataset": test_set.fingerprint,
        "input_gain_db": float(input_gain_db),
        "pipeline_version": PIPELINE_VERSION,
    }
    known = json.loads(state_path.read_text()) if state_path.is_file() else None
    earlier = (out_dir / "metrics.csv").is_file()
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
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, audio, sample_rate, subtype="FLOAT", format="WAV")
    os.replace(tmp, path)


# ---------------------------------------------------------------- checkpoints, runs, test sets


def load_test_set(
    data_cfg, name: str, split: str = "test", max_files: int | None = None
) -> TestSet:
    """The pairs of `split` of the dataset a data config (`configs/data/*.yaml`) describes;
    with `max_files`, an evenly spread subset of that many (for smoke runs)."""
    from hydra.utils import instantiate

    from dfablate.data.valentini import evenly_spread, find_pairs

    datamodule = instantiate(data_cfg)
    pairs = find_pairs(datamodule.root, split)
    if split != "test":
        name = f"{name}-{split}"
    if max_files is not None:
        if max_files < 1:
            raise UserError(f"max_files={max_files} must be at least 1")
        if max_files < len(pairs):
            pairs = evenly_spread(pairs, max_files)
            name = f"{name}-{len(pairs)}files"
    return TestSet(name=name, root=datamodule.root, pairs=pairs)


def default_noisy_cache_dir() -> Path:
    from dfablate.data.mini import default_cache_dir

    return default_cache_dir() / "noisy_scores"


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
    wandb_cfg: dict | None = None,
    progress: bool = True,
    input_gain_db: float = 0.0,
) -> Evaluation:
    """Load `ckpt` (refusing another norm than `expect_norm`), evaluate it at `input_gain_db`
    (default folder `<run dir>/eval/<dataset>[@<G>dB]`), log it to W&B."""
    import torch

    from dfablate.training import DfnSystem

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    system = DfnSystem.load_checkpoint(ckpt, expect_norm=expect_norm, map_location=device)
    recorded = read_run_config(run_dir)
    train_cfg = recorded.config if recorded else {}
    identity = {
        "checkpoint": str(ckpt),
        "checkpoint_sha1": file_sha1(ckpt),
        "run_dir": str(run_dir),
        "experiment": train_cfg.get("name"),
        "norm": system.norm,
        "seed": train_cfg.get("seed"),
        "arch": system.identity["model"]["arch"],
    }
    out_dir = out_dir or run_dir / "eval" / gain_dir_name(test_set.name, input_gain_db)
    evaluation = evaluate_model(
        system.features,
        system.dfnet,
        test_set,
        out_dir,
        identity=identity,
        noisy_cache_dir=noisy_cache_dir or default_noisy_cache_dir(),
        save_enhanced=save_enhanced,
        jobs=jobs,
        device=device,
        progress=progress,
        input_gain_db=input_gain_db,
    )
    if wandb_cfg is not None:
        log_evaluation_to_wandb(run_dir, evaluation, train_cfg, wandb_cfg)
    return evaluation


def is_evaluated(run_dir: Path, test_set: TestSet, ckpt: Path, input_gain_db: float = 0.0) -> bool:
    """Whether `run_dir` already has a complete evaluation of `ckpt` on `test_set` at
    `input_gain_db`, made by this pipeline version."""
    summary_path = run_dir / "eval" / gain_dir_name(test_set.name, input_gain_db) / "summary.json"
    if not summary_path.is_file():
        return False
    summary = json.loads(summary_path.read_text())
    return (
        bool(summary.get("complete"))
        and summary.get("pipeline_version") == PIPELINE_VERSION
        and summary.get("input_gain_db", 0.0) == input_gain_db
        and summary.get("checkpoint_sha1") == file_sha1(ckpt)
        and summary.get("dataset", {}).get("fingerprint") == test_set.fingerprint
    )


def log_evaluation_to_wandb(
    run_dir: Path, evaluation: Evaluation, train_cfg: dict, wandb_cfg: dict
) -> None:
    """One W&B run per evaluation (job_type "eval", grouped with its training runs): the
    per-file table, the noisy reference table and the means in the summary.

    A separate run rather than resuming the training run: offline runs resumed elsewhere would
    restart W&B's step counter and clash with the training history on upload.
    """
    from dfablate.tracking import quiet_wandb, wandb_mode

    if wandb_mode(wandb_cfg.get("mode", "auto")) == "disabled":
        return
    with quiet_wandb():
        _log_evaluation(run_dir, evaluation, train_cfg, wandb_cfg)


def _log_evaluation(run_dir: Path, evaluation: Evaluation, train_cfg: dict, wandb_cfg: dict):
    import pandas as pd
    import wandb

    from dfablate.tracking import init_wandb

    summary = evaluation.summary
    dataset = gain_dir_name(summary["dataset"]["name"], summary["input_gain_db"])
    train_wandb = (train_cfg.get("logger") or {}).get("wandb") or {}
    config = {
        "norm": {"name": summary["norm"]},
        "seed": summary["seed"],
        "name": summary["experiment"],
        "dataset": summary["dataset"],
        "input_gain_db": summary["input_gain_db"],
        "pipeline_version": summary["pipeline_version"],
        "checkpoint": summary["checkpoint"],
    }
    run = init_wandb(
        evaluation.metrics_csv.parent,
        config,
        project=train_wandb.get("project") or wandb_cfg.get("project", "dfablate"),
        entity=wandb_cfg.get("entity") or train_wandb.get("entity"),
        group=summary["experiment"] or run_dir.name,
        tags=[f"norm:{summary['norm']}", f"seed:{summary['seed']}", f"dataset:{dataset}"],
        job_type="eval",
        mode=wandb_cfg.get("mode", "auto"),
        name=f"{run_dir.name}-eval-{dataset}",
    )
    try:
        run.log(
            {
                f"eval/{dataset}/per_file": wandb.Table(dataframe=pd.DataFrame(evaluation.rows)),
                f"eval/{dataset}/noisy_per_file": wandb.Table(
                    dataframe=pd.DataFrame(evaluation.noisy_rows)
                ),
            }
        )
        for stat in ("mean", "median"):
            for metric, value in summary[stat].items():
                run.summary[f"eval/{dataset}/{metric}" + ("" if stat == "mean" else "_median")] = (
                    value
                )
        for metric, value in summary["noisy"].items():
            run.summary[f"eval/{dataset}/noisy_{metric}"] = value
        run.summary[f"eval/{dataset}/n_failed"] = summary["n_failed"]
    finally:
        run.finish()


_ABSENT = object()


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def check_evaluate_options(cfg, overrides: list[str]) -> None:
    """Refuse what `evaluate` would otherwise ignore or misread: unknown keys, non-integer
    counts, an unknown `expect_norm`, a device this machine does not have."""
    import torch

    from dfablate.config import config_file
    from dfablate.features import get_norm

    known = set(OmegaConf.load(config_file("evaluate.yaml"))) - {"defaults"} | {"data", "hydra"}
    for override in overrides:
        top = _override_key(override).split(".", 1)[0]
        if top not in known:
            hint = (
                "; to refuse a checkpoint of another norm use expect_norm=NAME"
                if top == "norm"
                else ""
            )
            raise UserError(
                f"{override}: evaluate has no option {top!r} (the model, norm and features come "
                f"from the checkpoint){hint}"
            )
    for key in ("max_files", "jobs", "num_threads"):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise UserError(f"{key}={value}: must be an integer")
    if cfg.expect_norm is not None:
        try:
            get_norm(cfg.expect_norm)
        except UserError as exc:
            raise UserError(f"expect_norm={cfg.expect_norm}: {exc}") from None
    device = str(cfg.device)
    if device != "auto":
        try:
            parsed = torch.device(device)
        except RuntimeError:
            raise UserError(
                f"device={device}: not a device (auto, cpu, cuda, cuda:1, ...)"
            ) from None
        if parsed.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device={device}: CUDA is not available here; use device=cpu")
        if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
            raise UserError(
                f"device={device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )


def evaluate_from_config(cfg, overrides: list[str]) -> Evaluation:
    """`dfablate evaluate`: the composed evaluate.yaml -> checkpoint, test set, evaluation.

    With run=DIR and no data= override, the run is evaluated on the dataset it was trained on,
    with any data.KEY=VALUE overrides applied to that dataset's config (e.g. data.root= for a
    dataset that moved). W&B follows the run's logger unless wandb.mode= is given.
    """
    check_evaluate_options(cfg, overrides)
    input_gain_db = check_gain_db(cfg.input_gain_db, "input_gain_db")
    if cfg.get("upstream"):
        return evaluate_upstream(cfg, input_gain_db)
    ckpt, run_dir = resolve_checkpoint(cfg.run, cfg.ckpt, cfg.checkpoint)
    data_cfg, data_name = cfg.data, cfg.hydra.runtime.choices.data
    recorded = read_run_config(run_dir)
    train_cfg = recorded.config if recorded else {}
    train_data_name = recorded.choices.get("data") if recorded else None
    if not any(_override_key(o) == "data" for o in overrides):
        if train_cfg.get("data") and train_data_name:
            data_cfg, data_name = OmegaConf.create(train_cfg["data"]), train_data_name
            for override in overrides:
                key = _override_key(override)
                if not key.startswith("data."):
                    continue
                if OmegaConf.select(data_cfg, key[len("data.") :], default=_ABSENT) is _ABSENT:
                    raise UserError(
                        f"{override}: the data this run trained on ({data_name}) has no "
                        f"{key}; add data=NAME to evaluate on another dataset"
                    )
                data_cfg.merge_with_dotlist([override.lstrip("+")[len("data.") :]])
    wandb_cfg = OmegaConf.to_container(cfg.wandb)
    if wandb_cfg.get("mode") is None:  # follow the run: no W&B in training, none here
        logger = train_cfg.get("logger")
        if logger is not None and not logger.get("wandb"):
            wandb_cfg = None
        else:
            wandb_cfg["mode"] = ((logger or {}).get("wandb") or {}).get("mode", "auto")
    test_set = load_test_set(data_cfg, data_name, cfg.split, cfg.max_files)
    if cfg.num_threads:
        import torch

        torch.set_num_threads(int(cfg.num_threads))
    return evaluate_checkpoint(
        ckpt,
        run_dir,
        test_set,
        Path(cfg.out_dir) if cfg.out_dir else None,
        expect_norm=cfg.expect_norm,
        save_enhanced=bool(cfg.save_enhanced),
        jobs=cfg.jobs,
        device=cfg.device,
        noisy_cache_dir=Path(cfg.noisy_cache_dir) if cfg.noisy_cache_dir else None,
        wandb_cfg=wandb_cfg,
        progress=bool(cfg.progress),
        input_gain_db=input_gain_db,
    )


def evaluate_upstream(cfg, input_gain_db: float = 0.0) -> Evaluation:
    """`dfablate evaluate upstream=DIR`: a released DeepFilterNet folder (config.ini +
    checkpoints/*.ckpt.best), scored like a run; results in DIR/eval/<dataset>[@<G>dB]/ unless
    out_dir=. Its summary says norm "original" and label "upstream-<folder name>" for `compare`.
    W&B: `wandb.mode` as given, else auto (there is no training logger to follow)."""
    from omegaconf import OmegaConf

    from dfablate.upstream_model import NORM, load_upstream_model

    if cfg.run is not None or cfg.ckpt is not None:
        raise UserError("give upstream=DIR alone, without run= or ckpt=")
    if cfg.expect_norm is not None and cfg.expect_norm != NORM:
        raise UserError(f"upstream models use norm={NORM}, but expect_norm={cfg.expect_norm}")
    released = load_upstream_model(cfg.upstream)
    folder = Path(cfg.upstream)
    test_set = load_test_set(cfg.data, cfg.hydra.runtime.choices.data, cfg.split, cfg.max_files)
    if cfg.num_threads:
        import torch

        torch.set_num_threads(int(cfg.num_threads))
    device = cfg.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    identity = {
        "checkpoint": str(released.checkpoint),
        "checkpoint_sha1": file_sha1(released.checkpoint),
        "run_dir": str(folder),
        "experiment": None,
        "norm": NORM,
        "seed": None,
        "arch": released.arch,
        "label": released.label,
        "source": "upstream",
    }
    evaluation = evaluate_model(
        released.features,
        released.model,
        test_set,
        Path(cfg.out_dir)
        if cfg.out_dir
        else folder / "eval" / gain_dir_name(test_set.name, input_gain_db),
        identity=identity,
        noisy_cache_dir=Path(cfg.noisy_cache_dir)
        if cfg.noisy_cache_dir
        else default_noisy_cache_dir(),
        save_enhanced=bool(cfg.save_enhanced),
        jobs=cfg.jobs,
        device=device,
        progress=bool(cfg.progress),
        input_gain_db=input_gain_db,
    )
    wandb_cfg = OmegaConf.to_container(cfg.wandb)
    wandb_cfg["mode"] = wandb_cfg.get("mode") or "auto"
    log_evaluation_to_wandb(folder, evaluation, {}, wandb_cfg)
    return evaluation


def summary_table(evaluation: Evaluation):
    """A rich table: mean of each metric for the enhanced output and the noisy input."""
    from rich.table import Table

    summary = evaluation.summary
    table = Table(
        title=f"{gain_dir_name(summary['dataset']['name'], summary['input_gain_db'])}: "
        f"{summary['n_files']} files "
        f"({summary['n_failed']} not scored), norm={summary['norm']}"
    )
    table.add_column("")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    table.add_row("enhanced", *(f"{summary['mean'][m]:.3f}" for m in METRICS))
    table.add_row("noisy", *(f"{summary['noisy'][m]:.3f}" for m in METRICS))
    return table
