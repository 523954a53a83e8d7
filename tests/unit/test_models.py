"""dfablate.models: DFN3/DFN2 built from plain values, equivalent to upstream deepfilternet's DfNet.

The equivalence tests load upstream's state dict into the native model (strict, and back) and
compare, on real speech with `original` and `fixed` features, the forward outputs (enhanced
spectrum, ERB mask, lsnr, DF coefficients) and one AdamW step of the recipe loss (gradients and
updated weights), for DFN3 and DFN2 at the released sizes and at the tiny size.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from upstream import build_upstream_dfnet, requires_reference, upstream_resolved_params

from dfablate.audio import load_audio
from dfablate.features import DfFeatures
from dfablate.losses import DfnLoss
from dfablate.models.build import build_model, resolved_model_params
from dfablate.models.params import ModelConfigError
from dfablate.training.task import compose_train_config

SR = 48000
FORWARD_ATOL = 1e-5
GRAD_RTOL = 1e-5
# the tiny sizes of configs/model/dfn3_tiny.yaml, applied to both architectures
TINY = {
    "conv_ch": 16,
    "emb_hidden_dim": 64,
    "emb_num_layers": 2,
    "linear_groups": 8,
    "df_hidden_dim": 64,
    "df_num_layers": 2,
}


def _recipe(model: str) -> dict:
    cfg = OmegaConf.to_container(compose_train_config([f"model={model}"]), resolve=True)
    return {"arch": cfg["model"]["arch"], "params": cfg["model"]["params"], "loss": cfg["loss"]}


def _variant(name: str) -> dict:
    if name == "dfn3":
        return _recipe("dfn3")
    if name == "dfn3_tiny":
        return _recipe("dfn3_tiny")
    if name == "dfn3_tiny_postfilter":  # the eval-time post-filter, other skip connections
        recipe = _recipe("dfn3_tiny")
        recipe["params"] |= {"mask_pf": True, "emb_gru_skip": "groupedlinear", "enc_concat": True}
        return recipe
    if name == "dfn2":
        return _recipe("dfn2")
    if name == "dfn2_tiny":
        recipe = _recipe("dfn2")
        recipe["params"] |= TINY
        return recipe
    if name == "dfn2_grouped_alpha":  # DFN2's code defaults: grouped GRUs, real_unfold + alpha
        recipe = _recipe("dfn2")
        recipe["params"] |= TINY | {
            "emb_hidden_dim": 128,  # upstream's grouped ERB decoder needs conv_ch * nb_erb / 4
            "gru_type": "grouped",
            "gru_groups": 4,
            "group_shuffle": True,
            "dfop_method": "real_unfold",
            "df_n_iter": 2,
            "mask_pf": True,
        }
        return recipe
    raise KeyError(name)


VARIANTS = ["dfn3", "dfn3_tiny", "dfn3_tiny_postfilter", "dfn2", "dfn2_tiny", "dfn2_grouped_alpha"]


@pytest.fixture(scope="module")
def speech_batch(speech_48k, noisy_48k) -> dict[str, torch.Tensor]:
    """Real 1.5 s crops: noisy and clean as a batch of 2 inputs, clean as the target."""
    clean = torch.from_numpy(load_audio(speech_48k, SR)[SR : SR + 3 * SR // 2])
    noisy = torch.from_numpy(load_audio(noisy_48k, SR)[SR : SR + 3 * SR // 2])
    return {"input": torch.stack([noisy, clean]), "target": torch.stack([clean, clean])}


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """(upstream DfNet, native DfNet with upstream's weights, recipe)."""
    recipe = _variant(name)
    torch.manual_seed(0)
    upstream = build_upstream_dfnet(recipe["arch"], **recipe["params"])
    native = build_model(recipe["arch"], **recipe["params"])
    native.load_state_dict(upstream.state_dict(), strict=True)
    return upstream, native, recipe


def _outputs(model: torch.nn.Module, feats) -> dict[str, torch.Tensor]:
    """The four forward outputs plus the DF coefficients the DF decoder produced."""
    seen = {}
    hook = model.df_dec.register_forward_hook(
        lambda _m, _i, out: seen.update(coefs=out[0] if isinstance(out, tuple) else out)
    )
    try:
        spec, mask, lsnr, fourth = model(feats.spec.clone(), feats.feat_erb, feats.feat_spec)
    finally:
        hook.remove()
    return {"spec": spec, "mask": mask, "lsnr": lsnr, "fourth": fourth, "coefs": seen["coefs"]}


@requires_reference
@pytest.mark.parametrize("norm", ["original", "fixed"])
@pytest.mark.parametrize("name", VARIANTS)
def test_forward_matches_upstream(name, norm, speech_batch):
    upstream, native, _ = _pair(name)
    feats = DfFeatures(norm=norm)(speech_batch["input"])
    for training in (True, False):  # batch statistics and running statistics
        upstream.train(training)
        native.train(training)
        with torch.no_grad():
            want, got = _outputs(upstream, feats), _outputs(native, feats)
        for key in want:
            assert got[key].shape == want[key].shape, key
            diff = float((got[key] - want[key]).abs().max())
            assert diff <= FORWARD_ATOL, f"{name} {norm} {key} training={training}: {diff}"
        assert float(want["spec"].abs().max()) > 0  # the comparison is not of zeros


@requires_reference
@pytest.mark.parametrize("norm", ["original", "fixed"])
@pytest.mark.parametrize("name", VARIANTS)
def test_one_training_step_matches_upstream(name, norm, speech_batch):
    upstream, native, recipe = _pair(name)
    features = DfFeatures(norm=norm)
    feats = features(speech_batch["input"])
    clean_spec = features(speech_batch["target"]).spec
    p = resolved_model_params(recipe["arch"], **recipe["params"])
    loss_fn = DfnLoss(
        features.window,
        lsnr_min=float(p["lsnr_min"]),
        lsnr_max=float(p["lsnr_max"]),
        **recipe["loss"],
    )
    after = {}
    for which, model in (("upstream", upstream), ("native", native)):
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, amsgrad=True)
        spec, _, lsnr, _ = model(feats.spec.clone(), feats.feat_erb, feats.feat_spec)
        loss, _ = loss_fn(clean_spec, feats.spec, spec, lsnr)
        loss.backward()
        grads = {n: t.grad.clone() for n, t in model.named_parameters() if t.grad is not None}
        optimizer.step()
        after[which] = (
            float(loss.detach()),
            grads,
            {n: t.detach().clone() for n, t in model.named_parameters()},
        )
    loss_u, grads_u, weights_u = after["upstream"]
    loss_n, grads_n, weights_n = after["native"]
    assert loss_n == pytest.approx(loss_u, rel=1e-6)
    assert grads_n.keys() == grads_u.keys() and len(grads_u) > 10
    for key, want in grads_u.items():
        scale = float(want.abs().max())
        diff = float((grads_n[key] - want).abs().max())
        assert diff <= GRAD_RTOL * scale + 1e-12, f"{name} {norm} grad {key}: {diff} vs {scale}"
    for key, want in weights_u.items():
        assert torch.allclose(weights_n[key], want, rtol=1e-5, atol=1e-7), key


@requires_reference
@pytest.mark.parametrize("name", VARIANTS)
def test_a_seed_gives_upstreams_initial_weights(name):
    """Layers are built in upstream's order, so one seed initialises both nets the same (a run's
    seed keeps meaning the same weights when the layers are reorganised)."""
    recipe = _variant(name)
    torch.manual_seed(3)
    upstream = build_upstream_dfnet(recipe["arch"], **recipe["params"]).state_dict()
    torch.manual_seed(3)
    native = build_model(recipe["arch"], **recipe["params"]).state_dict()
    assert [k for k, v in native.items() if not torch.equal(v, upstream[k])] == []


@requires_reference
@pytest.mark.parametrize("name", VARIANTS)
def test_state_dicts_load_both_ways_and_match_parameter_counts(name):
    upstream, native, _ = _pair(name)
    assert [(k, v.shape) for k, v in native.state_dict().items()] == [
        (k, v.shape) for k, v in upstream.state_dict().items()
    ]
    torch.manual_seed(1)
    other = build_model(_variant(name)["arch"], **_variant(name)["params"])
    upstream.load_state_dict(other.state_dict(), strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(upstream.state_dict()[key], value), key


@requires_reference
@pytest.mark.parametrize("name", VARIANTS)
def test_resolved_params_are_deepfilternets(name):
    recipe = _variant(name)
    want = upstream_resolved_params(recipe["arch"], **recipe["params"])
    assert resolved_model_params(recipe["arch"], **recipe["params"]) == want
    # and with nothing given: deepfilternet's code defaults
    assert resolved_model_params(recipe["arch"]) == upstream_resolved_params(recipe["arch"])


def test_released_sizes():
    """Parameter counts of the released configs (DFN3 2.14 M, DFN2 2.31 M, tiny 130 k: the README)."""
    counts = {
        name: sum(t.numel() for t in build_model(v["arch"], **v["params"]).parameters())
        for name, v in ((n, _variant(n)) for n in ("dfn3", "dfn2", "dfn3_tiny"))
    }
    assert counts == {"dfn3": 2_135_484, "dfn2": 2_306_236, "dfn3_tiny": 129_868}


def test_build_uses_given_values_and_no_global_state():
    small = build_model("dfn3", conv_ch=8, emb_hidden_dim=32, df_hidden_dim=32)
    convs = [m for m in small.enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 8
    default = build_model("dfn3")
    assert sum(t.numel() for t in default.parameters()) == 2_364_520  # deepfilternet's defaults
    frames = 12
    out = small(
        torch.randn(1, 1, frames, 481, 2),
        torch.randn(1, 1, frames, 32),
        torch.randn(1, 1, frames, 96, 2),
    )
    assert out[0].shape == (1, 1, frames, 481, 2) and out[3].shape == (1, 5, frames, 96, 2)


def test_resolved_params_are_strings_with_defaults():
    params = resolved_model_params("dfn3", conv_ch=16, conv_kernel=[1, 3], df_lookahead=2)
    assert params["conv_ch"] == "16" and params["conv_kernel"] == "1,3"
    assert params["df_lookahead"] == "2" and params["min_nb_erb_freqs"] == "2"
    assert params["emb_num_layers"] == "2" and params["pad_mode"] == "input"


def test_unknown_parameter_names_known_ones():
    with pytest.raises(
        ModelConfigError, match="unknown dfn3 model parameter.*foo.*known: .*conv_ch"
    ):
        build_model("dfn3", foo=1)


def test_unknown_architecture():
    with pytest.raises(ModelConfigError, match="known: dfn2, dfn3"):
        build_model("dfn9")


@pytest.mark.parametrize(
    ("arch", "params", "message"),
    [
        ("dfn2", {}, "df_output_layer=linear is not supported"),
        ("dfn3", {"conv_kernel": "x"}, "conv_kernel='x'"),
        ("dfn3", {"conv_ch": 12, "nb_df": 96, "enc_linear_groups": 7}, "divisible"),
        ("dfn3", {"lsnr_dropout": True}, "lsnr_dropout"),
    ],
)
def test_invalid_values_name_the_parameter(arch, params, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(arch, **params)
