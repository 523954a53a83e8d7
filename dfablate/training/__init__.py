"""Training a DeepFilterNet variant.

- `module`: `DfnSystem`, the LightningModule (step, loss, validation);
- `schedule`: the DFN3 optimiser and its per-step schedules (`RecipeSchedule`);
- `checkpoints`: what a checkpoint means (identity, loading) and `RunCheckpoints`;
- `callbacks`: W&B media (`WandbMedia`);
- `task`: the Hydra task behind `dfablate train` (`train`, `run_cli`, `check_run`).
"""

from __future__ import annotations

from importlib import import_module

# Hydra configs name these `_target_`s, and every recorded run config keeps the string (evaluate
# instantiates it again, and it is part of the variant key), so they resolve here, on first use.
CONFIG_TARGETS = {"RunCheckpoints": "checkpoints", "WandbMedia": "callbacks"}


def __getattr__(name: str):
    if name not in CONFIG_TARGETS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{CONFIG_TARGETS[name]}"), name)
