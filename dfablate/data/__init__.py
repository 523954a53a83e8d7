"""Paired clean/noisy speech: the Valentini layout, the Lightning data module, the mini corpus.

- `valentini`: the layout, pairing and the speaker-held-out split;
- `datamodule`: the Lightning data module (`ValentiniDataModule`, `mini_datamodule`);
- `mini`: the bundled mini corpus; `download`, `preload`: fetching and caching Valentini.
"""

from __future__ import annotations

from importlib import import_module

# Hydra configs name these `_target_`s, and every recorded run config keeps the string (evaluate
# instantiates it again, and it is part of the variant key), so they resolve here, on first use.
CONFIG_TARGETS = {"mini_datamodule": "datamodule", "ValentiniDataModule": "datamodule"}


def __getattr__(name: str):
    if name not in CONFIG_TARGETS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{CONFIG_TARGETS[name]}"), name)
