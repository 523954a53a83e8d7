"""`dfablate ablate [experiment=...] [overrides]`: train, evaluate and compare every variant."""

from __future__ import annotations

import argparse

from dfablate.cli.help import add_hydra_stage, print_help

EPILOG = """\
examples:
  dfablate ablate experiment=demo                         # mini corpus, tiny model, CPU (make demo)
  dfablate ablate experiment=norm_ablation trainer=gpu    # the real study on Valentini
  dfablate ablate experiment=norm_ablation hydra/launcher=joblib seed=0,1
  dfablate ablate experiment=demo ablate.evaluate.jobs=8 ablate.wandb.mode=offline

Runs `dfablate train -m` over the experiment's norm x seed sweep, evaluates each run on the test
split and compares them (baseline: the first norm). Run it again to resume: finished stages are
skipped. Arguments are training overrides, except ablate.<key>=<value> (configs/ablate.yaml);
`--config-dir DIR` adds a folder of your own configs (experiment/, norm/, ...).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_hydra_stage(
        subparsers,
        "ablate",
        summary="train, evaluate and compare every variant x seed of an experiment",
        description="The whole ablation in one command; resumes where it stopped.",
        epilog=EPILOG,
        handler=run,
    )


def run(args: argparse.Namespace) -> int:
    if args.help:
        return print_help(args, "ablate")
    from dfablate.ablate import run_ablation

    return run_ablation(args.overrides)
