"""Paired clean/noisy speech: the Valentini layout, the Lightning data module, the mini corpus.

Names are imported on first use, so `dfablate.data.valentini` (layout checks, downloads) loads
without torch and Lightning.
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "ValentiniDataModule": "datamodule",
    "PairedWaveDataset": "datamodule",
    "mini_datamodule": "datamodule",
    "Pair": "valentini",
    "find_pairs": "valentini",
    "ensure_mini": "mini",
    "make_mini": "mini",
}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
