"""`dfablate wandb-report push COMPARE_DIR`: publish a comparison's W&B Report written offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "wandb-report",
        help="publish a comparison's W&B Report (wandb_report.json) once online",
        description=(
            "push COMPARE_DIR: save the W&B Report that `compare --wandb-report` (or ablate) "
            "wrote as COMPARE_DIR/wandb_report.json while offline, in the account's default "
            "entity. Needs W&B credentials and the study's runs uploaded with `wandb sync`; "
            "prints the URL and adds it to report.md and the compare run's summary."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    push = actions.add_parser("push", help="save the Report of COMPARE_DIR/wandb_report.json")
    push.add_argument("compare_dir", type=Path, metavar="COMPARE_DIR")
    push.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dfablate.wandb_report.publish import push

    print(f"W&B Report: {push(args.compare_dir)}")
    return 0
