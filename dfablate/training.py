"""The LightningModule that trains a DeepFilterNet variant, and what its checkpoints mean.

`DfnSystem` owns a DeepFilterNet (`dfablate.models`, a port of deepfilternet's DfNet) and the
`DfFeatures` with the chosen normalisation; features are computed on the batch's device inside the
step. It trains with the DFN3 recipe: `dfablate.losses.DfnLoss`, AdamW (amsgrad) with per-step
warm-up + cosine learning rate and cosine weight decay (`RecipeSchedule`), gradient-norm
clipping, and non-finite batches skipped (counted; too many in a row stop the run with
`NonFiniteTrainingError`).

A checkpoint carries its identity under the key "dfablate": the normalisation, the feature
parameters and the architecture with all resolved model parameters. `load_checkpoint` rebuilds
exactly that model and refuses a contradicting expectation (`CheckpointMismatchError`).
`RunCheckpoints` keeps `best.ckpt` (validation loss) and `last.ckpt` (every N steps, after each
validation and on interruption) so a killed run resumes.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from dfablate.config import config_file
from dfablate.enhance import enhance_waveform
from dfablate.errors import UserError
from dfablate.features import FEATURE_PARAMS, DfFeatures, register_norm_function
from dfablate.losses import DfnLoss
from dfablate.models import ModelConfigError, build_model, resolved_model_params

IDENTITY_KEY = "dfablate"
IDENTITY_VERSION = 1


def optim_recipe() -> dict[str, Any]:
    """DFN3's optimiser settings (`configs/optim/dfn3.yaml`): the values for keys a config
    leaves out."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(config_file("optim/dfn3.yaml")))


class NonFiniteTrainingError(UserError):
    """Too many non-finite batches in a row; the last good checkpoint is kept."""


class CheckpointMismatchError(UserError):
    """A checkpoint loaded with an expectation that contradicts its stored identity."""


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


class RecipeSchedule(LRScheduler):
    """DFN's per-step schedules (`df.lr.cosine_scheduler`): LR warm-up then cosine; cosine WD.

    Step i < warmup: lr_warmup + (lr - lr_warmup) * i / (warmup - 1); after: lr_min + (lr -
    lr_min) * (1 + cos(pi * j / (total - warmup))) / 2 with j = i - warmup. The weight decay
    follows the same cosine from weight_decay to weight_decay_end over all steps.

    When the steps per epoch change (a batch-size ramp), `set_epoch_length` rebuilds both for
    the new length and continues at step epoch * steps_per_epoch, as DeepFilterNet's trainer
    does (`setup_lrs` / `setup_wds`, indexed by epoch * len(loader) + i).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int,
        lr: float,
        lr_warmup: float,
        lr_min: float,
        weight_decay: float,
        weight_decay_end: float,
        steps_per_epoch: int | None = None,
    ):
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = min(max(int(warmup_steps), 0), self.total_steps - 1)
        self.lr, self.lr_warmup, self.lr_min = lr, lr_warmup, lr_min
        self.weight_decay, self.weight_decay_end = weight_decay, weight_decay_end
        self.steps_per_epoch = steps_per_epoch
        self.offset = 0  # schedule position - optimizer steps taken (moved by set_epoch_length)
        super().__init__(optimizer)

    @staticmethod
    def _cosine(start: float, end: float, step: int, steps: int) -> float:
        step = min(step, steps - 1)
        return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / steps))

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            if self.warmup_steps == 1:
                return self.lr_warmup
            return self.lr_warmup + (self.lr - self.lr_warmup) * step / (self.warmup_steps - 1)
        return self._cosine(
            self.lr, self.lr_min, step - self.warmup_steps, self.total_steps - self.warmup_steps
        )

    def weight_decay_at(self, step: int) -> float:
        return self._cosine(self.weight_decay, self.weight_decay_end, step, self.total_steps)

    @property
    def position(self) -> int:
        """The step of the schedule the optimizer is at."""
        return self.last_epoch + self.offset

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.position) for _ in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        super().step()
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.weight_decay_at(self.position)

    def set_epoch_length(
        self, steps_per_epoch: int, epochs: int, warmup_epochs: float, epoch: int
    ) -> None:
        """Rebuild the schedules for `steps_per_epoch` and go to the start of `epoch`."""
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(epochs * steps_per_epoch, 1)
        self.warmup_steps = min(max(int(warmup_epochs * steps_per_epoch), 0), self.total_steps - 1)
        self.offset = epoch * steps_per_epoch - self.last_epoch
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.position)
            group["weight_decay"] = self.weight_decay_at(self.position)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class DfnSystem(L.LightningModule):
    """DfNet + DfFeatures(norm) trained with the DFN3 recipe.

    norm: a registered normalisation name; model: {"arch": "dfn3"|"dfn2", "params": {...}} with
    DeepFilterNet config.ini names; loss: DfnLoss keyword arguments (factors, FFT sizes); optim:
    lr, lr_warmup, lr_min, warmup_epochs, weight_decay, weight_decay_end, betas, grad_clip,
    max_consecutive_nonfinite; val_metric_utterances: how many validation utterances per
    validation get PESQ/STOI (dfablate.metrics.score_pair); norm_function: "module.function" of a
    norm defined outside the package (a norm YAML's `function:`), registered under `norm`.
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
        self.identity = model_identity(norm, model["arch"], params)
        self.features = DfFeatures(norm=norm, **self.identity["features"])
        try:
            self.dfnet = build_model(model["arch"], **self.identity["model"]["params"])
        except ModelConfigError as exc:
            raise UserError(f"model config: {exc}") from None
        # DfDecoder.df_fc_a (the DF "alpha" head) is built but unused in forward unless DFN2 runs
        # dfop_method=real_unfold; frozen, DDP need not search for unused parameters every step.
        df_alpha = getattr(getattr(self.dfnet, "df_dec", None), "df_fc_a", None)
        if df_alpha is not None and not getattr(self.dfnet, "use_alpha", False):
            df_alpha.requires_grad_(False)
        self._norm_modules = [
            m
            for m in self.dfnet.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        resolved = self.identity["model"]["params"]
        self.loss_fn = DfnLoss(
            self.features.window,
            sr=self.features.sr,
            fft_size=self.features.fft_size,
            hop_size=self.features.hop_size,
            lsnr_min=float(resolved["lsnr_min"]),
            lsnr_max=float(resolved["lsnr_max"]),
            **dict(loss or {}),
        )
        self.optim_cfg = {**optim_recipe(), **dict(optim or {})}
        self.val_metric_utterances = int(val_metric_utterances)
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0

    @property
    def norm(self) -> str:
        return self.identity["norm"]

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

    def configure_optimizers(self) -> dict[str, Any]:
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
        from dfablate.metrics import MetricError, score_pair

        try:
            scores = score_pair(
                clean.float().cpu().numpy(), enhanced.float().cpu().numpy(), self.features.sr
            )
        except MetricError as exc:
            warnings.warn(f"validation utterance not scored: {exc}", stacklevel=2)
            return
        for name in ("pesq", "stoi", "sisdr"):
            self.log(f"val/{name}", scores[name], batch_size=1, sync_dist=True)

    # --- checkpoint identity --------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[IDENTITY_KEY] = self.identity
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {  # plain types and tensors: loadable with weights_only=True
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
        }
        checkpoint["nonfinite"] = {
            "total": self.nonfinite_total,
            "in_a_row": self.nonfinite_in_a_row,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming: refuse another model, and continue the RNG streams where they stopped."""
        check_identity(checkpoint.get(IDENTITY_KEY), self.identity, "this run's config")
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            if states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
            kind, keys, pos, has_gauss, cached = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(states["python"])
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
        identity = checkpoint[IDENTITY_KEY]
        expected = {"norm": expect_norm, "model.arch": expect_arch}
        for key, value in expected.items():
            stored = identity["norm"] if key == "norm" else identity["model"]["arch"]
            if value is not None and value != stored:
                raise CheckpointMismatchError(
                    f"{path}: checkpoint was trained with {key}={stored}, but {key}={value} was "
                    f"requested; drop the override or pick a checkpoint trained with {key}={value}"
                )
        hparams = checkpoint.get("hyper_parameters", {})
        system = cls(
            norm=identity["norm"],
            model={"arch": identity["model"]["arch"], "params": identity["model"]["params"]},
            loss=hparams.get("loss"),
            optim=hparams.get("optim"),
            val_metric_utterances=hparams.get("val_metric_utterances", 3),
            norm_function=hparams.get("norm_function"),
        )
        check_identity(identity, system.identity, "the rebuilt model")
        system.load_state_dict(checkpoint["state_dict"])
        return system.eval()


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
    """The stored identity of a checkpoint (norm, features, model arch + params)."""
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
        trainer.save_checkpoint(self.last_path)
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
        from lightning.pytorch.loggers import WandbLogger

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
        from dfablate.features import feature_std
        from dfablate.tracking import log_feature_std

        loader = trainer.datamodule.val_dataloader()
        waves = []
        for batch in loader:
            waves.extend(w.float().cpu().numpy() for w in batch["noisy"])
            if len(waves) >= self.std_utterances:
                break
        table = feature_std(
            waves[: self.std_utterances], pl_module.norm, **pl_module.identity["features"]
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
        from dfablate.tracking import log_audio_example

        for name, waves in pending:
            log_audio_example(run, name, waves, pl_module.features.sr, step=trainer.global_step)
            self._logged_references.add(name)
