"""Training a DeepFilterNet variant.

- `module`: `DfnSystem`, the LightningModule (step, loss, validation);
- `schedule`: the DFN3 optimiser and its per-step schedules (`RecipeSchedule`);
- `checkpoints`: what a checkpoint means (identity, loading) and `RunCheckpoints`;
- `callbacks`: W&B media (`WandbMedia`);
- `task`: the Hydra task behind `dfablate train` (`train`, `run_cli`, `check_run`).
"""

from dfablate.training.callbacks import WandbMedia
from dfablate.training.checkpoints import (
    IDENTITY_KEY,
    IDENTITY_VERSION,
    CheckpointIdentity,
    CheckpointMismatchError,
    NonFiniteTrainingError,
    RunCheckpoints,
    check_identity,
    checkpoint_identity,
    model_identity,
    read_checkpoint,
)
from dfablate.training.module import DfnSystem
from dfablate.training.schedule import RecipeOptimisation, RecipeSchedule, optim_recipe
from dfablate.training.task import check_run, compose_train_config, run_cli, train

__all__ = [
    "IDENTITY_KEY",
    "IDENTITY_VERSION",
    "CheckpointIdentity",
    "CheckpointMismatchError",
    "DfnSystem",
    "NonFiniteTrainingError",
    "RecipeOptimisation",
    "RecipeSchedule",
    "RunCheckpoints",
    "WandbMedia",
    "check_identity",
    "check_run",
    "checkpoint_identity",
    "compose_train_config",
    "model_identity",
    "optim_recipe",
    "read_checkpoint",
    "run_cli",
    "train",
]
