"""Publishing a comparison's W&B Report: saved at once when the compare run is online, else
written as `wandb_report.json` and pushed later by `dfablate wandb-report push COMPARE_DIR`.

Every W&B API call goes through wandb-workspaces' own API accessor (`interface._get_api`), the
one place tests replace to stand in for the server.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfablate.comparison.report import answers as answer_sentences
from dfablate.errors import UserError
from dfablate.tracking import is_synced, offline_run_files
from dfablate.wandb_report.build import EXTRA_HINT, build_report, require_workspaces
from dfablate.wandb_report.spec import REPORT_URL_KEY, SPEC_FILE, build_spec, read_spec, write_spec
from dfablate.wandb_settings import has_wandb_credentials


def command_line(arguments: Sequence[str]) -> str:
    """The `dfablate` command with these arguments, as a shell would take it."""
    return shlex.join(["dfablate", *arguments])


class ReportPublisher:
    """Called by `log_comparison_to_wandb` with the compare run before it finishes (None when W&B
    is disabled): writes the spec and, when the run is online, saves the Report, prints its URL
    and records it in report.md and in the run's summary."""

    def __init__(self, comparison, out_dir: Path, *, project: str, command: str, answers=None):

        self.comparison = comparison
        self.out_dir = Path(out_dir)
        self.project = project
        self.command = command
        # the headline's sentences: one answer per contrast, as report.md opens
        self.answers = list(answer_sentences(comparison) if answers is None else answers)
        self.spec_path: Path | None = None
        self.url: str | None = None

    def message(self) -> str:
        """Where the W&B Report went: its URL, or its spec and how to push it."""
        if self.url:
            return f"W&B Report: {self.url}"
        return (
            f"W&B Report spec: {self.spec_path} (after `wandb sync`, publish it with "
            f"`dfablate wandb-report push {self.spec_path.parent}`)"
        )

    def __call__(self, run: Any | None) -> None:
        spec = build_spec(
            self.comparison, self.out_dir, project=self.project, command=self.command,
            answers=self.answers,
        )  # fmt: skip
        self.spec_path = write_spec(spec, self.out_dir)
        if run is None or run.offline:
            return
        try:
            self.url = save_report(spec, entity=run.entity)
        except Exception as exc:  # the comparison stands; the spec can be pushed later
            warnings.warn(
                f"the W&B Report could not be saved ({type(exc).__name__}: {exc}); publish it "
                f"later with `dfablate wandb-report push {self.out_dir}`",
                stacklevel=2,
            )
            return
        run.summary[REPORT_URL_KEY] = self.url
        record_url(self.out_dir, self.url)


def save_report(spec: dict[str, Any], entity: str | None = None) -> str:
    """Save the Report of `spec` in `entity` (default: the account's) and return its URL."""
    from wandb_workspaces._graphql import get_app_url
    from wandb_workspaces.reports.v2 import interface

    api = interface._get_api()
    entity = entity or spec.get("entity") or api.default_entity
    report = build_report(spec, entity, get_app_url(api)).save()
    return report.url


def record_url(compare_dir: Path, url: str) -> None:
    """Add the Report's URL at the end of report.md (once)."""
    report = Path(compare_dir) / "report.md"
    line = f"W&B Report: {url}"
    text = report.read_text() if report.is_file() else ""
    if line not in text:
        report.write_text(text.rstrip("\n") + f"\n\n{line}\n")


def unsynced_runs(spec: dict[str, Any]) -> list[str]:
    """Folders of the spec's offline runs that `wandb sync` has not uploaded yet."""
    missing = []
    for records in spec["runs"].values():
        for record in records:
            if record.get("mode") != "offline":
                continue
            files = offline_run_files(record["dir"], record["id"])
            if not files or not all(is_synced(f) for f in files):
                missing.append(str(Path(record["dir"]) / "wandb"))
    return missing


def check_push(compare_dir: Path) -> dict[str, Any]:
    """The spec to push from `compare_dir`; UserError (one line) when it cannot be pushed:
    no spec, no credentials, runs not synced, wandb-workspaces missing."""
    spec = read_spec(compare_dir)
    if spec is None:
        raise UserError(
            f"{compare_dir}: no {SPEC_FILE} (write one with `dfablate compare ... --wandb-report`)"
        )
    if not has_wandb_credentials():
        raise UserError(
            "no W&B credentials: run `wandb login` (or set WANDB_API_KEY), then push again"
        )
    unsynced = unsynced_runs(spec)
    if unsynced:
        shown = " ".join(unsynced[:3]) + (
            f" and {len(unsynced) - 3} more" if len(unsynced) > 3 else ""
        )
        raise UserError(
            f"{len(unsynced)} runs of this study are not synced to W&B yet: run `wandb sync` "
            f"on {shown}, then push again"
        )
    try:
        require_workspaces("wandb-report push")
    except UserError:
        raise UserError(f"wandb-report push needs wandb-workspaces: {EXTRA_HINT}") from None
    return spec


def push(compare_dir: Path) -> str:
    """Save the Report of `compare_dir/wandb_report.json`; its URL goes to report.md and to the
    compare run's summary. Returns the URL."""
    from wandb_workspaces.reports.v2 import interface

    spec = check_push(compare_dir)
    url = save_report(spec)
    for record in spec["runs"]["compare"]:
        api = interface._get_api()
        entity = record.get("entity") or api.default_entity
        run = api.run(f"{entity}/{record['project']}/{record['id']}")
        run.summary.update({REPORT_URL_KEY: url})
    record_url(compare_dir, url)
    return url
