"""What a dfablate checkpoint means, and the checkpoints a run keeps.

A checkpoint carries its model identity under the key "dfablate": the normalisation, the
feature parameters and the architecture with all resolved model parameters. `DfnSystem` writes
it with the RNG states (`checkpoint_state`) and restores both; `DfnSystem.load_checkpoint`
rebuilds exactly that model and refuses a contradicting expectation (`CheckpointMismatchError`).
This module knows the checkpoint format, not the LightningModule (it does not import it).
`RunCheckpoints` keeps `best.ckpt` (validation loss) and `last.ckpt` (every N steps, after each
validation and on interruption) so a killed run resumes.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from dfablate.errors import UserError
from dfablate.features import FEATURE_PARAMS
from dfablate.models.build import resolved_model_params
from dfablate.models.params import ModelConfigError

IDENTITY_KEY = "dfablate"
IDENTITY_VERSION = 1


class NonFiniteTrainingError(UserError):
    """Too many non-finite batches in a row; the last good checkpoint is kept."""


class CheckpointMismatchError(UserError):
    """A checkpoint loaded with an expectation that contradicts its stored model identity."""


def model_identity(norm: str, arch: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What defines a trained model: norm, feature parameters, arch and all model parameters."""
    try:
        resolved = resolved_model_params(arch, **params)
    except ModelConfigError as exc:
        raise UserError(f"model config: {exc}") from None
    features = {key: cast(resolved[key]) for key, cast in FEATURE_PARAMS.items()}
    return {
        "version": IDENTITY_VERSION,
        "norm": norm,
        "features": features,
        "model": {"arch": arch, "params": resolved},
    }


def checkpoint_state(stored_identity: Mapping[str, Any]) -> dict[str, Any]:
    """What `DfnSystem` adds to a checkpoint: its model identity and the RNG states (plain
    types and tensors, so the file loads with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        IDENTITY_KEY: stored_identity,
        "rng_states": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
        },
    }


def restore_rng_states(checkpoint: Mapping[str, Any]) -> None:
    """Resuming: continue the RNG streams where the checkpoint's run stopped them."""
    states = checkpoint.get("rng_states")
    if not states:
        return
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])


def check_expected(
    path: str | Path,
    stored: Mapping[str, Any],
    expect_norm: str | None = None,
    expect_arch: str | None = None,
) -> None:
    """Refuse a caller's norm / arch (e.g. an evaluation's `norm=`) that contradicts the model
    identity `stored` in the checkpoint at `path`."""
    expected = {"norm": expect_norm, "model.arch": expect_arch}
    for key, value in expected.items():
        found = stored["norm"] if key == "norm" else stored["model"]["arch"]
        if value is not None and value != found:
            raise CheckpointMismatchError(
                f"{path}: checkpoint was trained with {key}={found}, but {key}={value} was "
                f"requested; drop the override or pick a checkpoint trained with {key}={value}"
            )


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A dfablate checkpoint as a dict; UserError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        raise UserError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or IDENTITY_KEY not in checkpoint:
        raise UserError(f"{path}: not a dfablate training checkpoint (no stored model identity)")
    return checkpoint


def checkpoint_identity(path: str | Path) -> dict[str, Any]:
    """The stored model identity of a checkpoint (norm, features, model arch + params)."""
    return read_checkpoint(path)[IDENTITY_KEY]


def check_identity(stored: Mapping[str, Any] | None, current: Mapping[str, Any], what: str) -> None:
    """Raise CheckpointMismatchError listing every field where `stored` and `current` differ."""
    if stored is None:
        raise CheckpointMismatchError("checkpoint has no stored model identity")
    diffs = []
    if stored["norm"] != current["norm"]:
        diffs.append(f"norm: checkpoint {stored['norm']}, {what} {current['norm']}")
    if stored["model"]["arch"] != current["model"]["arch"]:
        diffs.append(
            f"model.arch: checkpoint {stored['model']['arch']}, {what} {current['model']['arch']}"
        )
    for section in ("features",):
        for key in sorted(set(stored[section]) | set(current[section])):
            a, b = stored[section].get(key), current[section].get(key)
            if a != b:
                diffs.append(f"{section}.{key}: checkpoint {a}, {what} {b}")
    stored_params, current_params = stored["model"]["params"], current["model"]["params"]
    for key in sorted(set(stored_params) | set(current_params)):
        a, b = stored_params.get(key), current_params.get(key)
        if a != b:
            diffs.append(f"model.params.{key}: checkpoint {a}, {what} {b}")
    if diffs:
        raise CheckpointMismatchError("checkpoint does not match: " + "; ".join(diffs))


class RunCheckpoints(Callback):
    """`best.ckpt` (lowest `monitor`) and `last.ckpt` (every N steps, after each validation,
    at the end of training, on interruption) in `dirpath` (default
    `<trainer.default_root_dir>/checkpoints`).

    It must run after the other callbacks (`train` puts it last), so that a checkpoint written
    after a validation holds the early-stopping state that this validation updated.

    Writes are atomic (Lightning saves through a temporary file), so a SIGKILL at any moment
    leaves the previous `last.ckpt` intact. During a run of skipped non-finite batches, and on
    the `NonFiniteTrainingError` that ends it, `last.ckpt` stays the last good state.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        every_n_train_steps: int = 100,
        monitor: str = "val/loss",
    ):
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.every_n_train_steps = int(every_n_train_steps)
        self.monitor = monitor
        self.best_score = math.inf
        self._last_saved_step = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = Path(trainer.default_root_dir) / "checkpoints"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.ckpt"

    def _fitting(self, trainer: L.Trainer) -> bool:
        return trainer.state.fn == "fit" and not trainer.sanity_checking

    def _save_last(self, trainer: L.Trainer) -> None:
        """Write last.ckpt whole or not at all (a killed run keeps its previous one)."""
        partial = self.last_path.with_name(self.last_path.name + ".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.last_path)
        self._last_saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        due = self.every_n_train_steps > 0 and step % self.every_n_train_steps == 0
        # the last step of `trainer.max_steps`: saved here, as a mid-epoch state (a resume
        # with more steps then continues this epoch, not the next one)
        last = 0 < trainer.max_steps <= step
        if (
            (due or last)
            and step != self._last_saved_step
            and not getattr(pl_module, "nonfinite_in_a_row", 0)  # keep the last good state
        ):
            self._save_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting(trainer):
            return
        score = trainer.callback_metrics.get(self.monitor)
        improved = score is not None and bool(torch.isfinite(score)) and score < self.best_score
        if improved:
            self.best_score = float(score)
        self._save_last(trainer)  # carries the updated best score
        if improved:
            trainer.save_checkpoint(self.best_path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run that ends between validations (e.g. `trainer.max_steps` below one epoch)
        still leaves its final state in `last.ckpt` (unless that is a skipped non-finite one)."""
        if trainer.global_step != self._last_saved_step and not getattr(
            pl_module, "nonfinite_in_a_row", 0
        ):
            self._save_last(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if (
            isinstance(exception, NonFiniteTrainingError)
            or self.dirpath is None  # failed before setup: nothing trained
            or not self._fitting(trainer)
        ):
            return
        if trainer.global_step != self._last_saved_step:
            self._save_last(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict.get("best_score", math.inf))
