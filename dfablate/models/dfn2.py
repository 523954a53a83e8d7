"""DeepFilterNet2, ported from `df.deepfilternet2` (deepfilternet 0.5.6) to plain arguments.

Same modules, parameter names and shapes as upstream's `DfNet` (state dicts load both ways with
`strict=True`). Supported: `gru_type` grouped or squeeze, `dfop_method` df or real_unfold, and
`df_output_layer=groupedlinear`. Upstream's deprecated `linear` output layer is refused: its
forward fails in deepfilternet 0.5.6 itself (a `view` of a non-contiguous tensor).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from torch import Tensor, nn

from dfablate.models.layers import (
    Add,
    Concat,
    Conv2dNormAct,
    ConvTranspose2dNormAct,
    DeepFilter,
    DfOpRealUnfold,
    FeatureEncoder,
    GroupedGRU,
    GroupedLinear,
    GroupedLinearEinsum,
    Mask,
    SqueezedGRU,
    relu,
    shift_features,
)
from dfablate.models.params import ModelConfigError


def _grouped_gru(p: Mapping[str, Any], input_size: int, hidden: int, layers: int) -> GroupedGRU:
    return GroupedGRU(
        input_size,
        hidden,
        num_layers=layers,
        groups=p["gru_groups"],
        shuffle=p["group_shuffle"],
        add_outputs=True,
    )


class Encoder(FeatureEncoder):
    """ERB and deep-filter feature convolutions -> shared embedding (GRU) -> local SNR."""

    def __init__(self, p: Mapping[str, Any]):
        super().__init__()
        self._init_convs(p)
        ch = p["conv_ch"]
        emb_in_dim = ch * p["nb_erb"] // 4
        emb_out_dim = p["emb_hidden_dim"]
        if p["gru_type"] == "grouped":
            self.df_fc_emb = GroupedLinear(
                ch * p["nb_df"] // 2, emb_in_dim, groups=p["linear_groups"]
            )
        else:
            self.df_fc_emb = nn.Sequential(
                GroupedLinearEinsum(ch * p["nb_df"] // 2, emb_in_dim, p["linear_groups"]), relu()
            )
        if p["enc_concat"]:
            emb_in_dim *= 2
            self.combine = Concat()
        else:
            self.combine = Add()
        if p["gru_type"] == "grouped":
            self.emb_gru = _grouped_gru(p, emb_in_dim, emb_out_dim, 1)
        else:
            self.emb_gru = SqueezedGRU(
                emb_in_dim,
                emb_out_dim,
                num_layers=1,
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
        hidden = p["emb_hidden_dim"]
        self.fc_emb: nn.Module
        if p["gru_type"] == "grouped":
            self.emb_gru = _grouped_gru(p, emb_dim, hidden, p["emb_num_layers"] - 1)
            fc_emb = GroupedLinear(
                hidden, emb_dim, groups=p["linear_groups"], shuffle=p["group_shuffle"]
            )
            self.fc_emb = nn.Sequential(fc_emb, relu())
        else:
            self.emb_gru = SqueezedGRU(
                hidden,
                hidden,
                output_size=emb_dim,
                num_layers=p["emb_num_layers"] - 1,
                gru_skip_op=nn.Identity,
                linear_groups=p["linear_groups"],
                linear_act_layer=relu,
            )
            self.fc_emb = nn.Identity()
        tconv_layer = partial(
            ConvTranspose2dNormAct, kernel_size=p["conv_kernel"], bias=False, separable=True
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
        emb = self.fc_emb(emb)
        emb = emb.view(b, t, f8, -1).permute(0, 3, 1, 2)
        e3 = self.convt3(self.conv3p(e3) + emb)
        e2 = self.convt2(self.conv2p(e2) + e3)
        e1 = self.convt1(self.conv1p(e1) + e2)
        return self.conv0_out(self.conv0p(e0) + e1)


class DfDecoder(nn.Module):
    """Embedding + DF pathway conv -> DF coefficients [B, T, nb_df, 2 * df_order] and the DF
    "alpha" [B, T, 1] (used by `dfop_method=real_unfold`, returned either way as upstream)."""

    def __init__(self, p: Mapping[str, Any]):
        super().__init__()
        ch = p["conv_ch"]
        hidden = p["df_hidden_dim"]
        self.df_bins = p["nb_df"]
        self.df_out_ch = p["df_order"] * 2
        kt = p["df_pathway_kernel_size_t"]
        self.df_convp = Conv2dNormAct(
            ch, self.df_out_ch, fstride=1, kernel_size=(kt, 1), separable=True, bias=False
        )
        self.df_gru: nn.Module
        if p["gru_type"] == "grouped":
            self.df_gru = _grouped_gru(p, p["emb_hidden_dim"], hidden, p["df_num_layers"])
        else:
            # linear_groups stays at SqueezedGRU's default (8) here, as upstream
            self.df_gru = SqueezedGRU(
                p["emb_hidden_dim"],
                hidden,
                num_layers=p["df_num_layers"],
                gru_skip_op=nn.Identity,
                linear_act_layer=relu,
            )
        skip = str(p["df_gru_skip"]).lower()
        self.df_skip: nn.Module | None
        if skip == "none":
            self.df_skip = None
        elif skip == "identity":
            if p["emb_hidden_dim"] != hidden:
                raise ModelConfigError("df_gru_skip=identity needs emb_hidden_dim == df_hidden_dim")
            self.df_skip = nn.Identity()
        elif skip == "groupedlinear":
            self.df_skip = GroupedLinearEinsum(p["emb_hidden_dim"], hidden, p["linear_groups"])
        else:
            raise ModelConfigError(f"df_gru_skip must be none, identity or groupedlinear: {skip!r}")
        df_out = GroupedLinearEinsum(hidden, self.df_bins * self.df_out_ch, p["linear_groups"])
        self.df_out = nn.Sequential(df_out, nn.Tanh())
        self.df_fc_a = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, emb: Tensor, c0: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = emb.shape
        c, _ = self.df_gru(emb)
        if self.df_skip is not None:
            c = c + self.df_skip(emb)
        c0 = self.df_convp(c0).permute(0, 2, 3, 1)  # [B, T, F', 2 * O]
        alpha = self.df_fc_a(c)  # [B, T, 1]
        c = self.df_out(c).view(b, t, self.df_bins, self.df_out_ch) + c0
        return c, alpha


class DfNet(nn.Module):
    """DeepFilterNet2: ERB mask on all bins, then deep filtering of the lowest `nb_df` bins
    (`df_n_iter` times).

    forward(spec [B, 1, T, F, 2], feat_erb [B, 1, T, E], feat_spec [B, 1, T, nb_df, 2]) ->
    (enhanced spec, ERB mask [B, 1, T, E], lsnr [B, T, 1], DF alpha [B, T, 1]).
    """

    def __init__(self, erb_fb: Tensor, erb_inv_fb: Tensor, p: Mapping[str, Any]):
        super().__init__()
        if p["nb_erb"] % 8:
            raise ModelConfigError(f"nb_erb must be divisible by 8, got {p['nb_erb']}")
        if p["gru_type"] not in ("grouped", "squeeze"):
            raise ModelConfigError(f"gru_type must be grouped or squeeze, got {p['gru_type']!r}")
        if p["df_output_layer"] != "groupedlinear":
            raise ModelConfigError(
                f"df_output_layer={p['df_output_layer']} is not supported: only groupedlinear "
                "(upstream's deprecated `linear` layer fails in its own forward)"
            )
        if p["dfop_method"] not in ("df", "real_unfold"):
            raise ModelConfigError(
                f"dfop_method must be df or real_unfold, got {p['dfop_method']!r}"
            )
        self.conv_lookahead = p["conv_lookahead"]
        self.df_order = p["df_order"]
        self.df_bins = p["nb_df"]
        self.df_iter = p["df_n_iter"]
        self.use_alpha = p["dfop_method"] == "real_unfold"
        self.erb_fb: Tensor
        self.register_buffer("erb_fb", erb_fb)
        self.enc = Encoder(p)
        self.erb_dec = ErbDecoder(p)
        self.mask = Mask(erb_inv_fb, post_filter=p["mask_pf"])
        self.df_op: nn.Module = (
            DfOpRealUnfold(p["nb_df"], p["df_order"], p["df_lookahead"])
            if self.use_alpha
            else DeepFilter(p["nb_df"], p["df_order"], p["df_lookahead"])
        )
        self.df_dec = DfDecoder(p)

    def _reshape_coefs(self, coefs: Tensor) -> Tensor:
        """[B, T, F', 2 * O] -> the layout of the DF op (upstream's DfOutputReshape*)."""
        if self.use_alpha:  # DfOutputReshapeOld: [B, T, O, F', 2] (reading the axes as O, 2, F')
            b, t = coefs.shape[:2]
            return coefs.reshape(b, t, self.df_order, 2, self.df_bins).transpose(3, 4)
        return coefs.unflatten(-1, (-1, 2)).permute(0, 3, 1, 2, 4)  # [B, O, T, F', 2]

    def forward(
        self, spec: Tensor, feat_erb: Tensor, feat_spec: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feat_spec = feat_spec.squeeze(1).permute(0, 3, 1, 2)
        e0, e1, e2, e3, emb, c0, lsnr = self.enc(
            shift_features(feat_erb, self.conv_lookahead),
            shift_features(feat_spec, self.conv_lookahead),
        )
        m = self.erb_dec(emb, e3, e2, e1, e0)
        spec = self.mask(spec, m)
        coefs, alpha = self.df_dec(emb, c0)
        coefs = self._reshape_coefs(coefs)
        for _ in range(self.df_iter):
            spec = self.df_op(spec, coefs, alpha) if self.use_alpha else self.df_op(spec, coefs)
        return spec, m, lsnr, alpha
