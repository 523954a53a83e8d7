"""DFN3's per-step schedules (`RecipeSchedule`): LR warm-up + cosine and cosine weight decay,
rebuilt when the epoch length changes (a batch-size ramp). `DfnSystem.configure_optimizers`
sets them up on AdamW (amsgrad) from the composed config's `optim:` (`configs/optim/dfn3.yaml`).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


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
