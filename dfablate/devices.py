"""The torch device a command runs on: `device=auto` resolved once, and a given device checked
against this machine before anything is written."""

from __future__ import annotations

import torch

from dfablate.errors import UserError


def resolve_device(device: str) -> str:
    """`auto`: the first CUDA device when there is one, else the CPU; anything else as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_device(device: str, option: str = "device") -> None:
    """Refuse a device that is not one, or that this machine does not have."""
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"{option}={device}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option}={device}: CUDA is not available here; use {option}=cpu")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise UserError(
            f"{option}={device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
