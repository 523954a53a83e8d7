"""Training callbacks besides the checkpoints: W&B media of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import lightning as L
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import wandb
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from scipy.signal import stft

from dfablate.features import feature_std

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


# --- what WandbMedia logs (its only client) -------------------------------------------------


def spectrogram_figure(waves: Mapping[str, np.ndarray], sample_rate: int):
    """A matplotlib figure with one log-magnitude spectrogram panel per named waveform."""
    matplotlib.use("Agg")

    fig, axes = plt.subplots(len(waves), 1, figsize=(8, 2.2 * len(waves)), squeeze=False)
    for ax, (title, wave) in zip(axes[:, 0], waves.items(), strict=True):
        freqs, times, spec = stft(wave, fs=sample_rate, nperseg=1024, noverlap=768)
        db = 20 * np.log10(np.abs(spec) + 1e-8)
        ax.pcolormesh(times, freqs / 1000, db, shading="auto", vmin=db.max() - 90, vmax=db.max())
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    return fig


def log_audio_example(
    run: Any,
    name: str,
    waves: Mapping[str, np.ndarray],
    sample_rate: int,
    step: int | None = None,
) -> None:
    """Log each named waveform as audio under `examples/<name>/<key>` and one spectrogram image
    (`step` goes in as `trainer/global_step`, Lightning's step key, not as W&B's own step)."""
    data: dict[str, Any] = {
        f"examples/{name}/{key}": wandb.Audio(np.asarray(w, dtype=np.float32), sample_rate)
        for key, w in waves.items()
    }
    fig = spectrogram_figure(waves, sample_rate)
    data[f"examples/{name}/spectrogram"] = wandb.Image(fig)
    plt.close(fig)
    if step is not None:
        data["trainer/global_step"] = step
    run.log(data)


def log_feature_std(run: Any, table: Any, norm: str) -> None:
    """Log the per-bin feature std (`dfablate.features.feature_std` DataFrame) as a table, plus
    its mean in the summary."""
    run.log({f"features/std_{norm}": wandb.Table(dataframe=table)})
    run.summary["features/std_mean"] = float(table[["std_real", "std_imag"]].to_numpy().mean())
