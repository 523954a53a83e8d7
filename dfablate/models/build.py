"""Building a DeepFilterNet from config.ini-named parameters (`build_model`), and the parameters
a built model used (`resolved_model_params`, part of a checkpoint's model identity)."""

from __future__ import annotations

from typing import Any

from torch import nn

from dfablate.models import dfn2, dfn3
from dfablate.models.layers import erb_filterbank, erb_widths
from dfablate.models.params import ModelConfigError, resolve_params, typed_params

ARCHITECTURES = {"dfn3": dfn3.DfNet, "dfn2": dfn2.DfNet}


def resolved_model_params(arch: str, **params: Any) -> dict[str, str]:
    """All parameters (defaults filled in) that `build_model(arch, **params)` uses, as strings."""
    return resolve_params(arch, **params)


def build_model(arch: str = "dfn3", **params: Any) -> nn.Module:
    """Build DeepFilterNet `arch` ("dfn3" or "dfn2") from config.ini-named keyword parameters.

    Lists may be given for comma-separated values (`conv_kernel=[1, 3]`). Unknown names or values
    raise ModelConfigError naming them.
    """
    p = typed_params(arch, resolve_params(arch, **params))
    widths = erb_widths(p["sr"], p["fft_size"], p["nb_erb"], p["min_nb_erb_freqs"])
    erb = erb_filterbank(widths, p["sr"])
    erb_inverse = erb_filterbank(widths, p["sr"], inverse=True)
    try:
        return ARCHITECTURES[arch](erb, erb_inverse, p)
    except ValueError as exc:  # layer size checks (e.g. groups that do not divide a size)
        if isinstance(exc, ModelConfigError):
            raise
        raise ModelConfigError(f"{arch} model parameters: {exc}") from None
