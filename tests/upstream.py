"""Test-only access to the reference implementation: deepfilternet's `df` and deepfilterlib's `libdf`.

They are the `reference` extra (`pip install -e '.[reference]'`), which installs on Python <= 3.11
only (deepfilterlib 0.5.6 has no newer wheels, deepfilternet pins numpy<2). Tests that compare
against them use `requires_reference`, so they skip with that reason elsewhere.

`import df` runs `df/__init__`, which imports torchaudio APIs that no longer exist, so
`import_df_module` registers a bare `df` package first; `build_upstream_dfnet` builds upstream's
DfNet from keyword parameters through its global INI config (tests are single-threaded).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import pytest
from torch import nn

# The keys of config.ini's [df] section (`df.config.DfParams`); all others are the model's.
DF_SECTION_KEYS = (
    "sr",
    "fft_size",
    "hop_size",
    "nb_erb",
    "nb_df",
    "norm_tau",
    "lsnr_max",
    "lsnr_min",
    "min_nb_erb_freqs",
    "df_order",
    "df_lookahead",
    "pad_mode",
)
ARCH_MODULES = {"dfn3": "deepfilternet3", "dfn2": "deepfilternet2"}

REFERENCE_AVAILABLE = all(importlib.util.find_spec(m) is not None for m in ("df", "libdf"))
requires_reference = pytest.mark.skipif(
    not REFERENCE_AVAILABLE,
    reason="needs the reference extra (deepfilternet + deepfilterlib 0.5.6, Python <= 3.11): "
    "pip install -e '.[reference]'",
)


def import_df_module(name: str) -> types.ModuleType:
    """Import `df.<name>` (e.g. "deepfilternet3", "sepm", "lr") without running `df/__init__`."""
    if "df" not in sys.modules:
        spec = importlib.util.find_spec("df")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the `deepfilternet` package is not installed (reference extra)")
        package = types.ModuleType("df")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        package.__package__ = "df"
        package.__spec__ = spec
        sys.modules["df"] = package
    return importlib.import_module(f"df.{name}")


def _ini_value(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def upstream_config(arch: str, **params: Any) -> Any:
    """Load deepfilternet's global config with `params` set; return the arch's ModelParams."""
    module = import_df_module(ARCH_MODULES[arch])
    config = import_df_module("config").config
    config.use_defaults(allow_reload=True)
    for key, value in params.items():
        section = "df" if key in DF_SECTION_KEYS else module.ModelParams.section
        if not config.parser.has_section(section):
            config.parser.add_section(section)
        config.parser.set(section, key, _ini_value(value))
    return module.ModelParams()


def upstream_resolved_params(arch: str, **params: Any) -> dict[str, str]:
    """The parameters deepfilternet's config holds after building `arch` with `params`."""
    section = upstream_config(arch, **params).section
    parser = import_df_module("config").config.parser
    return {**dict(parser["df"]), **dict(parser[section])}


def build_upstream_dfnet(arch: str, **params: Any) -> nn.Module:
    """deepfilternet's own DfNet for `arch`, built as its `init_model` does (with libdf)."""
    p = upstream_config(arch, **params)
    libdf = importlib.import_module("libdf")
    state = libdf.DF(
        sr=p.sr,
        fft_size=p.fft_size,
        hop_size=p.hop_size,
        nb_bands=p.nb_erb,
        min_nb_erb_freqs=p.min_nb_freqs,
    )
    erb_fb = import_df_module("modules").erb_fb
    erb = erb_fb(state.erb_widths(), p.sr, inverse=False)
    erb_inverse = erb_fb(state.erb_widths(), p.sr, inverse=True)
    return import_df_module(ARCH_MODULES[arch]).DfNet(
        erb, erb_inverse, run_df=True, train_mask=True
    )
