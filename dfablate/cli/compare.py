"""`dfablate compare A B [more...]`: B - A per metric against seed-to-seed spread, per file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs against a baseline (A), seed-aware",
        description=(
            "Compare evaluated runs (run directories or their metrics CSVs); the first variant is "
            "the baseline A. Runs that differ only in the seed form one variant; B - A comes "
            "with a 95 %% interval and p-value from a t-test on per-run means (paired by seed "
            "when both variants have the same seeds), two one-sided tests at each metric's "
            "margin and a verdict (equivalent, B better, A better, inconclusive)."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directory or metrics CSV")
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/compare/<time>)")
    parser.add_argument(
        "--dataset", help="evaluation dataset name when a run has several (its @<G>dB gains too)"
    )
    parser.add_argument(
        "--gain-db",
        type=float,
        help="compare only this input gain (default: every gain all runs were evaluated at)",
    )
    parser.add_argument(
        "--label",
        action="append",
        help="variant name per run, in order (repeat for each run; same name: same variant)",
    )
    parser.add_argument(
        "--unpaired-test",
        choices=("student", "welch"),
        default="student",
        help="t-test when seeds cannot be paired (default student: calibrated at 2-3 seeds; "
        "welch allows unequal spreads but is conservative at 2-3 seeds)",
    )
    parser.add_argument(
        "--primary",
        default="pesq@0",
        metavar="METRIC@GAIN",
        help="the primary endpoint, the one answer (default pesq@0): Holm over the contrasts",
    )
    parser.add_argument(
        "--margin",
        action="append",
        metavar="METRIC=VALUE",
        help="smallest effect of interest in the metric's units (repeatable; defaults: pesq, "
        "csig, cbak, covl 0.05, stoi 0.005, ssnr 0.5, sisdr 0.3): equivalence when the 90 %% "
        "interval lies inside +-margin",
    )
    parser.add_argument(
        "--pairing",
        choices=("auto", "paired", "unpaired"),
        default="auto",
        help="pair runs by seed: auto (when both variants have the same seeds), paired "
        "(require it), unpaired",
    )
    parser.add_argument(
        "--contrast",
        action="append",
        metavar="B:A",
        help="a contrast to test, B against A (repeatable; default: each variant against the "
        "first)",
    )
    parser.add_argument(
        "--wandb",
        choices=("auto", "online", "offline", "disabled"),
        default="auto",
        help="log tables and figures to a W&B run in the output folder (default auto: online "
        "with credentials, else offline)",
    )
    parser.add_argument("--wandb-project", default="dfablate", help="W&B project")
    parser.add_argument(
        "--wandb-report",
        action="store_true",
        help="build the study's W&B Report: saved (URL printed) when W&B is online, else "
        "written as wandb_report.json in the output folder for `dfablate wandb-report push` "
        "(needs the wandb-report extra)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dfablate.comparison.design import parse_design
    from dfablate.comparison.loading import load_runs
    from dfablate.comparison.report import default_out_dir, print_summary, write_outputs
    from dfablate.comparison.stats import compare_runs
    from dfablate.paths import check_output_dir
    from dfablate.wandb_settings import wandb_mode

    if args.out is not None:
        check_output_dir(args.out, "--out")
    if args.wandb_report:
        from dfablate.wandb_report.build import require_workspaces

        require_workspaces()
    design = parse_design(args.primary, args.margin, args.pairing, args.contrast)
    runs, left_out_gains = load_runs(
        args.runs, dataset=args.dataset, labels=args.label, gain_db=args.gain_db
    )
    comparison = compare_runs(runs, left_out_gains, unpaired=args.unpaired_test, design=design)
    out_dir = args.out or default_out_dir()
    paths = write_outputs(comparison, out_dir)
    publisher = None
    if args.wandb_report:
        from dfablate.wandb_report.publish import ReportPublisher, command_line

        publisher = ReportPublisher(
            comparison, out_dir, project=args.wandb_project, command=command_line(args.argv)
        )
    if wandb_mode(args.wandb) != "disabled":  # wandb itself is imported only to log
        from dfablate.comparison.wandb_log import log_comparison_to_wandb

        log_comparison_to_wandb(
            comparison, paths, mode=args.wandb, project=args.wandb_project, on_run=publisher
        )
    elif publisher is not None:
        publisher(None)  # the Report's spec only, as log_comparison_to_wandb does when disabled
    print_summary(comparison, paths["report"])
    if publisher is not None:
        print(publisher.message())
    return 0
