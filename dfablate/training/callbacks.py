"""Training callbacks besides the checkpoints: W&B media of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from dfablate.features import feature_std
from dfablate.tracking import log_audio_example, log_feature_std

if TYPE_CHECKING:
    from dfablate.training.module import DfnSystem


class WandbMedia(Callback):
    """W&B media of a run: the per-bin feature std of its normalisation (once, on validation
    utterances) and, every `every_n_epochs`, audio + spectrograms of the first
    `n_examples` validation utterances (noisy and clean only the first time). No-op without a
    WandbLogger."""

    def __init__(self, n_examples: int = 2, every_n_epochs: int = 10, std_utterances: int = 8):
        self.n_examples = int(n_examples)
        self.every_n_epochs = max(int(every_n_epochs), 1)
        self.std_utterances = int(std_utterances)
        self._logged_references: set[str] = set()
        self._pending: list[tuple[str, dict[str, np.ndarray]]] = []

    @staticmethod
    def _run(trainer: L.Trainer) -> Any:
        if trainer.global_rank != 0:
            return None
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                return logger.experiment
        return None

    def on_fit_start(self, trainer: L.Trainer, pl_module: DfnSystem) -> None:
        run = self._run(trainer)
        if run is None or trainer.ckpt_path is not None or self.std_utterances <= 0:
            return
        loader = trainer.datamodule.val_dataloader()
        waves = []
        for batch in loader:
            waves.extend(w.float().cpu().numpy() for w in batch["noisy"])
            if len(waves) >= self.std_utterances:
                break
        table = feature_std(
            waves[: self.std_utterances], pl_module.norm, **pl_module.model_identity["features"]
        )
        log_feature_std(run, table, pl_module.norm)

    def _due(self, trainer: L.Trainer) -> bool:
        return (
            trainer.current_epoch % self.every_n_epochs == 0
            or trainer.current_epoch + 1 == trainer.max_epochs
        )

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if (
            batch_idx >= self.n_examples
            or trainer.sanity_checking
            or not isinstance(outputs, dict)
            or "enhanced" not in outputs
            or not self._due(trainer)
        ):
            return
        name = str(batch["name"][0])
        waves = {"enhanced": outputs["enhanced"][0].float().cpu().numpy()}
        if name not in self._logged_references:
            waves = {
                "noisy": batch["noisy"][0].float().cpu().numpy(),
                "clean": batch["clean"][0].float().cpu().numpy(),
                **waves,
            }
        self._pending.append((name, waves))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: DfnSystem) -> None:
        pending, self._pending = self._pending, []
        run = self._run(trainer)
        if run is None:
            return
        for name, waves in pending:
            log_audio_example(run, name, waves, pl_module.features.sr, step=trainer.global_step)
            self._logged_references.add(name)
