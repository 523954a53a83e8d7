"""Test-only Lightning callback: signal the training process at an exact point of a run.

Added to a `dfablate train` subprocess by the kill tests (`+callbacks.kill._target_=...`, with
`tests/` on PYTHONPATH), so a kill lands exactly where the test wants it, whatever the load.
"""

from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Send `sig` (SIGKILL, or SIGINT as Ctrl-C does) to this process right after the epoch-end
    (validation) checkpoint of `epoch`, or right before the step after `step` starts (the
    periodic checkpoint of `step`, when one is due, is then complete)."""

    def __init__(self, epoch: int | None = None, step: int | None = None, sig: str = "SIGKILL"):
        self.epoch, self.step, self.sig = epoch, step, getattr(signal, sig)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.epoch is not None and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.sig)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.step is not None and trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)
