"""Released DeepFilterNet model folders (deepfilternet's format), loaded into dfablate's models.

A folder such as the DeepFilterNet3 zip users download holds `config.ini` (sections `[train]`
with `model = deepfilternet3|deepfilternet2`, `[df]` and `[deepfilternet]`) and
`checkpoints/model_<epoch>.ckpt.best` (plain state dicts). `load_upstream_model` picks the
checkpoint deepfilternet would (highest epoch among the `.ckpt.best` files), builds the native
model from the config's parameters and loads the weights, so `dfablate evaluate upstream=DIR`
scores a released model with the same pipeline as dfablate's own runs: with `original` features,
as libDF computes them.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfablate.errors import UserError
from dfablate.features import DfFeatures
from dfablate.models.build import build_model, resolved_model_params
from dfablate.models.params import DF_PARAMS, MODEL_PARAMS, ModelConfigError

# `[train] model` of config.ini -> dfablate architecture
UPSTREAM_ARCHITECTURES = {"deepfilternet3": "dfn3", "deepfilternet2": "dfn2"}
CHECKPOINT = re.compile(r"^model_(\d+)\.ckpt\.best$")
NORM = "original"  # libDF's unit_norm: what every released model was trained with


@dataclass
class UpstreamModel:
    """A released model: its features, the native model with its weights, and what it is."""

    features: DfFeatures
    model: nn.Module
    checkpoint: Path
    arch: str
    label: str


def read_config(folder: Path) -> tuple[str, dict[str, str]]:
    """(arch, model parameters) from `folder/config.ini`, keeping only the names the architecture
    reads (deepfilternet ignores the others, e.g. older keys left in released files)."""
    path = folder / "config.ini"
    if not path.is_file():
        raise UserError(f"upstream={folder}: no config.ini (expected a DeepFilterNet model folder)")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise UserError(f"{path}: not a readable config.ini ({type(exc).__name__})") from None
    model_name = parser.get("train", "model", fallback=None)
    if model_name not in UPSTREAM_ARCHITECTURES:
        raise UserError(
            f"{path}: [train] model = {model_name}; supported: "
            f"{', '.join(sorted(UPSTREAM_ARCHITECTURES))}"
        )
    arch = UPSTREAM_ARCHITECTURES[model_name]
    df_names = {name for name, _, _ in DF_PARAMS}
    model_names = {name for name, _, _ in MODEL_PARAMS[arch]}
    params: dict[str, str] = {}
    if parser.has_section("df"):
        params |= {k: v for k, v in parser.items("df") if k in df_names}
    if parser.has_section("deepfilternet"):
        section = dict(parser.items("deepfilternet"))
        params |= {k: v for k, v in section.items() if k in model_names}
        # deepfilternet moves these from an old [deepfilternet] into [df] (`Config._fix_df`)
        params |= {k: section[k] for k in ("df_order", "df_lookahead") if k in section}
    return arch, params


def best_checkpoint(folder: Path) -> Path:
    """The `checkpoints/model_<epoch>.ckpt.best` with the highest epoch, as deepfilternet picks."""
    found = [
        (int(m[1]), p)
        for p in (folder / "checkpoints").glob("*.ckpt.best")
        if (m := CHECKPOINT.match(p.name))
    ]
    if not found:
        raise UserError(f"upstream={folder}: no checkpoints/model_<epoch>.ckpt.best")
    return max(found)[1]


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a model state dict")
    # deepfilternet's own loader: old names, and keys it ignores
    state = {k.replace("clc", "df"): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.endswith(".h0") and "erb_comp" not in k}


def load_upstream_model(folder: str | Path) -> UpstreamModel:
    """The released model in `folder`, rebuilt natively; UserError naming what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"upstream={folder}: folder not found")
    arch, given = read_config(folder)
    checkpoint = best_checkpoint(folder)
    try:
        params = resolved_model_params(arch, **given)
        model = build_model(arch, **params)
    except ModelConfigError as exc:
        raise UserError(f"{folder / 'config.ini'}: {exc}") from None
    try:
        model.load_state_dict(_state_dict(checkpoint), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(
            f"{checkpoint}: does not fit the {arch} model of config.ini ({' '.join(first[:2])})"
        ) from None
    features_params: dict[str, Any] = {
        "sr": int(params["sr"]),
        "fft_size": int(params["fft_size"]),
        "hop_size": int(params["hop_size"]),
        "nb_erb": int(params["nb_erb"]),
        "nb_df": int(params["nb_df"]),
        "min_nb_erb_freqs": int(params["min_nb_erb_freqs"]),
        "norm_tau": float(params["norm_tau"]),
    }
    return UpstreamModel(
        features=DfFeatures(norm=NORM, **features_params),
        model=model.eval(),
        checkpoint=checkpoint,
        arch=arch,
        label=f"upstream-{folder.resolve().name}",
    )
