"""`dfablate evaluate run=DIR|ckpt=FILE|upstream=DIR [overrides]`: enhance and score a test set."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  dfablate evaluate run=outputs/demo/fixed-seed0          # best.ckpt on the run's own data
  dfablate evaluate run=outputs/norm_ablation/fixed-seed0 data=valentini save_enhanced=true
  dfablate evaluate ckpt=model.ckpt expect_norm=fixed jobs=8
  dfablate evaluate upstream=DeepFilterNet3 data=valentini  # a released model folder (config.ini
                                                            # + checkpoints/), norm=original

Writes <run dir or upstream folder>/eval/<dataset>/metrics.csv
(file,pesq,stoi,csig,cbak,covl,ssnr,sisdr,error) and summary.json; an interrupted evaluation
resumes with the files still missing. Arguments are Hydra overrides of configs/evaluate.yaml.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="enhance and score a test set with a checkpoint (Hydra overrides)",
        description="Enhance every test utterance with a checkpoint and score it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from dfablate.evaluation import compose_config, evaluate_from_config, summary_table

    cfg = compose_config("evaluate", args.overrides)
    evaluation = evaluate_from_config(cfg, args.overrides)
    console = Console()
    console.print(summary_table(evaluation))
    console.print(f"per-file scores: {evaluation.metrics_csv}")
    return 0
