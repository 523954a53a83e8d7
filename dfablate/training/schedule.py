"""DFN3's optimiser and schedules: AdamW (amsgrad), per-step LR warm-up + cosine and cosine
weight decay (`RecipeSchedule`), rebuilt when the epoch length changes (a batch-size ramp).

`RecipeOptimisation` is the part of `DfnSystem` that sets them up from its `optim_cfg`, whose
defaults are `configs/optim/dfn3.yaml` (`optim_recipe`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from dfablate.config import config_file


def optim_recipe() -> dict[str, Any]:
    """DFN3's optimiser settings (`configs/optim/dfn3.yaml`): the values for keys a config
    leaves out."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(config_file("optim/dfn3.yaml")))


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


class RecipeOptimisation:
    """LightningModule hooks of the DFN3 recipe: the optimizer and its per-step schedules
    (mixed into `DfnSystem`, which holds `optim_cfg`)."""

    optim_cfg: dict[str, Any]

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
