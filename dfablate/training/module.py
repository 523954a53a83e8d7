"""The LightningModule that trains a DeepFilterNet variant: step, loss, optimiser, validation
and the checkpoint's model identity, in one class.

`DfnSystem` owns a DeepFilterNet (`dfablate.models`, a port of deepfilternet's DfNet) and the
`DfFeatures` with the chosen normalisation; features are computed on the batch's device inside the
step. It trains with the DFN3 recipe: `dfablate.losses.DfnLoss`, AdamW with the per-step
schedules of `schedule.RecipeSchedule` (settings: the composed config's `optim:`), gradient-norm
clipping, and non-finite batches skipped (counted; too many in a row stop the run with
`NonFiniteTrainingError`). Its checkpoints carry its `model_identity` (format: `checkpoints`).
`train` builds it from the config's `system:` node (`hydra.utils.instantiate`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from dfablate.enhance import enhance_waveform
from dfablate.errors import UserError
from dfablate.features import DfFeatures, register_norm_function
from dfablate.losses import DfnLoss
from dfablate.metrics import MetricError, score_pair
from dfablate.models.build import build_model
from dfablate.models.params import ModelConfigError
from dfablate.training.checkpoints import (
    IDENTITY_KEY,
    NonFiniteTrainingError,
    check_expected,
    check_identity,
    checkpoint_state,
    model_identity,
    read_checkpoint,
    restore_rng_states,
)
from dfablate.training.schedule import RecipeSchedule

COMPILE_MODES = ("none", "default", "reduce-overhead")
# The optimiser recipe's settings (`configs/optim/dfn3.yaml`, composed into the train config).
RECIPE_KEYS = (
    "lr",
    "lr_warmup",
    "warmup_epochs",
    "lr_min",
    "weight_decay",
    "weight_decay_end",
    "betas",
    "grad_clip",
    "max_consecutive_nonfinite",
)


def compile_model(system: DfnSystem, mode: str) -> None:
    """`model.compile`: torch.compile the network in place (state-dict keys unchanged, so its
    checkpoints are those of an uncompiled run); `reduce-overhead` adds CUDA graphs on a GPU."""
    if check_compile_mode(mode) != "none":
        system.dfnet.compile(mode=None if mode == "default" else mode)


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise UserError(f"model.compile={mode}: must be one of {', '.join(COMPILE_MODES)}")
    return mode


def check_recipe(optim: Mapping[str, Any] | None) -> None:
    """Training needs every setting of the optimiser recipe in the config's `optim:` (the
    shipped model configs compose `optim/dfn3.yaml`; a model config of one's own may not)."""
    missing = [key for key in RECIPE_KEYS if key not in (optim or {})]
    if missing:
        raise UserError(
            f"optim.{missing[0]}: missing from the config (give optim={{{', '.join(missing)}}} "
            "or add `/optim: dfn3` to the model config's defaults)"
        )


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class DfnSystem(L.LightningModule):
    """DfNet + DfFeatures(norm) trained with the DFN3 recipe.

    norm: a registered normalisation name; model: {"arch": "dfn3"|"dfn2", "params": {...}} with
    DeepFilterNet config.ini names; loss: DfnLoss keyword arguments (factors, FFT sizes); optim:
    the recipe's settings (`RECIPE_KEYS`), needed to train, not to enhance; val_metric_utterances:
    how many validation utterances per validation get PESQ/STOI (dfablate.metrics.score_pair);
    norm_function: "module.function" of a norm defined outside the package (a norm YAML's
    `function:`), registered under `norm`.
    """

    def __init__(
        self,
        norm: str,
        model: Mapping[str, Any],
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
        val_metric_utterances: int = 3,
        norm_function: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)  # loggers get the resolved Hydra config instead
        if norm_function:  # a norm from a user's config folder: importable wherever it is loaded
            register_norm_function(norm, norm_function)
        params = dict(model.get("params") or {})
        self.model_identity = model_identity(norm, model["arch"], params)
        self.features = DfFeatures(norm=norm, **self.model_identity["features"])
        try:
            self.dfnet = build_model(model["arch"], **self.model_identity["model"]["params"])
        except ModelConfigError as exc:
            raise UserError(f"model config: {exc}") from None
        # DfDecoder.df_fc_a (the DF "alpha" head) is built but unused in forward unless DFN2 runs
        # dfop_method=real_unfold; frozen, DDP need not search for unused parameters every step.
        df_alpha = getattr(getattr(self.dfnet, "df_dec", None), "df_fc_a", None)
        if df_alpha is not None and not getattr(self.dfnet, "use_alpha", False):
            df_alpha.requires_grad_(False)
        self._norm_modules = [
            m for m in self.dfnet.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats
        ]
        resolved = self.model_identity["model"]["params"]
        self.loss_fn = DfnLoss(
            self.features.window,
            sr=self.features.sr,
            fft_size=self.features.fft_size,
            hop_size=self.features.hop_size,
            lsnr_min=float(resolved["lsnr_min"]),
            lsnr_max=float(resolved["lsnr_max"]),
            **dict(loss or {}),
        )
        self.optim_cfg = dict(optim or {})
        self.val_metric_utterances = int(val_metric_utterances)
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0

    @property
    def norm(self) -> str:
        return self.model_identity["norm"]

    def forward(self, noisy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """noisy [B, T] -> (noisy spec, enhanced spec [B, 1, T', F, 2], lsnr [B, T', 1])."""
        with torch.autocast(self.device.type, enabled=False):
            feats = self.features(noisy.float())
        enhanced, _, lsnr, _ = self.dfnet(feats.spec, feats.feat_erb, feats.feat_spec)
        return feats.spec, enhanced, lsnr

    def _loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        noisy_spec, enhanced, lsnr = self(batch["noisy"])
        with torch.autocast(self.device.type, enabled=False):
            clean_spec = self.features(batch["clean"].float()).spec
            total, parts = self.loss_fn(clean_spec, noisy_spec, enhanced.float(), lsnr.float())
        return total, parts, enhanced

    @torch.inference_mode()
    def enhance(self, noisy: Tensor) -> Tensor:
        """Delay-free whole-utterance enhancement of [T] or [B, T] waveforms (same length)."""
        return enhance_waveform(noisy, self.features, self.dfnet)

    # --- training -------------------------------------------------------------------------

    def _count_nonfinite(self, what: str) -> None:
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        limit = int(self.optim_cfg["max_consecutive_nonfinite"])
        warnings.warn(
            f"non-finite {what} at step {self.global_step}: batch skipped "
            f"({self.nonfinite_in_a_row} in a row, {self.nonfinite_total} in total)",
            stacklevel=2,
        )
        if self.nonfinite_in_a_row >= limit:
            raise NonFiniteTrainingError(
                f"{self.nonfinite_in_a_row} non-finite batches in a row at step {self.global_step} "
                f"(limit optim.max_consecutive_nonfinite={limit}); training stopped, the last good "
                "checkpoint is kept in checkpoints/last.ckpt"
            )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """The DFN3 loss. A non-finite loss still goes through backward: its non-finite
        gradients (identical on all DDP ranks after the all-reduce) make every rank skip the
        step in `on_before_optimizer_step`, where skipped batches are counted. No host-device
        sync here: the one finiteness check per step is on the gradient norm."""
        self._snapshot_norm_stats()
        total, parts, _ = self._loss(batch)
        self._last_loss = total.detach()
        batch_size = batch["noisy"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value, batch_size=batch_size)
        return total

    def _snapshot_norm_stats(self) -> None:
        """Copy the batch-norm running statistics (one fused copy) so a skipped batch can undo
        its update."""
        buffers = [b for m in self._norm_modules for b in m.buffers()]
        snapshot = getattr(self, "_norm_snapshot", None)
        if not buffers:
            return
        if snapshot is None or snapshot[0].device != buffers[0].device:
            self._norm_snapshot = [b.detach().clone() for b in buffers]
        else:
            torch._foreach_copy_(snapshot, buffers)

    def _restore_norm_stats(self) -> None:
        """Undo the batch-norm running statistics a skipped (non-finite) batch has updated."""
        snapshot = getattr(self, "_norm_snapshot", None)
        if snapshot is not None:
            buffers = [b for m in self._norm_modules for b in m.buffers()]
            torch._foreach_copy_(buffers, snapshot)

    def _loss_was_finite(self) -> bool:
        last = getattr(self, "_last_loss", None)
        return last is None or bool(torch.isfinite(last))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradient norm; a non-finite gradient skips this step (grads set to None)."""
        params = [p for p in self.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float(self.optim_cfg["grad_clip"]))
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:  # fp16: the GradScaler skips overflowing steps on its own
            finite = self._loss_was_finite()
        else:
            finite = bool(torch.isfinite(grad_norm))
            if not finite:
                for p in params:
                    p.grad = None  # AdamW leaves parameters without a gradient untouched
                self._restore_norm_stats()
        if finite:
            self.nonfinite_in_a_row = 0
            self.log("train/grad_norm", grad_norm, batch_size=1)
        else:
            self._count_nonfinite("gradient" if self._loss_was_finite() else "loss")
        self.log("train/nonfinite_skipped", float(self.nonfinite_total), batch_size=1)

    # --- validation -----------------------------------------------------------------------

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        total, parts, _ = self._loss(batch)
        self.log("val/loss", total, prog_bar=True, batch_size=1, sync_dist=True)
        for name, value in parts.items():
            self.log(f"val/loss_{name}", value, batch_size=1, sync_dist=True)
        out: dict[str, Any] = {"loss": total}
        if batch_idx < self.val_metric_utterances:
            out["enhanced"] = self.enhance(batch["noisy"])
            self._log_quality(batch["clean"][0], out["enhanced"][0])
        return out

    def _log_quality(self, clean: Tensor, enhanced: Tensor) -> None:
        try:
            scores = score_pair(
                clean.float().cpu().numpy(), enhanced.float().cpu().numpy(), self.features.sr
            )
        except MetricError as exc:
            warnings.warn(f"validation utterance not scored: {exc}", stacklevel=2)
            return
        for name in ("pesq", "stoi", "sisdr"):
            self.log(f"val/{name}", scores[name], batch_size=1, sync_dist=True)

    # --- optimiser: AdamW with the recipe's per-step schedules ------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        check_recipe(self.optim_cfg)
        cfg = self.optim_cfg
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=cfg["lr"],
            betas=tuple(cfg["betas"]),
            weight_decay=cfg["weight_decay"],
            amsgrad=True,
        )
        total = int(self.trainer.estimated_stepping_batches)
        max_epochs = self.trainer.max_epochs or -1
        steps_per_epoch = self._steps_per_epoch()
        if steps_per_epoch is None and max_epochs > 0:
            steps_per_epoch = total // max_epochs
        elif steps_per_epoch is None:
            warnings.warn("epoch length unknown (max_steps only): no LR warm-up", stacklevel=2)
            steps_per_epoch = 0
        schedule = RecipeSchedule(
            optimizer,
            total_steps=total,
            warmup_steps=int(cfg["warmup_epochs"] * steps_per_epoch),
            lr=cfg["lr"],
            lr_warmup=cfg["lr_warmup"],
            lr_min=cfg["lr_min"],
            weight_decay=cfg["weight_decay"],
            weight_decay_end=cfg["weight_decay_end"],
            steps_per_epoch=steps_per_epoch,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step", "name": "lr"},
        }

    def _steps_per_epoch(self) -> int | None:
        """Optimizer steps in this epoch's training loader (None when it has no length)."""
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            return None
        accumulate = max(int(self.trainer.accumulate_grad_batches), 1)
        return max(math.ceil(batches / accumulate), 1)

    def on_train_epoch_start(self) -> None:
        """A new epoch length (batch-size ramp): rebuild the LR and WD schedules for it."""
        schedule = self.lr_schedulers()
        steps_per_epoch = self._steps_per_epoch()
        max_epochs = self.trainer.max_epochs or -1
        if (
            isinstance(schedule, RecipeSchedule)
            and steps_per_epoch is not None
            and schedule.steps_per_epoch not in (None, steps_per_epoch)
            and max_epochs > 0
        ):
            schedule.set_epoch_length(
                steps_per_epoch,
                max_epochs,
                self.optim_cfg["warmup_epochs"],
                self.current_epoch,
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        group = self.optimizers(use_pl_optimizer=False).param_groups[0]
        self.log("train/lr", group["lr"], batch_size=1)
        self.log("train/weight_decay", group["weight_decay"], batch_size=1)

    # --- checkpoints: the model identity, RNG states and non-finite counts ------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(checkpoint_state(self.model_identity))
        checkpoint["nonfinite"] = {
            "total": self.nonfinite_total,
            "in_a_row": self.nonfinite_in_a_row,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming: refuse another model, and continue the RNG streams where they stopped."""
        check_identity(checkpoint.get(IDENTITY_KEY), self.model_identity, "this run's config")
        restore_rng_states(checkpoint)
        counts = checkpoint.get("nonfinite", {})
        self.nonfinite_total = counts.get("total", 0)
        self.nonfinite_in_a_row = counts.get("in_a_row", 0)

    @classmethod
    def load_checkpoint(
        cls,
        path: str | Path,
        expect_norm: str | None = None,
        expect_arch: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> DfnSystem:
        """Rebuild exactly the model stored in `path` (eval mode).

        `expect_norm` / `expect_arch` are what the caller was configured with (e.g. an
        evaluation's `norm=`); a value that contradicts the checkpoint raises
        CheckpointMismatchError naming both.
        """
        checkpoint = read_checkpoint(path, map_location)
        stored = checkpoint[IDENTITY_KEY]
        check_expected(path, stored, expect_norm, expect_arch)
        hparams = checkpoint.get("hyper_parameters", {})
        system = cls(
            norm=stored["norm"],
            model={"arch": stored["model"]["arch"], "params": stored["model"]["params"]},
            loss=hparams.get("loss"),
            optim=hparams.get("optim"),
            val_metric_utterances=hparams.get("val_metric_utterances", 3),
            norm_function=hparams.get("norm_function"),
        )
        check_identity(stored, system.model_identity, "the rebuilt model")
        system.load_state_dict(checkpoint["state_dict"])
        return system.eval()
