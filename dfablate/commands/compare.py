"""`dfablate compare A B [more...]`: per-file relative differences and statistics vs baseline A."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs file by file (A = baseline)",
        description=(
            "Compare evaluated runs (run directories or their metrics CSVs); the first is the "
            "baseline A. Several seeds per normalisation are grouped and the difference is "
            "checked against the seed-to-seed spread."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directory or metrics CSV")
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/compare/<time>)")
    parser.add_argument("--dataset", help="evaluation dataset name when a run has several")
    parser.add_argument(
        "--label", action="append", help="display name per run, in order (repeat for each run)"
    )
    parser.add_argument(
        "--wandb",
        choices=("auto", "online", "offline", "disabled"),
        default="auto",
        help="log tables and figures to a W&B run in the output folder (default auto: online "
        "with credentials, else offline)",
    )
    parser.add_argument("--wandb-project", default="dfablate", help="W&B project")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dfablate.compare import (
        compare_runs,
        default_out_dir,
        load_runs,
        log_comparison_to_wandb,
        print_summary,
        write_outputs,
    )
    from dfablate.paths import check_output_dir

    if args.out is not None:
        check_output_dir(args.out, "--out")
    runs = load_runs(args.runs, dataset=args.dataset, labels=args.label)
    comparison = compare_runs(runs)
    out_dir = args.out or default_out_dir()
    paths = write_outputs(comparison, out_dir)
    log_comparison_to_wandb(comparison, paths, mode=args.wandb, project=args.wandb_project)
    print_summary(comparison, paths["report"])
    return 0
