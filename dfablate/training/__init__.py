"""Training a DeepFilterNet variant.

- `module`: `DfnSystem`, the one LightningModule: step, loss, validation, the optimiser with its
  per-step schedules, and the checkpoint's `model_identity` (saved, checked, `load_checkpoint`);
  `train` builds it from the config's `system:` node;
- `schedule`: DFN3's per-step LR and weight-decay schedules (`RecipeSchedule`);
- `checkpoints`: the checkpoint format (model identity, RNG states, reading and checking) and
  `RunCheckpoints`; it does not import `module`;
- `callbacks`: W&B media (`WandbMedia`);
- `task`: the Hydra task behind `dfablate train` (`train`, `run_cli`, `check_run`, and `Launch`,
  what DDP needs to know about the `dfablate train` process).
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
