"""The bridge to deepfilternet: submodules import without torchaudio, DfNet builds from values."""

from __future__ import annotations

import sys

import pytest
import torch

from dfablate.dfn import ModelConfigError, build_dfnet, import_df_module, resolved_model_params


@pytest.mark.parametrize("name", ["deepfilternet3", "deepfilternet2", "modules", "config", "sepm"])
def test_df_submodules_import_without_torchaudio(name):
    module = import_df_module(name)
    assert module.__name__ == f"df.{name}"
    assert "torchaudio" not in sys.modules


def test_build_dfn3_defaults_matches_code_defaults():
    model = build_dfnet("dfn3")
    assert sum(p.numel() for p in model.parameters()) == 2_364_520


def test_build_dfnet_uses_given_values_and_runs_forward():
    model = build_dfnet(
        "dfn3",
        conv_ch=16,
        emb_hidden_dim=64,
        df_hidden_dim=64,
        conv_lookahead=2,
        df_lookahead=2,
        pad_mode="output",
        conv_kernel=[1, 3],
        linear_groups=8,
    )
    convs = [m for m in model.enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 16
    params = resolved_model_params("dfn3", conv_ch=16, conv_kernel=[1, 3], df_lookahead=2)
    assert params["conv_ch"] == "16" and params["conv_kernel"] == "1,3"
    assert params["df_lookahead"] == "2" and params["min_nb_erb_freqs"] == "2"
    frames = 20
    spec = torch.randn(1, 1, frames, 481, 2)
    feat_erb = torch.randn(1, 1, frames, 32)
    feat_spec = torch.randn(1, 1, frames, 96, 2)
    out = model(spec, feat_erb, feat_spec)
    assert out[0].shape == spec.shape
    # a later build with other values is not affected by the earlier one (no leaking global state)
    small, default = build_dfnet("dfn3", conv_ch=8), build_dfnet("dfn3")
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters())
    assert sum(p.numel() for p in default.parameters()) == 2_364_520


def test_build_dfn2():
    model = build_dfnet("dfn2")
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


def test_unknown_parameter_names_known_ones():
    with pytest.raises(
        ModelConfigError, match="unknown dfn3 model parameter.*foo.*known: .*conv_ch"
    ):
        build_dfnet("dfn3", foo=1)


def test_unknown_architecture():
    with pytest.raises(ModelConfigError, match="known: dfn2, dfn3"):
        build_dfnet("dfn9")
