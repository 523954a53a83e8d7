"""Bridge to the `deepfilternet` package (`df`).

`import df` runs `df/__init__`, which imports torchaudio APIs that no longer exist, and the model
classes read a process-global INI config. This module is the one place that deals with both:
`import_df_module` imports a `df` submodule without running `df/__init__`, and `build_dfnet`
builds a DfNet from plain values (Hydra config, checkpoint) with no INI file on disk.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from torch import nn

ARCHITECTURES = {"dfn3": "df.deepfilternet3", "dfn2": "df.deepfilternet2"}

# Keys of the INI config's [df] section (signal and deep-filter parameters), with the names the
# released DFN3 config.ini uses. Everything else goes to the model's own section.
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

_CONFIG_LOCK = threading.Lock()


class ModelConfigError(ValueError):
    """A model parameter that deepfilternet does not know, or an unknown architecture."""


def _register_bare_df_package() -> None:
    """Put an empty `df` package in sys.modules so submodules import without `df/__init__`."""
    if "df" in sys.modules:
        return
    spec = importlib.util.find_spec("df")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the `deepfilternet` package is not installed (pip install deepfilternet)"
        )
    package = types.ModuleType("df")
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = "df"
    package.__spec__ = spec
    sys.modules["df"] = package


def import_df_module(name: str) -> types.ModuleType:
    """Import `df.<name>` (e.g. "deepfilternet3", "modules", "config", "sepm") without torchaudio."""
    _register_bare_df_package()
    return importlib.import_module(name if name.startswith("df.") else f"df.{name}")


def _df_config() -> Any:
    return import_df_module("config").config


@cache
def known_model_keys(arch: str) -> dict[str, frozenset[str]]:
    """The INI keys deepfilternet reads for `arch`, per section ("df" and the model section)."""
    module = _arch_module(arch)
    with _CONFIG_LOCK:
        config = _df_config()
        config.use_defaults(allow_reload=True)
        params = module.ModelParams()
        return {
            "df": frozenset(config.parser["df"].keys()),
            params.section: frozenset(config.parser[params.section].keys()),
        }


def _arch_module(arch: str) -> types.ModuleType:
    if arch not in ARCHITECTURES:
        raise ModelConfigError(
            f"unknown model architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return import_df_module(ARCHITECTURES[arch])


def _split_params(arch: str, params: Mapping[str, Any]) -> tuple[dict, dict]:
    known = known_model_keys(arch)
    model_section = next(s for s in known if s != "df")
    df_values, model_values, unknown = {}, {}, []
    for key, value in params.items():
        key_l = key.lower()
        if key_l in DF_SECTION_KEYS or key_l in known["df"]:
            df_values[key_l] = value
        elif key_l in known[model_section]:
            model_values[key_l] = value
        else:
            unknown.append(key)
    if unknown:
        choices = sorted(known["df"] | known[model_section])
        raise ModelConfigError(
            f"unknown {arch} model parameter(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(choices)}"
        )
    return df_values, model_values


def _ini_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@contextmanager
def _configured(arch: str, params: Mapping[str, Any]) -> Iterator[tuple[types.ModuleType, Any]]:
    """Load deepfilternet's global config with `params` set; yield (arch module, ModelParams)."""
    module = _arch_module(arch)
    df_values, model_values = _split_params(arch, params)
    with _CONFIG_LOCK:
        config = _df_config()
        config.use_defaults(allow_reload=True)
        section = module.ModelParams.section
        for sec, values in (("df", df_values), (section, model_values)):
            if not config.parser.has_section(sec):
                config.parser.add_section(sec)
            for key, value in values.items():
                config.parser.set(sec, key, _ini_value(value))
        yield module, module.ModelParams()


def build_dfnet(arch: str = "dfn3", **params: Any) -> nn.Module:
    """Build deepfilternet's DfNet for `arch` ("dfn3" or "dfn2") from keyword parameters.

    Parameter names are those of DeepFilterNet's config.ini (e.g. `conv_ch`, `emb_hidden_dim`,
    `linear_groups`, `df_order`, `nb_df`); lists may be given for comma-separated values
    (`conv_kernel=[1, 3]`). Unknown names raise ModelConfigError listing the known ones.
    """
    with _configured(arch, params) as (module, p):
        df_state = importlib.import_module("libdf").DF(
            sr=p.sr,
            fft_size=p.fft_size,
            hop_size=p.hop_size,
            nb_bands=p.nb_erb,
            min_nb_erb_freqs=p.min_nb_freqs,
        )
        erb_fb = import_df_module("modules").erb_fb
        erb = erb_fb(df_state.erb_widths(), p.sr, inverse=False)
        erb_inverse = erb_fb(df_state.erb_widths(), p.sr, inverse=True)
        return module.DfNet(erb, erb_inverse, run_df=True, train_mask=True)


def resolved_model_params(arch: str, **params: Any) -> dict[str, str]:
    """All parameters (defaults filled in) that `build_dfnet(arch, **params)` uses, as INI strings."""
    with _configured(arch, params) as (module, _):
        parser = _df_config().parser
        return {**dict(parser["df"]), **dict(parser[module.ModelParams.section])}
