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
    DeepFilter,
    GroupedLinearEinsum,
    Mask,
    SqueezedGRU_S,
    relu,
    shift_features,
)
from dfablate.models.params import ModelConfigError
from dfablate.models.stages import DfDecoder, ErbDecoder, FeatureEncoder, skip_factory

PI = 3.1415926535897932384626433


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
        skip = skip_factory(
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


def _erb_decoder(p: Mapping[str, Any]) -> ErbDecoder:
    """DFN3's ERB decoder: a squeezed GRU (skip `emb_gru_skip`) that ends in the convolutions'
    width; transposed convolutions of `convt_kernel`."""
    emb_dim = p["conv_ch"] * p["nb_erb"] // 4
    emb_gru = SqueezedGRU_S(
        emb_dim,
        p["emb_hidden_dim"],
        output_size=emb_dim,
        num_layers=p["emb_num_layers"] - 1,
        gru_skip_op=skip_factory(
            p["emb_gru_skip"], emb_dim, emb_dim, p["linear_groups"], "emb_gru_skip"
        ),
        linear_groups=p["linear_groups"],
        linear_act_layer=relu,
    )
    return ErbDecoder(p, emb_gru, p["convt_kernel"])


def _df_decoder(p: Mapping[str, Any]) -> DfDecoder:
    """DFN3's DF decoder, on the encoder's `conv_ch * nb_erb / 4`-wide embedding."""
    emb_dim = p["conv_ch"] * p["nb_erb"] // 4
    df_gru = partial(
        SqueezedGRU_S, emb_dim, p["df_hidden_dim"], num_layers=p["df_num_layers"],
        linear_act_layer=relu,
    )  # fmt: skip
    return DfDecoder(p, df_gru, emb_dim)


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
        self.erb_dec = _erb_decoder(p)
        self.mask = Mask(erb_inv_fb)
        self.post_filter = p["mask_pf"]
        self.post_filter_beta = p["pf_beta"]
        self.df_op = DeepFilter(p["nb_df"], p["df_order"], p["df_lookahead"])
        self.df_dec = _df_decoder(p)

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
        coefs, _ = self.df_dec(emb, c0)  # [B, T, F', 2 * O]
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
