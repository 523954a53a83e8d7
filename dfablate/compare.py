"""Compare evaluated runs: B - A per metric against seed-to-seed spread, per-file tables, report.

The question answered: does variant B (e.g. the fixed normalisation) change quality against the
baseline A by more than retraining with another seed does? Every trained run adds its own offset
to all of its files' scores, so the headline treats the run as the unit: a t-test on per-run means
(`dfablate.seed_stats`). Per-file tables show where the difference comes from. Inputs are per-file
metric CSVs (`file,<metrics...>,error`), usually `<run_dir>/eval/<dataset>[@<G>dB]/metrics.csv`.
All metrics are "higher is better".
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dfablate import seed_stats
from dfablate.errors import UserError
from dfablate.runs import find_run_config

RUN_NAME = re.compile(r"^(?P<norm>[A-Za-z0-9_]+)-seed(?P<seed>\d+)$")
EVAL_FOLDER = re.compile(r"^(?P<base>.+?)(?:@(?P<gain>[+-]\d+(?:\.\d+)?)dB)?$")
DB_METRICS = ("ssnr", "sisdr")  # no meaningful zero: no relative differences for these
NO_RELATIVE = "no relative figure on a dB scale (no meaningful zero)"
# config keys that do not change the trained model or the test: left out of a run's identity
NOT_IDENTITY = (
    "seed", "output_root", "resume", "ckpt_path", "num_threads", "validate_first",
    "val_metric_utterances", "logger", "callbacks.media", "callbacks.progress_bar",
    "callbacks.checkpoints.every_n_train_steps", "data.cache_dir", "data.root",
    "data.num_workers", "data.pin_memory", "trainer.accelerator", "trainer.devices",
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
    summary: pd.DataFrame  # one row per (variant, gain, metric)
    run_means: pd.DataFrame  # one row per evaluation: label, variant, seed, gain_db, metrics
    missing_metrics: list[str] = field(default_factory=list)
    missing_runs: dict[str, str] = field(default_factory=dict)  # run -> why it has no scores
    left_out_gains: dict[str, list[float]] = field(default_factory=dict)  # input -> gains


def gain_suffix(gain_db: float) -> str:
    """The eval folder suffix of an input gain: '' for 0 dB, else '@-20dB', '@+2.5dB'."""
    return "" if gain_db == 0 else f"@{gain_db:+g}dB"


# ---------------------------------------------------------------- statistics


def relative_difference_pct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """100 * (b - a) / |a|; 0 where both are 0, NaN where only a is 0 (undefined)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 100.0 * (b - a) / np.abs(a)
    rel[(a == 0) & (b == 0)] = 0.0
    rel[(a == 0) & (b != 0)] = np.nan
    return rel


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value; 1.0 when all differences are zero."""
    from scipy.stats import wilcoxon

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if diff.size == 0:
        return float("nan")
    if not np.any(diff != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(wilcoxon(diff).pvalue)


def is_paired(a_seeds: list[int | None], b_seeds: list[int | None]) -> bool:
    """Pair by seed when both variants have the same (known, distinct, >= 2) seeds."""
    return (
        len(a_seeds) >= 2
        and None not in a_seeds
        and len(set(a_seeds)) == len(a_seeds)
        and sorted(a_seeds) == sorted(b_seeds)
    )


def seed_spread_status(test: seed_stats.SeedTest) -> str:
    """'known' or why the seed spread (and so interval, p, mde, seeds needed) is unknown."""
    if test.n_a < 2 or test.n_b < 2:
        return f"unknown: {test.n_a} + {test.n_b} seeds (needs 2 or more per variant)"
    if not np.isfinite(float(test.se)):
        return "unknown: the runs of both variants score identically"
    return "known"


# ---------------------------------------------------------------- loading


def _eval_gain(eval_dir: Path, folder_gain: float = 0.0) -> float:
    """The input gain of an evaluation: summary.json's `input_gain_db`, else the folder's."""
    summary = _read_summary(eval_dir)
    return float(summary.get("input_gain_db", folder_gain))


def _read_summary(eval_dir: Path) -> dict:
    path = eval_dir / "summary.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read evaluation summary ({exc})") from exc


def _find_evaluations(path: Path, dataset: str | None) -> tuple[dict[float, Path], bool]:
    """The metrics CSV per input gain of one input, and whether the input is one CSV/eval dir
    (one fixed gain) rather than a run directory (every gain it was evaluated at)."""
    if not path.exists():
        raise UserError(f"{path}: no such run directory or metrics CSV")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UserError(f"{path}: not a metrics CSV (expected a .csv file or a run directory)")
        return {_eval_gain(path.parent): path}, True
    if (path / "metrics.csv").is_file():
        return {_eval_gain(path): path / "metrics.csv"}, True
    found: dict[str, dict[float, Path]] = {}
    for csv in sorted((path / "eval").glob("*/metrics.csv")):
        match = EVAL_FOLDER.match(csv.parent.name)
        gain = _eval_gain(csv.parent, float(match["gain"] or 0.0))
        same = found.setdefault(match["base"], {}).get(gain)
        if same is not None:
            raise UserError(
                f"{path}: two evaluations at input gain {gain:g} dB ({same.parent.name} and "
                f"{csv.parent.name}); check their summary.json `input_gain_db`"
            )
        found[match["base"]][gain] = csv
    if dataset is not None:
        base, _, _ = dataset.partition("@")
        if base not in found:
            names = ", ".join(found) or "none"
            raise UserError(
                f"{path}: no evaluation on dataset '{base}' (evaluated datasets: {names})"
            )
        return found[base], False
    if not found:
        raise UserError(
            f"{path}: no evaluation found (no eval/<dataset>/metrics.csv); "
            f"run `dfablate evaluate run={path}` first"
        )
    if len(found) > 1:
        raise UserError(
            f"{path}: evaluated on several datasets ({', '.join(found)}); choose one with --dataset"
        )
    return next(iter(found.values())), False


def _dataset_gain(dataset: str | None) -> float | None:
    """The gain in a `--dataset NAME@<G>dB` value, if any."""
    if dataset is None or "@" not in dataset:
        return None
    match = EVAL_FOLDER.match(dataset)
    if match is None or match["gain"] is None:
        raise UserError(
            f"--dataset {dataset}: expected NAME or NAME@<gain>dB, e.g. valentini@-20dB"
        )
    return float(match["gain"])


def _choose_gains(
    inputs: list[tuple[str, dict[float, Path], bool]], gain_db: float | None
) -> tuple[list[float], dict[str, list[float]]]:
    """The input gains every input has (or the one asked for), and what each input leaves out.

    A CSV or eval folder is one condition: two of them at different gains are refused rather
    than compared as one condition."""
    fixed = [(name, next(iter(gains))) for name, gains, is_fixed in inputs if is_fixed]
    for name, gain in fixed[1:]:
        if gain != fixed[0][1]:
            raise UserError(
                f"runs evaluated at different input gains cannot be one condition: "
                f"{fixed[0][0]} ({fixed[0][1]:g} dB) vs {name} ({gain:g} dB)"
            )
    if gain_db is not None:
        for name, gains, _ in inputs:
            if gain_db not in gains:
                have = ", ".join(f"{g:g}" for g in sorted(gains))
                raise UserError(
                    f"{name}: not evaluated at input gain {gain_db:g} dB (evaluated at {have} dB)"
                )
        return [gain_db], {}
    common = sorted(set.intersection(*(set(gains) for _, gains, _ in inputs)))
    if not common:
        have = "; ".join(
            f"{name}: {', '.join(f'{g:g}' for g in sorted(gains))} dB" for name, gains, _ in inputs
        )
        raise UserError(f"no input gain was evaluated for every run ({have})")
    left_out = {
        name: sorted(set(gains) - set(common))
        for name, gains, _ in inputs
        if set(gains) - set(common)
    }
    return common, left_out


def _flatten(config, prefix: str = "") -> dict[str, str]:
    if isinstance(config, dict):
        flat = {}
        for key, value in config.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: config if isinstance(config, str) else json.dumps(config)}


def _excluded(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NOT_IDENTITY)


def _identity(
    config: dict, summary: dict, folder_norm: str | None, dataset_name: str | None
) -> dict[str, str]:
    """What a run is, seed and input gain left out: its config (minus keys that change neither
    the model nor the test), else what its summary.json records, else its folder's norm."""
    if config:
        identity = {k: v for k, v in config.items() if not _excluded(k)}
        gains = json.loads(identity.get(TRAIN_GAINS, "null")) or [0]
        gains = gains if isinstance(gains, list) else [gains]
        identity[TRAIN_GAINS] = json.dumps([float(g) for g in gains])
    elif summary.get("label"):
        identity = {"label": str(summary["label"])}
    else:
        identity = {
            key: str(summary[name])
            for key, name in (("norm.name", "norm"), ("model.arch", "arch"), ("name", "experiment"))
            if summary.get(name) is not None
        }
        if folder_norm and "norm.name" not in identity:
            identity["norm.name"] = folder_norm
    if dataset_name is not None and identity:
        identity[EVAL_DATASET] = EVAL_FOLDER.match(dataset_name)["base"]
    return identity


def _default_label(csv_path: Path) -> str:
    if csv_path.stem != "metrics":
        return csv_path.stem
    parts = [p.name for p in csv_path.parents if p.name not in ("", "eval")]
    return parts[0] if parts else "run"


def read_scores(csv_path: Path) -> pd.DataFrame:
    """Per-file metric table indexed by file; metric columns coerced to float."""
    try:
        table = pd.read_csv(csv_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{csv_path}: cannot read metrics CSV ({exc})") from exc
    if "file" not in table.columns:
        raise UserError(f"{csv_path}: not a metrics CSV (no 'file' column)")
    metric_columns = [c for c in table.columns if c not in ("file", "error")]
    if not metric_columns:
        raise UserError(f"{csv_path}: no metric columns besides 'file'")
    table["file"] = table["file"].astype(str)
    duplicated = table["file"][table["file"].duplicated()]
    if len(duplicated):
        raise UserError(f"{csv_path}: file '{duplicated.iloc[0]}' appears more than once")
    scores = table.set_index("file")[metric_columns].apply(pd.to_numeric, errors="coerce")
    return scores.astype(float)


def load_evaluation(csv_path: Path, gain_db: float, label: str | None = None) -> RunMetrics:
    """One metrics CSV with its run's identity (config, else summary.json, else folder name)."""
    recorded = find_run_config(csv_path)
    run_dir = recorded.run_dir if recorded else None
    config = _flatten(recorded.config) if recorded else {}
    choices = recorded.choices if recorded else {}
    summary = _read_summary(csv_path.parent)
    seed = config.get("seed", summary.get("seed"))
    run_name, folder_norm = (run_dir.name if run_dir is not None else None), None
    if run_dir is None:
        for parent in [csv_path.parent, *csv_path.parents][:4]:
            match = RUN_NAME.match(parent.name)
            if match:
                run_name, folder_norm = parent.name, match["norm"]
                seed = match["seed"] if seed is None else seed
                break
    dataset = summary.get("dataset")
    dataset_name = (dataset or {}).get("name")
    if dataset_name is None and csv_path.parent.parent.name == "eval":
        dataset_name = csv_path.parent.name
    experiment = config.get("name", summary.get("experiment"))
    return RunMetrics(
        label=label or run_name or summary.get("label") or _default_label(csv_path),
        variant="",
        seed=None if seed in (None, "null") else int(seed),
        csv_path=csv_path,
        scores=read_scores(csv_path),
        gain_db=gain_db,
        identity=_identity(config, summary, folder_norm, dataset_name),
        choices=choices,
        dataset=dataset,
        noisy=summary.get("noisy"),
        experiment=None if experiment in (None, "null") else str(experiment),
    )


def load_runs(
    paths: list[str | Path],
    dataset: str | None = None,
    labels: list[str] | None = None,
    gain_db: float | None = None,
) -> tuple[list[RunMetrics], dict[str, list[float]]]:
    """Load all inputs at the input gains they share (or `gain_db`) and group them into variants.

    Runs form one variant when they differ in nothing but the seed; variants are named by what
    differs between them (`fixed`, `fixed/dfn2`), or by `labels` (one per input; inputs with the
    same label form one variant). Returns the evaluations (one per input and gain) and the gains
    some inputs have but not all (left out).
    """
    if len(paths) < 2:
        raise UserError("compare needs at least two runs (A = baseline, B, ...)")
    if labels and len(labels) != len(paths):
        raise UserError(f"--label given {len(labels)} times for {len(paths)} runs")
    asked = _dataset_gain(dataset)
    if asked is not None and gain_db is not None and asked != gain_db:
        raise UserError(f"--dataset {dataset} and --gain-db {gain_db:g} name different gains")
    gain_db = asked if gain_db is None else gain_db
    inputs = [(str(p), *_find_evaluations(Path(p), dataset)) for p in paths]
    gains, left_out = _choose_gains(inputs, gain_db)
    per_input = [
        [load_evaluation(evals[g], g, labels[i] if labels else None) for g in gains]
        for i, (_, evals, _) in enumerate(inputs)
    ]
    _name_variants([evals[0] for evals in per_input], labels)
    for evals in per_input:
        for other in evals[1:]:
            other.label, other.variant = evals[0].label, evals[0].variant
    runs = [run for evals in per_input for run in evals]
    _check_same_test_set(runs)
    return runs, left_out


def _name_variants(runs: list[RunMetrics], labels: list[str] | None) -> None:
    """Set each run's variant (and make labels unique): by label, else by identity."""
    if labels:
        by_label: dict[str, RunMetrics] = {}
        for run in runs:
            first = by_label.setdefault(run.label, run)
            differs = _differing_keys([first.identity, run.identity])
            if differs:
                raise UserError(
                    f"--label {run.label} names runs that differ in more than the seed "
                    f"({', '.join(differs[:3])}): {first.csv_path} vs {run.csv_path}"
                )
            run.variant = run.label
            if run.seed is not None:
                run.label = f"{run.label}-seed{run.seed}"
        _make_labels_unique(runs)
    else:
        _make_labels_unique(runs)
        groups: dict[str, list[RunMetrics]] = {}
        for run in runs:
            key = json.dumps(run.identity or {"label": run.label}, sort_keys=True)
            groups.setdefault(key, []).append(run)
        if len(groups) < 2:  # nothing tells the runs apart but their seed or name
            groups = {run.label: [run] for run in runs}
        names = _variant_names([members[0] for members in groups.values()])
        for name, members in zip(names, groups.values(), strict=True):
            for run in members:
                run.variant = name


def _make_labels_unique(runs: list[RunMetrics]) -> None:
    for run, label in zip(runs, _unique([r.label for r in runs]), strict=True):
        run.label = label


def _differing_keys(identities: list[dict]) -> list[str]:
    keys = sorted(set().union(*identities))
    return [k for k in keys if len({ident.get(k) for ident in identities}) > 1]


def _variant_names(representatives: list[RunMetrics]) -> list[str]:
    """Name each variant by what sets it apart: norm, then the config group choices or values
    that differ (`fixed/dfn2`), training gains, experiment, evaluation dataset. Runs known only
    by a label (a plain CSV, an upstream model) keep it."""
    configured = [r for r in representatives if r.identity and "label" not in r.identity]
    differs = _differing_keys([r.identity for r in configured]) if len(configured) > 1 else []
    names = []
    for run in representatives:
        if run not in configured:
            names.append(run.identity.get("label", run.label))
        elif not differs:
            names.append(run.identity.get("norm.name", run.label))
        else:
            names.append("/".join(_name_parts(run, differs, configured)))
    return _unique(names)


NOT_NAMING_GROUPS = ("norm", "experiment", "logger", "callbacks")


def _group_choices(run: RunMetrics) -> dict[str, str]:
    """The run's config group choices that can define a variant (model, data, trainer, ...)."""
    choices = {g: c for g, c in run.choices.items() if g not in NOT_NAMING_GROUPS and "/" not in g}
    if "model" not in choices and "model.arch" in run.identity:
        choices["model"] = run.identity["model.arch"]
    return choices


def _name_parts(run: RunMetrics, differs: list[str], configured: list[RunMetrics]) -> list[str]:
    """norm, the group choices that differ (they explain every key they set), the other keys
    that differ as `leaf=value`, training gains, experiment, evaluation dataset."""
    groups = sorted(
        {g for r in configured for g in _group_choices(r)},
        key=lambda g: (["model", "data", "trainer"] + [g]).index(g),
    )
    groups = [g for g in groups if len({_group_choices(r).get(g) for r in configured}) > 1]

    def chosen(r: RunMetrics) -> tuple:
        return tuple(_group_choices(r).get(g) for g in groups)

    def explained(key: str) -> bool:  # the same value wherever the choices are the same
        values: dict[tuple, str | None] = {}
        return all(values.setdefault(chosen(r), r.identity.get(key)) == r.identity.get(key)
                   for r in configured)  # fmt: skip

    special = ("norm.name", TRAIN_GAINS, "name", EVAL_DATASET)
    parts = [run.identity.get("norm.name", "-")] if "norm.name" in differs else []
    parts += [_group_choices(run).get(g, "-") for g in groups]
    parts += [
        f"{key.split('.')[-1]}={run.identity.get(key, '-')}"
        for key in differs
        if key not in special and not (groups and explained(key))
    ]
    if TRAIN_GAINS in differs:
        parts.append(f"train gains {_gains_text(run.identity[TRAIN_GAINS])}")
    parts += [run.identity.get(key, "-") for key in ("name", EVAL_DATASET) if key in differs]
    return parts


def _gains_text(gains_json: str) -> str:
    return ",".join(f"{g:g}" for g in json.loads(gains_json)) + " dB"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def describe_identity(run: RunMetrics) -> dict[str, str]:
    """The headline of a run's identity for the report: norm, model, data, experiment, training
    gains, evaluation dataset, input gain (what is unknown is left out)."""
    ident, choices = run.identity, run.choices
    described = {
        "norm": ident.get("norm.name"),
        "model": choices.get("model") or ident.get("model.arch"),
        "data": choices.get("data"),
        "experiment": ident.get("name"),
        "training gains": _gains_text(ident[TRAIN_GAINS]) if TRAIN_GAINS in ident else None,
        "eval dataset": ident.get(EVAL_DATASET),
        "source": ident.get("label"),
    }
    return {k: v for k, v in described.items() if v is not None}


def _check_same_test_set(runs: list[RunMetrics]) -> None:
    """Refuse runs whose evaluation summaries name different test sets."""
    known = [r for r in runs if r.dataset and r.dataset.get("fingerprint")]
    for run in known[1:]:
        if run.dataset["fingerprint"] != known[0].dataset["fingerprint"]:
            raise UserError(
                f"runs evaluated on different test sets: {known[0].csv_path} "
                f"({_describe_dataset(known[0].dataset)}) vs {run.csv_path} "
                f"({_describe_dataset(run.dataset)})"
            )
    common = set.intersection(*(set(r.scores.index) for r in runs))
    if not common:
        raise UserError(
            f"runs evaluated on different test sets: no file in common between "
            f"{runs[0].csv_path} and the other inputs"
        )


def _describe_dataset(dataset: dict) -> str:
    return f"{dataset.get('name', '?')} at {dataset.get('root', '?')}, {dataset.get('n_files', '?')} files"


# ---------------------------------------------------------------- comparison


def compare_runs(
    runs: list[RunMetrics],
    left_out_gains: dict[str, list[float]] | None = None,
    unpaired: str = "student",
) -> Comparison:
    """Every variant vs the baseline (the first variant), per input gain and metric.

    Headline: B - A of the variant means with a t-test on per-run means (paired by seed when
    both variants have the same seeds, else `unpaired`: Student or Welch). Per-file tables: a
    file's value for a variant is the mean over its seeds.
    """
    variants = list(dict.fromkeys(r.variant for r in runs))
    if len(variants) < 2:
        raise UserError("compare needs runs of at least two variants")
    baseline = variants[0]
    gains = list(dict.fromkeys(r.gain_db for r in runs))
    all_metrics = [list(r.scores.columns) for r in runs]
    metrics = [m for m in all_metrics[0] if all(m in cols for cols in all_metrics)]
    missing_metrics = sorted({m for cols in all_metrics for m in cols} - set(metrics))
    if not metrics:
        raise UserError("the inputs share no metric column")

    file_sets = [set(r.scores.index) for r in runs]
    common = set.intersection(*file_sets)
    files = [f for f in runs[0].scores.index if f in common]
    only_in = {
        f: [r.where for r in runs if f in r.scores.index]
        for f in sorted(set.union(*file_sets) - common)
    }
    failed: dict[str, list[str]] = {}
    for run in runs:
        scores = run.scores.loc[files, metrics]
        for file, row in scores.iterrows():
            bad = [m for m in metrics if np.isnan(row[m])]
            if bad:
                failed[f"{run.where}: {file}"] = bad

    # per gain and metric, the files scored in every run: per-file and per-run values agree
    metric_files = {
        (g, m): [
            f for f in files if all(np.isfinite(r.scores.at[f, m]) for r in runs if r.gain_db == g)
        ]
        for g in gains
        for m in metrics
    }
    run_means = pd.DataFrame(
        [
            {
                "label": r.label,
                "variant": r.variant,
                "seed": r.seed,
                "gain_db": r.gain_db,
                **{m: float(r.scores.loc[metric_files[r.gain_db, m], m].mean()) for m in metrics},
            }
            for r in runs
        ]
    )
    long_tables, wide_tables, summary_rows = [], [], []
    for variant in variants[1:]:
        for gain in gains:
            a_runs = [r for r in runs if r.variant == baseline and r.gain_db == gain]
            b_runs = [r for r in runs if r.variant == variant and r.gain_db == gain]
            paired = is_paired([r.seed for r in a_runs], [r.seed for r in b_runs])
            if paired:  # same seed order on both sides
                a_runs = sorted(a_runs, key=lambda r: r.seed)
                b_runs = sorted(b_runs, key=lambda r: r.seed)
            wide = pd.DataFrame({"variant": variant, "gain_db": gain, "file": files})
            rows = []
            for metric in metrics:
                m_files = metric_files[gain, metric]
                a_file = _seed_mean(a_runs, metric, m_files)
                b_file = _seed_mean(b_runs, metric, m_files)
                rel = relative_difference_pct(a_file, b_file)
                long_tables.append(
                    pd.DataFrame(
                        {
                            "variant": variant, "gain_db": gain, "file": m_files,
                            "metric": metric, "a": a_file, "b": b_file,
                            "diff": b_file - a_file, "rel_diff_pct": rel,
                        }
                    )
                )  # fmt: skip
                per_file = pd.DataFrame(
                    {"a": a_file, "b": b_file, "diff": b_file - a_file, "rel_diff_pct": rel},
                    index=m_files,
                ).reindex(files)
                for column in per_file.columns:
                    wide[f"{metric}_{column}"] = per_file[column].to_numpy()
                a_seed = np.array([r.scores.loc[m_files, metric].mean() for r in a_runs])
                b_seed = np.array([r.scores.loc[m_files, metric].mean() for r in b_runs])
                rows.append(
                    _summary_row(metric, a_seed, b_seed, a_file, b_file, paired, unpaired)
                    | {"variant": variant, "gain_db": gain, "a": baseline, "b": variant}
                )
            for row, p_holm in zip(
                rows, seed_stats.holm([r["p_value"] for r in rows]), strict=True
            ):
                row["p_holm"] = float(p_holm)
            summary_rows += rows
            wide_tables.append(wide)
    return Comparison(
        runs=runs,
        baseline=baseline,
        variants=variants,
        identities={
            v: describe_identity(next(r for r in runs if r.variant == v)) for v in variants
        },
        gains=gains,
        metrics=metrics,
        files=files,
        only_in=only_in,
        failed=failed,
        relative_diff=pd.concat(long_tables, ignore_index=True),
        per_file=pd.concat(wide_tables, ignore_index=True),
        summary=pd.DataFrame(summary_rows)[SUMMARY_COLUMNS],
        run_means=run_means,
        missing_metrics=missing_metrics,
        left_out_gains=left_out_gains or {},
    )


SUMMARY_COLUMNS = [
    "variant", "gain_db", "metric", "a", "b", "a_mean", "b_mean", "mean_diff", "ci95_low",
    "ci95_high", "p_value", "p_holm", "test", "paired", "seed_spread", "a_seeds", "b_seeds",
    "a_seed_std", "b_seed_std", "mde", "seeds_needed", "rel_diff_of_means_pct", "n_files",
    "wilcoxon_p_files", "a_median", "b_median", "rel_diff_mean_pct", "rel_diff_median_pct",
    "b_better_share",
]  # fmt: skip


def _seed_mean(members: list[RunMetrics], metric: str, files: list[str]) -> np.ndarray:
    """Per file, the mean score over a variant's runs."""
    return np.stack([r.scores.loc[files, metric].to_numpy() for r in members]).mean(axis=0)


def _summary_row(
    metric: str,
    a_seed: np.ndarray,
    b_seed: np.ndarray,
    a_file: np.ndarray,
    b_file: np.ndarray,
    paired: bool,
    unpaired: str,
) -> dict:
    """One summary.csv row: the seed-aware headline, then the per-file statistics."""
    test = seed_stats.run_mean_test(a_seed, b_seed, paired=paired, unpaired=unpaired)
    relative = metric not in DB_METRICS
    rel = relative_difference_pct(a_file, b_file)
    rel = rel[np.isfinite(rel)]
    a_mean, b_mean = float(a_seed.mean()), float(b_seed.mean())
    nan = float("nan")
    return {
        "metric": metric,
        "a_mean": a_mean,
        "b_mean": b_mean,
        "mean_diff": float(test.mean_diff),
        "ci95_low": float(test.ci95_low),
        "ci95_high": float(test.ci95_high),
        "p_value": float(test.p_value),
        "test": test.test,
        "paired": paired,
        "seed_spread": seed_spread_status(test),
        "a_seeds": test.n_a,
        "b_seeds": test.n_b,
        "a_seed_std": float(test.a_sd),
        "b_seed_std": float(test.b_sd),
        "mde": seed_stats.minimum_detectable_difference(test),
        "seeds_needed": seed_stats.seeds_needed(test),
        "rel_diff_of_means_pct": (
            float(relative_difference_pct([a_mean], [b_mean])[0]) if relative else nan
        ),
        "n_files": len(a_file),
        "wilcoxon_p_files": wilcoxon_p(a_file, b_file),
        "a_median": _median(a_file),
        "b_median": _median(b_file),
        "rel_diff_mean_pct": _mean(rel) if relative else nan,
        "rel_diff_median_pct": _median(rel) if relative else nan,
        "b_better_share": float(np.mean(b_file > a_file)) if len(a_file) else nan,
    }


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


# ---------------------------------------------------------------- outputs


def _suffix(comparison: Comparison, variant: str, gain: float) -> str:
    """File name suffix of one variant-vs-baseline condition: variant (with > 2), gain."""
    name = "" if len(comparison.variants) == 2 else "_" + re.sub(r"[^\w.+-]", "_", variant)
    return name + gain_suffix(gain)


def _condition(table: pd.DataFrame, variant: str, gain: float) -> pd.DataFrame:
    return table[(table["variant"] == variant) & (table["gain_db"] == gain)]


def _panels(plt, n: int):
    ncols = min(4, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False, constrained_layout=True
    )
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:n]


def write_figures(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Per condition: B - A per file (files sorted by A's score) and its distribution; per gain:
    per-seed means with the seed-aware interval; with several gains: robustness curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    c, paths = comparison, []

    def save(fig, name: str) -> None:
        paths.append(out_dir / name)
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)

    for variant in c.variants[1:]:
        for gain in c.gains:
            table = _condition(c.relative_diff, variant, gain)
            summary = _condition(c.summary, variant, gain).set_index("metric")
            where = f"{variant} vs {c.baseline}" + (f" at {gain:+g} dB input gain" if gain else "")
            fig, axes = _panels(plt, len(c.metrics))
            for ax, metric in zip(axes, c.metrics, strict=True):
                rows = table[table["metric"] == metric].sort_values(["a", "file"])
                rank = np.arange(1, len(rows) + 1)
                ax.scatter(rank, rows["diff"], s=8, alpha=0.7, label="file")
                ax.axhline(0.0, color="black", linewidth=0.8)
                row = summary.loc[metric]
                ax.axhline(row["mean_diff"], color="tab:red", linestyle="--", linewidth=1,
                           label="B - A of variant means")  # fmt: skip
                if np.isfinite(row["ci95_low"]):
                    ax.axhspan(row["ci95_low"], row["ci95_high"], color="tab:red", alpha=0.15,
                               label="95 % interval (seeds)")  # fmt: skip
                if len(rows) <= 30:
                    ax.set_xticks(rank, [Path(f).stem for f in rows["file"]], rotation=90,
                                  fontsize=6)  # fmt: skip
                else:
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("file, sorted by A's score" + ("" if len(rows) <= 30 else " (rank)"))
                ax.set_ylabel(f"B - A ({metric})")
                ax.set_title(metric.upper())
            axes[0].legend(fontsize=7)
            fig.suptitle(f"{where}: B - A per file (files listed in per_file.csv)")
            save(fig, f"per_file_diff{_suffix(c, variant, gain)}.png")

            fig, axes = _panels(plt, len(c.metrics))
            for ax, metric in zip(axes, c.metrics, strict=True):
                diff = table.loc[table["metric"] == metric, "diff"].to_numpy()
                if diff.size:
                    ax.hist(diff, bins=min(40, max(5, diff.size // 3)), color="tab:blue")
                    ax.axvline(diff.mean(), color="tab:red", linestyle="--", linewidth=1)
                ax.axvline(0.0, color="black", linewidth=0.8)
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel(f"B - A ({metric})")
                ax.set_ylabel("files")
                ax.set_title(metric.upper())
            fig.suptitle(f"{where}: distribution of B - A over files (red: mean)")
            save(fig, f"per_file_diff_distribution{_suffix(c, variant, gain)}.png")

    for gain in c.gains:
        fig, axes = _panels(plt, len(c.metrics))
        means = c.run_means[c.run_means["gain_db"] == gain]
        for ax, metric in zip(axes, c.metrics, strict=True):
            a_mean = means.loc[means["variant"] == c.baseline, metric].mean()
            ax.axhline(a_mean, color="grey", linestyle=":", linewidth=1)
            for x, variant in enumerate(c.variants):
                runs = means[means["variant"] == variant]
                ax.scatter(np.full(len(runs), x), runs[metric], s=20, color=f"C{x}")
                for seed, value in zip(runs["seed"], runs[metric], strict=True):
                    if pd.notna(seed):
                        ax.annotate(f"{int(seed)}", (x, value), xytext=(4, 0), fontsize=7,
                                    textcoords="offset points", va="center")  # fmt: skip
                if variant == c.baseline:
                    continue
                row = _condition(c.summary, variant, gain).set_index("metric").loc[metric]
                if np.isfinite(row["ci95_low"]):
                    low, high = a_mean + row["ci95_low"], a_mean + row["ci95_high"]
                    ax.errorbar(x + 0.25, row["b_mean"], fmt="o", color="black", capsize=4,
                                yerr=[[row["b_mean"] - low], [high - row["b_mean"]]])  # fmt: skip
            ax.set_xticks(range(len(c.variants)), c.variants, fontsize=7)
            ax.set_xlim(-0.5, len(c.variants) - 0.3)
            ax.set_title(metric.upper())
        fig.suptitle(
            "per-seed means over files (numbers: seed); black: B's mean with the 95 % interval "
            "of B - A placed on A's mean (dotted)" + (f", input gain {gain:+g} dB" if gain else "")
        )
        save(fig, f"seed_means{gain_suffix(gain)}.png")

    if len(c.gains) > 1:
        fig, axes = _panels(plt, len(c.metrics))
        for ax, metric in zip(axes, c.metrics, strict=True):
            for k, variant in enumerate(c.variants):
                curve = (
                    c.run_means[c.run_means["variant"] == variant]
                    .groupby("gain_db")[metric]
                    .agg(["mean", "std", "count"])
                    .sort_index()
                )
                ax.plot(curve.index, curve["mean"], marker="o", color=f"C{k}", label=variant)
                half = _t_half_width(curve["std"].to_numpy(), curve["count"].to_numpy())
                if np.isfinite(half).any():
                    ax.fill_between(curve.index, curve["mean"] - half, curve["mean"] + half,
                                    color=f"C{k}", alpha=0.2)  # fmt: skip
            ax.set_xticks(c.gains)
            ax.set_xlabel("input gain (dB)")
            ax.set_title(metric.upper())
        axes[0].legend(fontsize=7)
        fig.suptitle("robustness: mean over seeds vs input gain (band: 95 % interval over seeds)")
        save(fig, "robustness.png")
    return paths


def _t_half_width(std: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Half-width of the 95 % t interval of a mean of `count` runs (NaN with one run)."""
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            count > 1, stats.t.ppf(0.975, np.maximum(count - 1, 1)) * std / np.sqrt(count), np.nan
        )


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) or float(value).is_integer() and abs(value) >= 2:
        return str(int(value))
    if abs(value) != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    if abs(value) >= 100:  # large relative differences: keep the columns narrow
        digits = 1 if abs(value) < 1000 else 0
    return f"{value:.{digits}f}"


def _interval(row) -> str:
    if not np.isfinite(row["ci95_low"]):
        return "unknown"
    digits = 3 if max(abs(row["ci95_low"]), abs(row["ci95_high"])) < 10 else 1
    return f"[{row['ci95_low']:.{digits}f}, {row['ci95_high']:.{digits}f}]"


def _relative(row) -> str:
    if row["metric"] in DB_METRICS:
        return "(dB)"
    return _fmt(row["rel_diff_of_means_pct"], 1)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no tabulate dependency)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def headline_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The report's headline per metric: B - A, its seed-aware interval and p, power figures."""
    return pd.DataFrame(
        {
            "metric": summary["metric"],
            "A mean": summary["a_mean"],
            "B mean": summary["b_mean"],
            "B - A": summary["mean_diff"],
            "95% interval (seeds)": [_interval(r) for _, r in summary.iterrows()],
            "p": summary["p_value"],
            "p (Holm)": summary["p_holm"],
            "seeds A+B": [f"{r.a_seeds}+{r.b_seeds}" for r in summary.itertuples()],
            "A seed std": summary["a_seed_std"],
            "B seed std": summary["b_seed_std"],
            "mde": summary["mde"],
            "seeds needed": [
                f"{n:.0f}+" if n >= seed_stats.MAX_SEEDS else n for n in summary["seeds_needed"]
            ],
            "rel. diff of means %": [_relative(r) for _, r in summary.iterrows()],
        }
    )


FILE_COLUMNS = {
    "metric": "metric",
    "n_files": "files",
    "a_median": "A median",
    "b_median": "B median",
    "rel_diff_mean_pct": "rel. diff mean %",
    "rel_diff_median_pct": "rel. diff median %",
    "b_better_share": "B better (share)",
    "wilcoxon_p_files": "Wilcoxon p (files)",
}


def spread_notes(summary: pd.DataFrame) -> list[str]:
    """What the headline of one condition rests on, and what it cannot claim."""
    first = summary.iloc[0]
    notes = [
        f"Test: {first['test']} on per-run means"
        + (" (paired by seed)" if first["paired"] else "")
        + f", {first['a_seeds']} + {first['b_seeds']} seeds."
    ]
    if first["seed_spread"] != "known":
        notes.append(
            f"**Seed spread {first['seed_spread']}**: no interval, p-value, mde or seeds "
            "needed can be given, and the difference cannot be told apart from retraining noise."
        )
    dbs = [m for m in DB_METRICS if m in set(summary["metric"])]
    if dbs:
        notes.append(f"{', '.join(m.upper() for m in dbs)}: {NO_RELATIVE}; read B - A in dB.")
    return notes


def write_report(comparison: Comparison, out_dir: Path, figures: list[Path]) -> Path:
    """report.md: inputs and identities, files left out, the seed-aware headline per condition,
    per-file statistics, robustness, per-seed means, the method, figures."""
    c = comparison
    lines = [f"# Comparison: {', '.join(c.variants[1:])} vs {c.baseline} (baseline A)", ""]
    lines += ["## Inputs", ""]
    variants = pd.DataFrame(
        [
            {
                "variant": v,
                "runs": str(len({r.label for r in c.runs if r.variant == v})),
                "seeds": ", ".join(
                    sorted({str(r.seed) for r in c.runs if r.variant == v and r.seed is not None})
                )
                or "n/a",
                "identity": "; ".join(f"{k}: {val}" for k, val in c.identities[v].items()) or "-",
            }
            for v in c.variants
        ]
    )
    lines += [markdown_table(variants), ""]
    inputs = pd.DataFrame(
        [
            {
                "run": r.label,
                "variant": r.variant,
                "seed": "n/a" if r.seed is None else str(r.seed),
                "input gain dB": f"{r.gain_db:g}",
                "files": str(len(r.scores)),
                "metrics CSV": str(r.csv_path),
            }
            for r in c.runs
        ]
    )
    lines += [markdown_table(inputs), ""]
    if c.missing_runs:
        lines += [f"**{len(c.missing_runs)} runs are missing from this comparison:**", ""]
        lines += [f"- {run}: {why}" for run, why in c.missing_runs.items()]
        lines += [""]
    if c.left_out_gains:
        lines += ["**Input gains not evaluated for every run, left out:**", ""]
        lines += [
            f"- {name}: {', '.join(f'{g:g}' for g in gains)} dB"
            for name, gains in c.left_out_gains.items()
        ]
        lines += [""]
    lines += [f"{len(c.files)} files are present in every run and compared."]
    if c.only_in:
        lines += ["", f"**{len(c.only_in)} files are missing from some runs and left out:**", ""]
        lines += [f"- `{f}`: only in {', '.join(labels)}" for f, labels in c.only_in.items()]
    if c.failed:
        lines += ["", "**Scores missing (scoring error) — left out for those metrics:**", ""]
        lines += [f"- {where}: {', '.join(metrics)}" for where, metrics in c.failed.items()]
    if c.missing_metrics:
        lines += ["", f"Metrics not in every input, left out: {', '.join(c.missing_metrics)}."]
    noisy = next((r.noisy for r in c.runs if r.noisy and r.gain_db == c.gains[0]), None)
    if noisy:
        lines += ["", "Unprocessed noisy input (mean over the test set), for reference:", ""]
        lines += [
            markdown_table(pd.DataFrame([{m: noisy.get(m, float("nan")) for m in c.metrics}]))
        ]
    for variant in c.variants[1:]:
        for gain in c.gains:
            summary = _condition(c.summary, variant, gain)
            title = f"{variant} (B) vs {c.baseline} (A)" + (
                f", input gain {gain:+g} dB" if len(c.gains) > 1 or gain else ""
            )
            lines += ["", f"## {title}", "", markdown_table(headline_table(summary)), ""]
            lines += [f"- {note}" for note in spread_notes(summary)]
            lines += ["", "Per file (a file's value is the mean over its variant's seeds):", ""]
            per_file = summary[list(FILE_COLUMNS)].rename(columns=FILE_COLUMNS)
            lines += [markdown_table(per_file)]
            suffix = _suffix(c, variant, gain)
            for name in ("per_file_diff", "per_file_diff_distribution"):
                lines += ["", f"![{name}{suffix}]({name}{suffix}.png)"]
    if any(f.name == "robustness.png" for f in figures):
        lines += ["", "## Robustness to input gain", "", "![robustness](robustness.png)"]
    seed_means = c.run_means.assign(gain_db=[f"{g:g}" for g in c.run_means["gain_db"]])
    lines += ["", "## Per-seed means", "", markdown_table(seed_means)]
    lines += [f"\n![{f.stem}]({f.name})" for f in figures if f.stem.startswith("seed_means")]
    lines += ["", "## Method", "", *METHOD, "", "## Definitions", "", *DEFINITIONS]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


METHOD = [
    "Each trained run adds its own offset to the score of every file, so the unit of variation "
    "is the run, not the file: every run is reduced to its mean over the compared files. "
    "B - A is the difference of the two variants' averages of these per-run means, and its 95 % "
    "interval and p-value come from a t-test on them: paired over seeds (a one-sample t-test of "
    "the per-seed differences) when both variants have the same seeds, because the same seed "
    "means the same initial weights and crop order, else Student's two-sample t-test. "
    "This is exact when run offsets add to the scores (score = file quality + run offset + "
    "noise) and are roughly Gaussian with one spread for both variants; simulated studies in "
    "the test suite reject a true zero difference in 5 % of studies at 2, 3, 5 and 10 seeds "
    "(Welch's test, `--unpaired-test welch`, allows unequal spreads but rejects only 2-3 % at "
    "2-3 seeds: its intervals are too wide there). "
    "`mde` is the smallest |B - A| that test detects with 80 % power at alpha 0.05 given the "
    "observed per-run spread (noncentral t), `seeds_needed` the seeds per variant needed to "
    "detect the observed difference with 80 % power, and `p_holm` corrects the p-values for "
    "testing every metric (Holm). "
    "With one seed in a variant the run-to-run spread is unknown and nothing is claimed; the "
    "file-level Wilcoxon p (`wilcoxon_p_files`) describes only these particular trained models.",
    "",
    "What it cannot tell: the answer holds for this test set and this training recipe (data, "
    "model, schedule, amount of training); another test set or recipe can change it, and with "
    "2-3 seeds the per-run spread itself is poorly known (hence wide intervals).",
]
DEFINITIONS = [
    "- All metrics are higher-is-better (PESQ, STOI, CSIG, CBAK, COVL, segmental SNR, SI-SDR).",
    "- Per-run mean: a run's mean score over the files compared for that metric (files scored "
    "in every run). A seed std is the sample std (ddof 1) of a variant's per-run means.",
    "- Per-file value of a variant: the mean of that file's score over the variant's seeds; "
    "`diff` = B - A in the metric's unit, `rel_diff_pct` = `100 (B - A) / |A|` (undefined, "
    "left out, where A = 0 and B != 0).",
    "- The spread behind p, interval, mde and seeds needed is the test's: the std of the "
    "per-seed differences when paired (often much smaller than either seed std, as both runs "
    "of a seed share its initial weights and crop order), the pooled seed std for Student's t, "
    "both seed stds for Welch's. Seeds needed: 1000+ means 1000 or more.",
    f"- SSNR and SI-SDR: {NO_RELATIVE}; their relative columns in summary.csv are empty.",
    "- B better (share): fraction of files with B > A. Wilcoxon p (files): two-sided paired "
    "Wilcoxon signed-rank test of the per-file B - A (scipy); it ignores seed-to-seed spread.",
]


def write_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """relative_diff.csv, per_file.csv, summary.csv, seed_means.csv, figures and report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "relative_diff": out_dir / "relative_diff.csv",
        "per_file": out_dir / "per_file.csv",
        "summary": out_dir / "summary.csv",
        "seed_means": out_dir / "seed_means.csv",
    }
    comparison.relative_diff.to_csv(paths["relative_diff"], index=False)
    comparison.per_file.to_csv(paths["per_file"], index=False)
    comparison.summary.to_csv(paths["summary"], index=False)
    comparison.run_means.to_csv(paths["seed_means"], index=False)
    figures = write_figures(comparison, out_dir)
    paths["report"] = write_report(comparison, out_dir, figures)
    paths.update({f.stem: f for f in figures})
    return paths


def print_summary(comparison: Comparison, report: Path | None = None, console=None) -> None:
    """The seed-aware headline per condition in the terminal (rich)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    c = comparison
    for variant in c.variants[1:]:
        for gain in c.gains:
            summary = _condition(c.summary, variant, gain)
            first = summary.iloc[0]
            spread = "known" if first["seed_spread"] == "known" else "UNKNOWN"
            table = Table(
                box=box.SIMPLE_HEAD,
                pad_edge=False,
                title=f"{variant} (B) vs {c.baseline} (A)"
                + (f" at {gain:+g} dB input gain" if gain else "")
                + f": {first['a_seeds']}+{first['b_seeds']} seeds, seed spread {spread}, "
                f"{len(c.files)} files",
                caption=f"{first['test']} on per-run means"
                + (" (paired by seed)" if first["paired"] else "")
                + "; rel %: 100 (B - A) / |A|, none for ssnr, sisdr (a dB scale has no meaningful zero)",
            )
            columns = ["metric", "A mean", "B mean", "B - A", "95% interval", "p", "p Holm",
                       "rel %"]  # fmt: skip
            for name in columns:
                table.add_column(
                    name, justify="left" if name == "metric" else "right", no_wrap=True
                )
            for _, row in summary.iterrows():
                table.add_row(
                    row["metric"], _fmt(row["a_mean"]), _fmt(row["b_mean"]),
                    _fmt(row["mean_diff"]), _interval(row), _fmt(row["p_value"]),
                    _fmt(row["p_holm"]), _relative(row),
                )  # fmt: skip
            console.print(table)
            if first["seed_spread"] != "known":
                console.print(
                    f"seed spread {first['seed_spread']}: no interval or p-value; the difference "
                    "cannot be told apart from retraining with another seed",
                    highlight=False,
                )
    for run, why in c.missing_runs.items():
        console.print(f"missing run {run}: {why}", highlight=False)
    for name, gains in c.left_out_gains.items():
        listed = ", ".join(f"{g:g}" for g in gains)
        console.print(f"{name}: input gains {listed} dB not evaluated for every run, left out")
    if c.only_in:
        console.print(f"{len(c.only_in)} files missing from some runs were left out")
    if c.failed:
        console.print(f"{len(c.failed)} file scores missing (scoring errors) were left out")
    if report is not None:
        console.print(f"report: {report}")


def default_out_dir(root: Path = Path("outputs")) -> Path:
    """A new folder outputs/compare/<timestamp> (suffixed if it already exists)."""
    from datetime import datetime

    base = root / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}_{k}")
    return path


WANDB_SUMMARY_KEYS = (
    "a_mean", "b_mean", "mean_diff", "ci95_low", "ci95_high", "p_value", "p_holm", "mde",
    "seeds_needed", "rel_diff_of_means_pct", "wilcoxon_p_files",
)  # fmt: skip


def log_comparison_to_wandb(
    comparison: Comparison, paths: dict[str, Path], mode: str = "auto", project: str = "dfablate"
) -> None:
    """One W&B run (job_type "compare") in the output folder: the summary, per-file and seed
    tables, every figure, and the seed-aware headline of every metric in the run summary."""
    from dfablate.tracking import quiet_wandb, wandb_mode

    if wandb_mode(mode) == "disabled":
        return
    with quiet_wandb():
        _log_comparison(comparison, paths, mode, project)


def _log_comparison(comparison: Comparison, paths: dict[str, Path], mode: str, project: str):
    import wandb

    from dfablate.tracking import init_wandb

    out_dir = paths["report"].parent
    experiments = {r.experiment for r in comparison.runs}
    group = experiments.pop() if len(experiments) == 1 and None not in experiments else "compare"
    config = {
        "baseline": comparison.baseline,
        "variants": comparison.variants,
        "identities": comparison.identities,
        "input_gains_db": comparison.gains,
        "runs": [
            {
                "label": r.label,
                "variant": r.variant,
                "seed": r.seed,
                "gain_db": r.gain_db,
                "csv": str(r.csv_path),
            }
            for r in comparison.runs
        ],  # fmt: skip
        "n_files": len(comparison.files),
        "left_out_files": list(comparison.only_in),
    }
    norms = {r.identity.get("norm.name") for r in comparison.runs} - {None}
    run = init_wandb(
        out_dir, config, project=project, group=group, job_type="compare", mode=mode,
        tags=[f"norm:{n}" for n in sorted(norms)],
    )  # fmt: skip
    try:
        data = {
            "compare/summary": wandb.Table(dataframe=comparison.summary),
            "compare/per_file": wandb.Table(dataframe=comparison.per_file),
            "compare/relative_diff": wandb.Table(dataframe=comparison.relative_diff),
            "compare/seed_means": wandb.Table(dataframe=comparison.run_means),
        }
        data.update(
            {f"compare/{p.stem}": wandb.Image(str(p)) for p in paths.values() if p.suffix == ".png"}
        )
        run.log(data)
        for _, row in comparison.summary.iterrows():
            prefix = (
                f"compare/{row['b']}_vs_{row['a']}{gain_suffix(row['gain_db'])}/{row['metric']}"
            )
            for key in WANDB_SUMMARY_KEYS:
                run.summary[f"{prefix}/{key}"] = float(row[key])
            run.summary[f"{prefix}/seed_spread_known"] = row["seed_spread"] == "known"
    finally:
        run.finish()
