"""Loading evaluated runs for a comparison: their metrics CSVs, input gains, records
(`EvalRecord`, `RunRecord`), variant keys and variant names."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dfablate.comparison.results import EVAL_DATASET, EVAL_FOLDER, RunMetrics
from dfablate.errors import UserError
from dfablate.records import RUN_NAME, TRAIN_GAINS, EvalRecord, read_summary


def _eval_gain(eval_dir: Path, folder_gain: float = 0.0) -> float:
    """The input gain of an evaluation: summary.json's `input_gain_db`, else the folder's."""
    summary = read_summary(eval_dir)
    return float(summary.get("input_gain_db", folder_gain))


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


def _variant_key(evaluation: EvalRecord) -> dict[str, str]:
    """The run's variant key, plus the dataset it was evaluated on (when the key says anything)."""
    key = dict(evaluation.run.variant_key)
    dataset_name = (evaluation.dataset or {}).get("name")
    csv_path = evaluation.metrics_csv
    if dataset_name is None and csv_path.parent.parent.name == "eval":
        dataset_name = csv_path.parent.name
    if dataset_name is not None and key:
        key[EVAL_DATASET] = EVAL_FOLDER.match(dataset_name)["base"]
    return key


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
    raw = table.set_index("file")[metric_columns]
    scores = raw.apply(pd.to_numeric, errors="coerce")
    not_numbers = scores.isna() & raw.notna()  # a word, not a failed score (empty or nan)
    if not_numbers.any().any():
        file, column = not_numbers.stack().loc[lambda cells: cells].index[0]
        raise UserError(f"{csv_path}: {column} of {file} is {raw.at[file, column]!r}, not a number")
    return scores.astype(float)


def load_evaluation(csv_path: Path, gain_db: float, label: str | None = None) -> RunMetrics:
    """One metrics CSV with its records (the run it lies in, the summary.json beside it)."""
    evaluation = EvalRecord.from_dir(csv_path.parent, csv_path)
    run = evaluation.run
    run_name = run.name if run.has_config or RUN_NAME.match(run.name) else None
    return RunMetrics(
        label=label or run_name or run.label or _default_label(csv_path),
        variant="",
        evaluation=evaluation,
        scores=read_scores(csv_path),
        gain_db=gain_db,
        variant_key=_variant_key(evaluation),
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
    _check_given_once(inputs)
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
    _check_seeds_once(runs)
    _check_same_test_set(runs)
    _check_scored_at_reference(runs)
    return runs, left_out


def _check_given_once(inputs: list[tuple[str, dict[float, Path], bool]]) -> None:
    """Refuse one evaluation given twice (`compare R R`, `compare R1 R1 R2`): it would count
    as two seeds, or as a run compared with itself."""
    seen: dict[Path, str] = {}
    for name, evals, _ in inputs:
        for csv in {path.resolve() for path in evals.values()}:
            if csv in seen:
                what = "given twice" if seen[csv] == name else f"the same run as {seen[csv]}"
                raise UserError(f"{name}: {what} ({csv}); give each run once")
            seen[csv] = name


def _check_seeds_once(runs: list[RunMetrics]) -> None:
    """Refuse two runs of one variant with the same seed (copies, or a retrained run next to
    the original): the t-test would count one seed twice."""
    seen: dict[tuple, RunMetrics] = {}
    for run in runs:
        if run.seed is None:
            continue
        first = seen.setdefault((run.variant, run.seed, run.gain_db), run)
        if first is not run:
            raise UserError(
                f"{first.csv_path} and {run.csv_path}: two runs of variant {run.variant} with "
                f"seed {run.seed}; a seed counts once (give one of them)"
            )


def _check_scored_at_reference(runs: list[RunMetrics]) -> None:
    """Refuse evaluations at a non-zero gain scored the old way (reference scaled too): their
    composite scores carry level artefacts. At 0 dB both conventions coincide; a bare CSV
    (no summary.json) is taken as it is."""
    old = [r for r in runs if r.gain_db != 0 and r.has_summary and r.scored_at != "reference"]
    if old:
        where = ", ".join(r.where for r in old)
        commands = "; ".join(
            f"dfablate evaluate run={_run_dir_of(r)} input_gain_db={r.gain_db:g}" for r in old
        )
        raise UserError(
            f"{where}: scored before pipeline version 3 (clean reference scaled with the input), "
            f"not comparable with scores at the reference level; re-score with: {commands}"
        )


def _run_dir_of(run: RunMetrics) -> Path:
    """The run directory of an evaluation `<run>/eval/<dataset>/metrics.csv` (else its folder)."""
    folder = run.csv_path.parent
    return folder.parent.parent if folder.parent.name == "eval" else folder


def _name_variants(runs: list[RunMetrics], labels: list[str] | None) -> None:
    """Set each run's variant (and make labels unique): by label, else by variant key."""
    if labels:
        by_label: dict[str, RunMetrics] = {}
        for run in runs:
            first = by_label.setdefault(run.label, run)
            differs = _differing_keys([first.variant_key, run.variant_key])
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
            key = json.dumps(run.variant_key or {"label": run.label}, sort_keys=True)
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


def _differing_keys(keys: list[dict]) -> list[str]:
    names = sorted(set().union(*keys))
    return [n for n in names if len({key.get(n) for key in keys}) > 1]


def _variant_names(representatives: list[RunMetrics]) -> list[str]:
    """Name each variant by what sets it apart: norm, then the config group choices or values
    that differ (`fixed/dfn2`), training gains, experiment, evaluation dataset. Runs known only
    by a label (a plain CSV, an upstream model) keep it."""
    configured = [r for r in representatives if r.variant_key and "label" not in r.variant_key]
    differs = _differing_keys([r.variant_key for r in configured]) if len(configured) > 1 else []
    names = []
    for run in representatives:
        if run not in configured:
            names.append(run.variant_key.get("label", run.label))
        elif not differs:
            names.append(run.variant_key.get("norm.name", run.label))
        else:
            names.append("/".join(_name_parts(run, differs, configured)))
    return _unique(names)


# optim: a group since issue 12 (runs before it have no such choice); a different optimiser
# setting still names a variant through its differing key (lr=...).
NOT_NAMING_GROUPS = ("norm", "experiment", "logger", "callbacks", "optim")


def _group_choices(run: RunMetrics) -> dict[str, str]:
    """The run's config group choices that can define a variant (model, data, trainer, ...)."""
    choices = {g: c for g, c in run.choices.items() if g not in NOT_NAMING_GROUPS and "/" not in g}
    if "model" not in choices and "model.arch" in run.variant_key:
        choices["model"] = run.variant_key["model.arch"]
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
        return all(values.setdefault(chosen(r), r.variant_key.get(key)) == r.variant_key.get(key)
                   for r in configured)  # fmt: skip

    special = ("norm.name", TRAIN_GAINS, "name", EVAL_DATASET)
    parts = [run.variant_key.get("norm.name", "-")] if "norm.name" in differs else []
    parts += [_group_choices(run).get(g, "-") for g in groups]
    parts += [
        f"{key.split('.')[-1]}={run.variant_key.get(key, '-')}"
        for key in differs
        if key not in special and not (groups and explained(key))
    ]
    if TRAIN_GAINS in differs:
        parts.append(f"train gains {_gains_text(run.variant_key[TRAIN_GAINS])}")
    parts += [run.variant_key.get(key, "-") for key in ("name", EVAL_DATASET) if key in differs]
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


def describe_variant(run: RunMetrics) -> dict[str, str]:
    """What defines a run's variant, for the report: norm, model, data, experiment, training
    gains, evaluation dataset (what is unknown is left out)."""
    key, choices = run.variant_key, run.choices
    described = {
        "norm": key.get("norm.name"),
        "model": choices.get("model") or key.get("model.arch"),
        "data": choices.get("data"),
        "experiment": key.get("name"),
        "training gains": _gains_text(key[TRAIN_GAINS]) if TRAIN_GAINS in key else None,
        "eval dataset": key.get(EVAL_DATASET),
        "source": key.get("label"),
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
