"""A comparison's W&B Report: its spec (`spec`), the wandb-workspaces objects (`build`), and
saving or pushing it (`publish`). wandb-workspaces is the optional `wandb-report` extra."""

from dfablate.wandb_report.build import build_report, require_workspaces
from dfablate.wandb_report.publish import ReportPublisher, check_push, push, save_report
from dfablate.wandb_report.spec import SPEC_FILE, build_spec, headline_markdown, read_spec

__all__ = [
    "SPEC_FILE",
    "ReportPublisher",
    "build_report",
    "build_spec",
    "check_push",
    "headline_markdown",
    "push",
    "read_spec",
    "require_workspaces",
    "save_report",
]
