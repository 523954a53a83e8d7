"""DeepFilterNet3, ported from `df.deepfilternet3` (deepfilternet 0.5.6) to plain arguments.

Same modules, parameter names and shapes as upstream's `DfNet`, so state dicts load both ways
with `strict=True`; the tests check outputs and gradients against upstream. Parameters are the
typed values of `dfablate.models.params` (config.ini names) instead of a global config.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from dfablate.models.layers import (
    Add,
    Concat,
    Conv2dNormAct,
    ConvTranspose2dNormAct,
    DeepFilter,
    FeatureEncoder,
    GroupedLinearEinsum,
    Mask,
    SqueezedGRU_S,
    relu,
    shift_features,
)
from dfablate.models.params import ModelConfigError

PI = 3.1415926535897932384626433


def _skip_op(kind: str, in_dim: int, out_dim: int, groups: int, name: str) -> Any:
    """A GRU skip connection factory: none, identity or a grouped linear map."""
    if kind == "none":
        return None
    if kind == "identity":
        if in_dim != out_dim:
            raise ModelConfigError(f"{name}=identity needs equal sizes, got {in_dim}, {out_dim}")
        return nn.Identity
    if kind == "groupedlinear":
        return partial(GroupedLinearEinsum, in_dim, out_dim, groups)
    raise ModelConfigError(f"{name} must be none, identity or groupedlinear, got {kind!r}")


class Encoder(FeatureEncoder):
    """ERB and deep-filter feature convolutions -> shared embedding (GRU) -> local SNR."""

    def __init__(self, p: Mapping[str, Any]):
        super().__init__()
        self._init_convs(p)
        ch = p["conv_ch"]
        emb_in_dim = emb_out_dim = ch * p["nb_erb"] // 4
        df_fc_emb = GroupedLinearEinsum(
            ch * p["nb_df"] // 2, emb_in_dim, groups=p["enc_linear_groups"]
        )
        self.df_fc_emb = nn.Sequential(df_fc_emb, relu())
        if p["enc_concat"]:
            emb_in_dim *= 2
            self.combine = Concat()
        else:
            self.combine = Add()
        if p["emb_gru_skip_enc"] == "identity" and emb_in_dim != emb_out_dim:
            raise ModelConfigError("emb_gru_skip_enc=identity needs enc_concat=false")
        # upstream's encoder skip maps emb_out_dim -> emb_out_dim
        skip = _skip_op(
            p["emb_gru_skip_enc"], emb_out_dim, emb_out_dim, p["linear_groups"], "emb_gru_skip_enc"
        )
        self.emb_gru = SqueezedGRU_S(
            emb_in_dim,
            p["emb_hidden_dim"],
            output_size=emb_out_dim,
            num_layers=1,
            gru_skip_op=skip,
            linear_groups=p["linear_groups"],
            linear_act_layer=relu,
        )
        self._init_lsnr(emb_out_dim, p)


class ErbDecoder(nn.Module):
    """Embedding + encoder skips -> ERB gain mask [B, 1, T, E]."""

    def __init__(self, p: Mapping[str, Any]):
        super().__init__()
        ch = p["conv_ch"]
        emb_dim = ch * p["nb_erb"] // 4
        self.emb_gru = SqueezedGRU_S(
            emb_dim,
            p["emb_hidden_dim"],
            output_size=emb_dim,
            num_layers=p["emb_num_layers"] - 1,
            gru_skip_op=_skip_op(
                p["emb_gru_skip"], emb_dim, emb_dim, p["linear_groups"], "emb_gru_skip"
            ),
            linear_groups=p["linear_groups"],
            linear_act_layer=relu,
        )
        tconv_layer = partial(
            ConvTranspose2dNormAct, kernel_size=p["convt_kernel"], bias=False, separable=True
        )
        conv_layer = partial(Conv2dNormAct, bias=False, separable=True)
        self.conv3p = conv_layer(ch, ch, kernel_size=1)
        self.convt3 = conv_layer(ch, ch, kernel_size=p["conv_kernel"])
        self.conv2p = conv_layer(ch, ch, kernel_size=1)
        self.convt2 = tconv_layer(ch, ch, fstride=2)
        self.conv1p = conv_layer(ch, ch, kernel_size=1)
        self.convt1 = tconv_layer(ch, ch, fstride=2)
        self.conv0p = conv_layer(ch, ch, kernel_size=1)
        self.conv0_out = conv_layer(
            ch, 1, kernel_size=p["conv_kernel"], activation_layer=nn.Sigmoid
        )

    def forward(self, emb: Tensor, e3: Tensor, e2: Tensor, e1: Tensor, e0: Tensor) -> Tensor:
        b, _, t, f8 = e3.shape
        emb, _ = self.emb_gru(emb)
        emb = emb.view(b, t, f8, -1).permute(0, 3, 1, 2)  # [B, C, T, E/4]
        e3 = self.convt3(self.conv3p(e3) + emb)
        e2 = self.convt2(self.conv2p(e2) + e3)
        e1 = self.convt1(self.conv1p(e1) + e2)
        return self.conv0_out(self.conv0p(e0) + e1)  # [B, 1, T, E]


class DfDecoder(nn.Module):
    """Embedding + DF pathway conv -> deep-filter coefficients [B, T, nb_df, 2 * df_order].

    `df_fc_a` (upstream's DF "alpha" head) is never used by DFN3's forward; it is kept only so
    state dicts match upstream's in both directions.
    """

    def __init__(self, p: Mapping[str, Any]):
        super().__init__()
        ch = p["conv_ch"]
        emb_in_dim = ch * p["nb_erb"] // 4
        hidden = p["df_hidden_dim"]
        self.df_bins = p["nb_df"]
        self.df_out_ch = p["df_order"] * 2
        kt = p["df_pathway_kernel_size_t"]
        self.df_convp = Conv2dNormAct(
            ch, self.df_out_ch, fstride=1, kernel_size=(kt, 1), separable=True, bias=False
        )
        self.df_gru = SqueezedGRU_S(
            emb_in_dim, hidden, num_layers=p["df_num_layers"], linear_act_layer=relu
        )
        skip = str(p["df_gru_skip"]).lower()
        if skip == "identity" and p["emb_hidden_dim"] != hidden:
            raise ModelConfigError("df_gru_skip=identity needs emb_hidden_dim == df_hidden_dim")
        factory = _skip_op(skip, emb_in_dim, hidden, p["linear_groups"], "df_gru_skip")
        self.df_skip: nn.Module | None = factory() if factory is not None else None
        df_out = GroupedLinearEinsum(hidden, self.df_bins * self.df_out_ch, p["linear_groups"])
        self.df_out = nn.Sequential(df_out, nn.Tanh())
        self.df_fc_a = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, emb: Tensor, c0: Tensor) -> Tensor:
        b, t, _ = emb.shape
        c, _ = self.df_gru(emb)  # [B, T, H]
        if self.df_skip is not None:
            c = c + self.df_skip(emb)
        c0 = self.df_convp(c0).permute(0, 2, 3, 1)  # [B, T, F', 2 * O]
        return self.df_out(c).view(b, t, self.df_bins, self.df_out_ch) + c0


class DfNet(nn.Module):
    """DeepFilterNet3: ERB mask above `nb_df` bins, deep filtering below.

    forward(spec [B, 1, T, F, 2], feat_erb [B, 1, T, E], feat_spec [B, 1, T, nb_df, 2]) ->
    (enhanced spec [B, 1, T, F, 2], ERB mask [B, 1, T, E], lsnr [B, T, 1],
    DF coefficients [B, df_order, T, nb_df, 2]). Features are shifted `conv_lookahead` frames
    into the past; the deep filter reaches `df_lookahead` frames ahead.
    """

    def __init__(self, erb_fb: Tensor, erb_inv_fb: Tensor, p: Mapping[str, Any]):
        super().__init__()
        if p["nb_erb"] % 8:
            raise ModelConfigError(f"nb_erb must be divisible by 8, got {p['nb_erb']}")
        if p["conv_lookahead"] > 0 and p["conv_lookahead"] < p["df_lookahead"]:
            raise ModelConfigError("conv_lookahead must be >= df_lookahead")
        if p["nb_df"] + 1 >= p["fft_size"] // 2 + 1:
            raise ModelConfigError(f"nb_df must be < fft_size // 2, got {p['nb_df']}")
        if p["df_n_iter"] != 1:
            raise ModelConfigError(f"dfn3 supports df_n_iter=1 only, got {p['df_n_iter']}")
        if p["lsnr_dropout"]:
            raise ModelConfigError(
                "lsnr_dropout=true is not supported (upstream's version is for batch size 1)"
            )
        self.conv_lookahead = p["conv_lookahead"]
        self.nb_df = p["nb_df"]
        self.df_order = p["df_order"]
        self.erb_fb: Tensor
        self.register_buffer("erb_fb", erb_fb)
        self.enc = Encoder(p)
        self.erb_dec = ErbDecoder(p)
        self.mask = Mask(erb_inv_fb)
        self.post_filter = p["mask_pf"]
        self.post_filter_beta = p["pf_beta"]
        self.df_op = DeepFilter(p["nb_df"], p["df_order"], p["df_lookahead"])
        self.df_dec = DfDecoder(p)

    def forward(
        self, spec: Tensor, feat_erb: Tensor, feat_spec: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feat_spec = feat_spec.squeeze(1).permute(0, 3, 1, 2)  # [B, 2, T, nb_df]
        e0, e1, e2, e3, emb, c0, lsnr = self.enc(
            shift_features(feat_erb, self.conv_lookahead),
            shift_features(feat_spec, self.conv_lookahead),
        )
        m = self.erb_dec(emb, e3, e2, e1, e0)
        spec_m = self.mask(spec, m)
        coefs = self.df_dec(emb, c0)  # [B, T, F', 2 * O]
        coefs = coefs.unflatten(-1, (-1, 2)).permute(0, 3, 1, 2, 4)  # [B, O, T, F', 2]
        low = self.df_op(spec[..., : self.nb_df, :], coefs)
        spec_e = torch.cat((low, spec_m[..., self.nb_df :, :].to(low.dtype)), dim=-2)
        if self.post_filter:
            spec_e = self._post_filter(spec_e, spec)
        return spec_e, m, lsnr, coefs

    def _post_filter(self, spec_e: Tensor, spec: Tensor) -> Tensor:
        beta, eps = self.post_filter_beta, 1e-12
        mag_e = torch.view_as_complex(spec_e.contiguous()).abs()
        mag = torch.view_as_complex(spec.float().contiguous()).abs()
        mask = (mag_e / mag.add(eps)).clamp(eps, 1)
        mask_sin = mask * torch.sin(PI * mask / 2).clamp_min(eps)
        pf = (1 + beta) / (1 + beta * mask.div(mask_sin).pow(2))
        return spec_e * pf.unsqueeze(-1)
