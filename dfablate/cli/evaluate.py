"""`dfablate evaluate run=DIR|ckpt=FILE|upstream=DIR [overrides]`: enhance and score a test set."""

from __future__ import annotations

import argparse

from dfablate.cli.help import add_hydra_stage, print_help

EPILOG = """\
examples:
  dfablate evaluate run=outputs/demo/fixed-seed0          # best.ckpt on the run's own data
  dfablate evaluate run=outputs/norm_ablation/fixed-seed0 data=valentini save_enhanced=true
  dfablate evaluate ckpt=model.ckpt expect_norm=fixed jobs=8
  dfablate evaluate run=outputs/demo/fixed-seed0 input_gain_db=-20   # -> eval/<dataset>@-20dB
  dfablate evaluate upstream=DeepFilterNet3 data=valentini  # a released model folder (config.ini
                                                            # + checkpoints/), norm=original

Writes <run dir or upstream folder>/eval/<dataset>/metrics.csv
(file,pesq,stoi,csig,cbak,covl,ssnr,sisdr,error) and summary.json; an interrupted evaluation
resumes with the files still missing. input_gain_db=G scales the model's input by
g = 10^(G/20) and scores its output divided by g against the unscaled clean reference (results in
eval/<dataset>@<G>dB; summary.json says scored_at: reference). Arguments are Hydra overrides of
configs/evaluate.yaml (`--config-dir DIR` adds a folder of your own data configs).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_hydra_stage(
        subparsers,
        "evaluate",
        summary="enhance and score a test set with a checkpoint (Hydra overrides)",
        description="Enhance every test utterance with a checkpoint and score it.",
        epilog=EPILOG,
        handler=run,
    )


def run(args: argparse.Namespace) -> int:
    if args.help:
        return print_help(args, "evaluate")
    from rich.console import Console

    from dfablate.config import compose_config
    from dfablate.errors import Interrupted
    from dfablate.evaluation.command import evaluate_from_config, summary_table

    cfg = compose_config("evaluate", args.overrides)
    try:
        evaluation = evaluate_from_config(cfg, args.overrides)
    except KeyboardInterrupt:
        raise Interrupted(
            "the files scored so far are kept; continue with: "
            + " ".join(["dfablate evaluate", *args.overrides])
        ) from None
    console = Console()
    console.print(summary_table(evaluation))
    console.print(f"per-file scores: {evaluation.metrics_csv}")
    return 0
