"""Which W&B mode, project and entity a stage uses, decided without importing wandb (0.35 s):
a stage that logs nothing (`compare --wandb disabled`, a run trained without W&B) never pays
for it. Starting runs and logging to them is `dfablate.tracking`."""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from dfablate.errors import UserError

WANDB_MODES = ("auto", "online", "offline", "disabled")


def has_wandb_credentials() -> bool:
    """True when WANDB_API_KEY is set or ~/.netrc has an entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode(requested: str = "auto") -> str:
    """The W&B mode to use: WANDB_MODE if set, else `requested`; "auto" means online only with
    credentials, offline otherwise (no network needed; `wandb sync` uploads later)."""
    mode = os.environ.get("WANDB_MODE") or requested
    if mode == "dryrun":
        mode = "offline"
    if mode not in WANDB_MODES:
        raise UserError(f"logger.wandb.mode={mode!r} is not one of {', '.join(WANDB_MODES)}")
    if mode == "auto":
        return "online" if has_wandb_credentials() else "offline"
    return mode


def follow_run(given: Mapping[str, Any], logger: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """W&B settings (mode, project, entity) of a stage that follows a training run whose logger
    config is `logger` (None: unknown), or None for no W&B at all: a null mode follows the run
    (no W&B logger there, none here, whatever WANDB_MODE says; unknown: auto). What is given
    wins; a null project is the run's, else dfablate."""
    train_wandb = (logger or {}).get("wandb") or {}
    mode = given.get("mode")
    if mode is None and logger is not None and not train_wandb:
        return None
    return {
        "mode": mode or train_wandb.get("mode") or "auto",
        "project": given.get("project") or train_wandb.get("project") or "dfablate",
        "entity": given.get("entity") or train_wandb.get("entity"),
    }
