"""The W&B Report of a comparison as a plain JSON spec (`compare/wandb_report.json`).

The spec is written without network, credentials or wandb-workspaces: it names the runs by
their W&B records (`dfablate.tracking.record_wandb_run`: project, group, job_type, id) and the
keys they log, and leaves the entity and the app URL as `{entity}` / `{app_url}` placeholders
resolved when the Report is built (`dfablate.wandb_report.build`) at save or push time.

Sections, in order: the headline (answer sentences, summary table), per metric a bar chart of
the variants' means grouped by norm with the spread over seeds (one per input gain), the
robustness figure, a parallel-coordinates panel (norm, seed, each metric at 0 dB), the merged
per-file table, the training curves, and links. Panels over evaluation and training runs need
run folders logged to W&B; with bare metrics CSVs the Report keeps the compare run's sections.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dfablate.comparison.report import markdown_table
from dfablate.comparison.results import Comparison, gain_suffix
from dfablate.tracking import recorded_wandb_run

SPEC_FILE = "wandb_report.json"
SPEC_FORMAT = "dfablate-wandb-report"
SPEC_VERSION = 1
PER_FILE_RUNS_KEY = "compare/per_file_runs"  # the merged per-file table the compare run logs
SUMMARY_KEY = "compare/summary"
ROBUSTNESS_KEY = "compare/robustness"
REPORT_URL_KEY = "compare/report_url"  # where the compare run's summary keeps the Report's URL
GROUP_BY = "norm.name"  # eval and training runs' config key of the normalisation
SPREAD = "stddev"  # the spread over seeds drawn around each group's mean
STEP_KEY = "trainer/global_step"
TRAINING_CURVES = ("train/loss", "val/loss")
# Summary columns shown in the headline table when present (today's and issue 16's)
HEADLINE_COLUMNS = (
    "variant", "gain_db", "metric", "primary", "a_mean", "b_mean", "mean_diff", "ci95_low",
    "ci95_high", "ci90_low", "ci90_high", "margin", "tost_p", "p_holm", "verdict", "a_seeds",
    "b_seeds", "seed_corr",
)  # fmt: skip


def headline_markdown(summary: pd.DataFrame, answers: Sequence[str] = ()) -> str:
    """The headline section's text: one bullet per answer sentence, then the summary table
    with whichever of HEADLINE_COLUMNS the comparison's summary has (verdict, interval, seeds)."""
    columns = [c for c in HEADLINE_COLUMNS if c in summary.columns]
    lines = [f"- {sentence}" for sentence in answers]
    if lines:
        lines.append("")
    lines.append(markdown_table(summary[columns]))
    return "\n".join(lines)


def merged_per_file(comparison: Comparison) -> pd.DataFrame:
    """One row per file x evaluated run: file, variant, seed, gain_db, every metric, and per
    metric `<metric>_b_minus_a`: the run's score minus the baseline's mean over its seeds on that
    file at that gain (the compare run logs it as PER_FILE_RUNS_KEY)."""
    c = comparison
    frames = []
    for gain in c.gains:
        at_gain = [r for r in c.runs if r.gain_db == gain]
        baseline = [r.scores.loc[c.files, c.metrics] for r in at_gain if r.variant == c.baseline]
        baseline_mean = sum(baseline) / len(baseline)
        for run in at_gain:
            scores = run.scores.loc[c.files, c.metrics]
            frame = pd.DataFrame(
                {"file": c.files, "variant": run.variant, "seed": run.seed, "gain_db": gain}
            )
            for metric in c.metrics:
                frame[metric] = scores[metric].to_numpy()
            for metric in c.metrics:
                diff = scores[metric] - baseline_mean[metric]
                frame[f"{metric}_b_minus_a"] = diff.to_numpy()
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def eval_key(run, metric: str) -> str | None:
    """The summary key an evaluation run logs `metric` under (`eval/<dataset>[@<G>dB]/<m>`)."""
    if not run.dataset or "name" not in run.dataset:
        return None
    gain = gain_suffix(run.gain_db)
    return f"eval/{run.dataset['name']}{gain}/{metric}"


def _runsets(records: list[dict], kind: str, label: str) -> list[dict]:
    """One runset per (project, group) of the records of one kind: filtered by group and
    job_type, with the run ids it should select."""
    sets: dict[tuple, dict] = {}
    for record in records:
        key = (record["project"], record["group"])
        entry = sets.setdefault(
            key,
            {
                "kind": kind,
                "name": f"{label} ({record['group']})" if record["group"] else label,
                "project": record["project"],
                "group": record["group"],
                "job_type": record["job_type"],
                "runs": [],
            },
        )
        entry["runs"].append(record["id"])
    return list(sets.values())


def _training_dir(csv_path: Path) -> Path:
    """The run directory of `<run>/eval/<dataset>/metrics.csv`."""
    return csv_path.parent.parent.parent


def study_runs(comparison: Comparison, compare_dir: Path) -> dict[str, list[dict]]:
    """The W&B records of the study's runs: training, evaluation (one per run x gain), compare."""
    evals, trains, seen = [], [], set()
    for run in comparison.runs:
        record = recorded_wandb_run(run.csv_path.parent)
        if record is not None:
            evals.append({**record, "label": run.label, "gain_db": run.gain_db})
        train_dir = _training_dir(run.csv_path)
        train = recorded_wandb_run(train_dir) if run.csv_path.parent.parent.name == "eval" else None
        if train is not None and train["id"] not in seen:
            seen.add(train["id"])
            trains.append({**train, "label": run.label})
    compare = recorded_wandb_run(compare_dir)
    return {"train": trains, "eval": evals, "compare": [compare] if compare else []}


def build_spec(
    comparison: Comparison,
    compare_dir: Path,
    *,
    project: str,
    command: str,
    answers: Sequence[str] = (),
) -> dict[str, Any]:
    """The Report's spec for `comparison`, whose outputs (and compare run) are in `compare_dir`.

    `answers`: the answer sentence of each contrast, shown first in the headline.
    """
    c = comparison
    runs = study_runs(c, compare_dir)
    runsets = [
        *_runsets(runs["compare"], "compare", "compare run"),
        *_runsets(runs["eval"], "eval", "evaluation runs"),
        *_runsets(runs["train"], "train", "training runs"),
    ]
    logged_evals = {(r["label"], r["gain_db"]) for r in runs["eval"]}
    blocks: list[dict[str, Any]] = [
        {"type": "h1", "text": "Headline"},
        {"type": "markdown", "text": headline_markdown(c.summary, answers)},
    ]
    if runs["compare"]:
        blocks.append(_grid("compare", [{"type": "table", "key": SUMMARY_KEY, "w": 24, "h": 10}]))
    blocks += _metric_sections(c, logged_evals)
    if runs["compare"] and len(c.gains) > 1:
        blocks += [
            {"type": "h1", "text": "Robustness to input gain"},
            _grid("compare", [{"type": "media", "keys": [ROBUSTNESS_KEY], "w": 24, "h": 10}]),
        ]
    blocks += _parallel_section(c, logged_evals)
    if runs["compare"]:
        blocks += [
            {"type": "h1", "text": "Per file"},
            {
                "type": "markdown",
                "text": "Every file of every run: its scores, and per metric `<metric>_b_minus_a`"
                " (the run's score minus the baseline's mean over its seeds on that file).",
            },
            _grid("compare", [{"type": "table", "key": PER_FILE_RUNS_KEY, "w": 24, "h": 12}]),
        ]
    if runs["train"]:
        curves = [
            {"type": "line", "title": f"{key} by norm (mean, band: {SPREAD} over seeds)",
             "x": STEP_KEY, "y": [key], "groupby": GROUP_BY, "rangefunc": SPREAD}
            for key in TRAINING_CURVES
        ]  # fmt: skip
        blocks += [{"type": "h1", "text": "Training curves"}, _grid("train", curves)]
    blocks += [{"type": "h1", "text": "Links"}, {"type": "markdown", "text": _links(runs, command)}]
    return {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "entity": None,  # resolved when the Report is saved (the account's default entity)
        "project": project,
        "title": f"{', '.join(c.variants[1:])} vs {c.baseline}"[:128],
        "description": f"dfablate comparison in {compare_dir}",
        "command": command,
        "runs": runs,
        "runsets": runsets,
        "blocks": blocks,
    }


def _grid(kind: str, panels: list[dict]) -> dict[str, Any]:
    return {"type": "panels", "runsets": kind, "panels": panels}


def _metric_sections(c: Comparison, logged: set) -> list[dict[str, Any]]:
    """Per metric, one bar chart per input gain: eval runs grouped by norm, mean and spread."""
    blocks: list[dict[str, Any]] = []
    for metric in c.metrics:
        panels = []
        for gain in c.gains:
            keys = {eval_key(r, metric) for r in c.runs if r.gain_db == gain}
            keys.discard(None)
            if len(keys) != 1 or not any(g == gain for _, g in logged):
                continue
            panels.append(
                {
                    "type": "bar",
                    "title": f"{metric} at {gain:+g} dB: mean by norm ({SPREAD} over seeds)",
                    "metrics": [keys.pop()],
                    "groupby": GROUP_BY,
                    "rangefunc": SPREAD,
                }
            )
        if panels:
            blocks += [{"type": "h2", "text": metric}, _grid("eval", panels)]
    if blocks:
        blocks.insert(0, {"type": "h1", "text": "Per metric"})
    return blocks


def _parallel_section(c: Comparison, logged: set) -> list[dict[str, Any]]:
    """Norm and seed against each metric, at 0 dB (else the first gain compared)."""
    gain = 0.0 if 0.0 in c.gains else c.gains[0]
    if not any(g == gain for _, g in logged):
        return []
    keys = []
    for metric in c.metrics:
        found = {eval_key(r, metric) for r in c.runs if r.gain_db == gain} - {None}
        if len(found) == 1:
            keys.append(found.pop())
    columns = [{"config": GROUP_BY}, {"config": "seed"}, *({"summary": k} for k in keys)]
    panel = {"type": "parallel", "title": f"norm, seed and metrics at {gain:+g} dB",
             "columns": columns, "w": 24, "h": 10}  # fmt: skip
    return [{"type": "h1", "text": "Norm and seed against every metric"}, _grid("eval", [panel])]


def _links(runs: dict[str, list[dict]], command: str) -> str:
    """Markdown links to the compare and eval runs ({app_url}/{entity} resolved at build)."""
    lines = []
    for record in runs["compare"]:
        lines.append(f"- compare run: [{record['name']}]({_run_url(record)})")
    for record in runs["eval"]:
        where = record["label"] + gain_suffix(record["gain_db"])
        lines.append(f"- evaluation {where}: [{record['name']}]({_run_url(record)})")
    if not runs["eval"]:
        lines.append(
            "- the compared runs have no W&B evaluation runs (metrics CSVs, or W&B disabled): "
            "the per-metric, parallel-coordinates and training panels need them"
        )
    lines += ["", "The command that produced this comparison:", "", f"    {command}"]
    return "\n".join(lines)


def _run_url(record: dict) -> str:
    return f"{{app_url}}/{{entity}}/{record['project']}/runs/{record['id']}"


def write_spec(spec: dict[str, Any], compare_dir: Path) -> Path:
    """`compare_dir/wandb_report.json`."""
    path = Path(compare_dir) / SPEC_FILE
    path.write_text(json.dumps(spec, indent=1, allow_nan=False) + "\n")
    return path


def read_spec(compare_dir: Path) -> dict[str, Any] | None:
    """The spec in `compare_dir`, None when there is none or it is not a dfablate Report spec."""
    path = Path(compare_dir) / SPEC_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return spec if isinstance(spec, dict) and spec.get("format") == SPEC_FORMAT else None
