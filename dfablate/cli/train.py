"""`dfablate train [hydra overrides]`: train a DeepFilterNet variant (Lightning + Hydra)."""

from __future__ import annotations

import argparse

from dfablate.cli.help import add_hydra_stage, print_help

EPILOG = """\
examples:
  dfablate train data=mini model=dfn3_tiny trainer=cpu        # a few minutes on a laptop
  dfablate train norm=fixed trainer=gpu                        # DFN3 recipe on Valentini
  dfablate train -m norm=original,fixed seed=0,1 trainer=gpu   # a sweep: four runs
  dfablate train -m norm=original,fixed seed=0,1 trainer=gpu runs_per_device=4 data.preload=device
                                                               # four runs at once per GPU
  dfablate train norm=fixed trainer=gpu resume=true            # continue a killed run
  dfablate train --cfg job data=mini                           # print the composed config
  dfablate train --config-dir ~/my-configs norm=my_norm        # configs of your own (norm/,
                                                               # model/, experiment/, ...)

Arguments after `train` are Hydra overrides (groups: norm, model, data, trainer, logger,
callbacks, experiment, optim, hydra/launcher); `--config-dir DIR` adds a folder of your own
config files to the shipped ones. Runs go to outputs/<name>/<norm>-seed<seed>/.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_hydra_stage(
        subparsers,
        "train",
        summary="train a DeepFilterNet variant (Hydra overrides; -m for a sweep)",
        description="Train DeepFilterNet with the normalisation chosen by norm=<name>.",
        epilog=EPILOG,
        handler=run,
    )


def run(args: argparse.Namespace) -> int:
    if args.help:
        return print_help(args, "train")
    from dfablate.training.task import run_cli

    return run_cli(args.overrides)
