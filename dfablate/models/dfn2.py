"""DeepFilterNet2, ported from `df.deepfilternet2` (deepfilternet 0.5.6) to plain arguments.

Same modules, parameter names and shapes as upstream's `DfNet` (state dicts load both ways with
`strict=True`). Supported: `gru_type` grouped or squeeze, `dfop_method` df or real_unfold, and
`df_output_layer=groupedlinear`. Upstream's deprecated `linear` output layer is refused: its
forward fails in deepfilternet 0.5.6 itself (a `view` of a non-contiguous tensor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from torch import Tensor, nn

from dfablate.models.layers import (
    Add,
    Concat,
    DeepFilter,
    DfOpRealUnfold,
    GroupedGRU,
    GroupedLinear,
    GroupedLinearEinsum,
    Mask,
    SqueezedGRU,
    relu,
    shift_features,
)
from dfablate.models.params import ModelConfigError
from dfablate.models.stages import DfDecoder, ErbDecoder, FeatureEncoder


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


def _erb_decoder(p: Mapping[str, Any]) -> ErbDecoder:
    """DFN2's ERB decoder: a grouped GRU with a grouped linear map back to the convolutions'
    width, or a squeezed GRU that ends in that width; transposed convolutions of `conv_kernel`."""
    emb_dim = p["conv_ch"] * p["nb_erb"] // 4
    hidden = p["emb_hidden_dim"]
    if p["gru_type"] == "grouped":
        emb_gru = _grouped_gru(p, emb_dim, hidden, p["emb_num_layers"] - 1)
        fc_emb = GroupedLinear(
            hidden, emb_dim, groups=p["linear_groups"], shuffle=p["group_shuffle"]
        )
        return ErbDecoder(p, emb_gru, p["conv_kernel"], fc_emb=nn.Sequential(fc_emb, relu()))
    emb_gru = SqueezedGRU(
        hidden,
        hidden,
        output_size=emb_dim,
        num_layers=p["emb_num_layers"] - 1,
        gru_skip_op=nn.Identity,
        linear_groups=p["linear_groups"],
        linear_act_layer=relu,
    )
    return ErbDecoder(p, emb_gru, p["conv_kernel"])


def _df_decoder(p: Mapping[str, Any]) -> DfDecoder:
    """DFN2's DF decoder, on the encoder's `emb_hidden_dim`-wide embedding."""
    df_gru: Callable[[], nn.Module]
    if p["gru_type"] == "grouped":
        df_gru = partial(
            _grouped_gru, p, p["emb_hidden_dim"], p["df_hidden_dim"], p["df_num_layers"]
        )
    else:
        # linear_groups stays at SqueezedGRU's default (8) here, as upstream
        df_gru = partial(
            SqueezedGRU,
            p["emb_hidden_dim"],
            p["df_hidden_dim"],
            num_layers=p["df_num_layers"],
            gru_skip_op=nn.Identity,
            linear_act_layer=relu,
        )
    return DfDecoder(p, df_gru, p["emb_hidden_dim"])


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
        self.erb_dec = _erb_decoder(p)
        self.mask = Mask(erb_inv_fb, post_filter=p["mask_pf"])
        self.df_op: nn.Module = (
            DfOpRealUnfold(p["nb_df"], p["df_order"], p["df_lookahead"])
            if self.use_alpha
            else DeepFilter(p["nb_df"], p["df_order"], p["df_lookahead"])
        )
        self.df_dec = _df_decoder(p)

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
        coefs, df_hidden = self.df_dec(emb, c0)
        alpha = self.df_dec.alpha(df_hidden)
        coefs = self._reshape_coefs(coefs)
        for _ in range(self.df_iter):
            spec = self.df_op(spec, coefs, alpha) if self.use_alpha else self.df_op(spec, coefs)
        return spec, m, lsnr, alpha
