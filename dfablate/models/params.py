"""DeepFilterNet model parameters: names, defaults and types, without deepfilternet's INI config.

deepfilternet 0.5.6 reads its model parameters from a process-global INI config (`df.config`):
a `[df]` section shared by all models (`DfParams`) and a `[deepfilternet]` section per
architecture (`ModelParams` of `df.deepfilternet3` / `df.deepfilternet2`), each value with a code
default. This module holds the same names, defaults and casts as plain tables, so that

- `resolve_params` gives exactly the strings deepfilternet's config held for the same keyword
  values (user values as `str()`, lists comma-joined; defaults as deepfilternet writes them). These
  strings are part of a checkpoint's model identity, so runs written with deepfilternet still match.
- `typed_params` turns those strings into Python values with deepfilternet's casts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class ModelConfigError(ValueError):
    """A model parameter that the architecture does not know, or an unknown architecture."""


def _bool(value: str) -> bool:
    """deepfilternet's bool cast (`df.config.Config.cast`)."""
    text = str(value).lower()
    if text in {"true", "yes", "y", "on", "1"}:
        return True
    if text in {"false", "no", "n", "off", "0"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _int_list(value: str) -> list[int]:
    return [int(v) for v in str(value).split(",")]


# (name, default as deepfilternet's config stores it, cast), in deepfilternet's order.
Param = tuple[str, str, Callable[[str], Any]]

# `df.config.DfParams`: the [df] section.
DF_PARAMS: tuple[Param, ...] = (
    ("sr", "48000", int),
    ("fft_size", "960", int),
    ("hop_size", "480", int),
    ("nb_erb", "32", int),
    ("nb_df", "96", int),
    ("norm_tau", "1", float),
    ("lsnr_max", "35", int),
    ("lsnr_min", "-15", int),
    ("min_nb_erb_freqs", "2", int),
    ("df_order", "5", int),
    ("df_lookahead", "0", int),
    ("pad_mode", "input", str),
)

# `df.deepfilternet3.ModelParams`: the [deepfilternet] section of DFN3.
DFN3_PARAMS: tuple[Param, ...] = (
    ("conv_lookahead", "0", int),
    ("conv_ch", "16", int),
    ("conv_depthwise", "True", _bool),
    ("convt_depthwise", "True", _bool),
    ("conv_kernel", "1,3", _int_list),
    ("convt_kernel", "1,3", _int_list),
    ("conv_kernel_inp", "3,3", _int_list),
    ("emb_hidden_dim", "256", int),
    ("emb_num_layers", "2", int),
    ("emb_gru_skip_enc", "none", str),
    ("emb_gru_skip", "none", str),
    ("df_hidden_dim", "256", int),
    ("df_gru_skip", "none", str),
    ("df_pathway_kernel_size_t", "1", int),
    ("enc_concat", "False", _bool),
    ("df_num_layers", "3", int),
    ("df_n_iter", "1", int),
    ("linear_groups", "1", int),
    ("enc_linear_groups", "16", int),
    ("mask_pf", "False", _bool),
    ("pf_beta", "0.02", float),
    ("lsnr_dropout", "False", _bool),
)

# `df.deepfilternet2.ModelParams`: the [deepfilternet] section of DFN2.
DFN2_PARAMS: tuple[Param, ...] = (
    ("conv_lookahead", "0", int),
    ("conv_ch", "16", int),
    ("conv_depthwise", "True", _bool),
    ("convt_depthwise", "True", _bool),
    ("conv_kernel", "1,3", _int_list),
    ("conv_kernel_inp", "3,3", _int_list),
    ("emb_hidden_dim", "256", int),
    ("emb_num_layers", "2", int),
    ("df_hidden_dim", "256", int),
    ("df_gru_skip", "none", str),
    ("df_output_layer", "linear", str),
    ("df_pathway_kernel_size_t", "1", int),
    ("enc_concat", "False", _bool),
    ("df_num_layers", "3", int),
    ("df_n_iter", "2", int),
    ("gru_type", "grouped", str),
    ("gru_groups", "1", int),
    ("linear_groups", "1", int),
    ("group_shuffle", "True", _bool),
    ("dfop_method", "real_unfold", str),
    ("mask_pf", "False", _bool),
)

MODEL_PARAMS: dict[str, tuple[Param, ...]] = {"dfn3": DFN3_PARAMS, "dfn2": DFN2_PARAMS}


def _ini_value(value: Any) -> str:
    """A value as deepfilternet's config holds it once set: lists comma-joined, else `str()`."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _tables(arch: str) -> tuple[tuple[Param, ...], tuple[Param, ...]]:
    if arch not in MODEL_PARAMS:
        raise ModelConfigError(
            f"unknown model architecture {arch!r}; known: {', '.join(sorted(MODEL_PARAMS))}"
        )
    return DF_PARAMS, MODEL_PARAMS[arch]


def resolve_params(arch: str, **params: Any) -> dict[str, str]:
    """Every parameter of `arch` as deepfilternet's config would hold it, given `params`.

    Keys are config.ini names (case-insensitive on input, lower-case out): the [df] section first
    (given values, then the remaining defaults), then the model section (likewise), as
    deepfilternet's parser orders them. Unknown names raise ModelConfigError listing the known ones.
    """
    df_table, model_table = _tables(arch)
    given = {key.lower(): _ini_value(value) for key, value in params.items()}
    known = [name for name, _, _ in (*df_table, *model_table)]
    unknown = sorted(key for key in params if key.lower() not in known)
    if unknown:
        raise ModelConfigError(
            f"unknown {arch} model parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    resolved: dict[str, str] = {}
    for table in (df_table, model_table):
        names = [name for name, _, _ in table]
        resolved |= {key: value for key, value in given.items() if key in names}
        resolved |= {name: default for name, default, _ in table if name not in resolved}
    return resolved


def typed_params(arch: str, resolved: Mapping[str, str]) -> dict[str, Any]:
    """Resolved strings -> Python values with deepfilternet's casts (ModelConfigError if invalid)."""
    df_table, model_table = _tables(arch)
    typed = {}
    for name, _, cast in (*df_table, *model_table):
        try:
            typed[name] = cast(resolved[name])
        except (KeyError, ValueError) as exc:
            raise ModelConfigError(
                f"{arch} model parameter {name}={resolved.get(name)!r}: {exc}"
            ) from None
    return typed
