"""The stages DFN2 and DFN3 share: the feature encoder, the ERB decoder and the DF decoder.

Upstream's two `DfNet`s repeat these with small differences; here each is one class, and the
architectures (`dfn2`, `dfn3`) pass in what differs: mainly their GRUs, which they build
themselves. Submodules are registered in upstream's order, so state dicts keep its key order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn

from dfablate.models.layers import (
    Conv2dNormAct,
    ConvTranspose2dNormAct,
    Factory,
    GroupedLinearEinsum,
)
from dfablate.models.params import ModelConfigError


def skip_factory(kind: str, in_dim: int, out_dim: int, groups: int, name: str) -> Factory | None:
    """A GRU skip connection factory for parameter `name`: `none`, `identity` (`nn.Identity`) or
    `groupedlinear` (upstream builds skips from factories, so the GRU that owns one calls it)."""
    if kind == "none":
        return None
    if kind == "identity":
        if in_dim != out_dim:
            raise ModelConfigError(f"{name}=identity needs equal sizes, got {in_dim}, {out_dim}")
        return nn.Identity
    if kind == "groupedlinear":
        return partial(GroupedLinearEinsum, in_dim, out_dim, groups)
    raise ModelConfigError(f"{name} must be none, identity or groupedlinear, got {kind!r}")


class FeatureEncoder(nn.Module):
    """What DFN2's and DFN3's encoders share: the ERB and deep-filter feature convolutions, the
    forward (convolutions -> combined embedding -> GRU -> local SNR) and the local-SNR head.

    A subclass calls `_init_convs`, sets `df_fc_emb`, `combine` and `emb_gru`, then calls
    `_init_lsnr` (registration order as upstream's).
    """

    df_fc_emb: nn.Module
    combine: nn.Module
    emb_gru: nn.Module

    def _init_convs(self, p: Mapping[str, Any]) -> None:
        ch = p["conv_ch"]
        self.erb_conv0 = Conv2dNormAct(
            1, ch, kernel_size=p["conv_kernel_inp"], bias=False, separable=True
        )
        conv_layer = partial(
            Conv2dNormAct, ch, ch, kernel_size=p["conv_kernel"], bias=False, separable=True
        )
        self.erb_conv1 = conv_layer(fstride=2)
        self.erb_conv2 = conv_layer(fstride=2)
        self.erb_conv3 = conv_layer(fstride=1)
        self.df_conv0 = Conv2dNormAct(
            2, ch, kernel_size=p["conv_kernel_inp"], bias=False, separable=True
        )
        self.df_conv1 = conv_layer(fstride=2)

    def _init_lsnr(self, emb_out_dim: int, p: Mapping[str, Any]) -> None:
        self.lsnr_fc = nn.Sequential(nn.Linear(emb_out_dim, 1), nn.Sigmoid())
        self.lsnr_scale = p["lsnr_max"] - p["lsnr_min"]
        self.lsnr_offset = p["lsnr_min"]

    def forward(self, feat_erb: Tensor, feat_spec: Tensor) -> tuple[Tensor, ...]:
        e0 = self.erb_conv0(feat_erb)  # [B, C, T, E]
        e1 = self.erb_conv1(e0)  # [B, C, T, E/2]
        e2 = self.erb_conv2(e1)  # [B, C, T, E/4]
        e3 = self.erb_conv3(e2)  # [B, C, T, E/4]
        c0 = self.df_conv0(feat_spec)  # [B, C, T, F']
        c1 = self.df_conv1(c0)  # [B, C, T, F'/2]
        cemb = self.df_fc_emb(c1.permute(0, 2, 3, 1).flatten(2))  # [B, T, C * E/4]
        emb = self.combine(e3.permute(0, 2, 3, 1).flatten(2), cemb)
        emb, _ = self.emb_gru(emb)  # [B, T, C * E/4]
        lsnr = self.lsnr_fc(emb) * self.lsnr_scale + self.lsnr_offset
        return e0, e1, e2, e3, emb, c0, lsnr


class ErbDecoder(nn.Module):
    """Embedding + encoder skips -> ERB gain mask [B, 1, T, E].

    DFN2 and DFN3 differ only in the embedding GRU `emb_gru` (built by the architecture), in the
    map after it (`fc_emb`: DFN2's grouped GRU needs one back to the convolutions' width) and in
    the transposed convolutions' kernel (DFN2: `conv_kernel`, DFN3: `convt_kernel`).
    """

    def __init__(
        self,
        p: Mapping[str, Any],
        emb_gru: nn.Module,
        convt_kernel: Sequence[int],
        fc_emb: nn.Module | None = None,
    ):
        super().__init__()
        ch = p["conv_ch"]
        self.emb_gru = emb_gru
        self.fc_emb = fc_emb if fc_emb is not None else nn.Identity()
        tconv_layer = partial(
            ConvTranspose2dNormAct, kernel_size=convt_kernel, bias=False, separable=True
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
        emb = self.fc_emb(emb)  # [B, T, C * E/4]
        emb = emb.view(b, t, f8, -1).permute(0, 3, 1, 2)  # [B, C, T, E/4]
        e3 = self.convt3(self.conv3p(e3) + emb)
        e2 = self.convt2(self.conv2p(e2) + e3)
        e1 = self.convt1(self.conv1p(e1) + e2)
        return self.conv0_out(self.conv0p(e0) + e1)  # [B, 1, T, E]


class DfDecoder(nn.Module):
    """Embedding [B, T, emb_dim] + DF pathway conv -> deep-filter coefficients
    [B, T, nb_df, 2 * df_order], and the GRU's output [B, T, df_hidden_dim] for `alpha`.

    The architectures differ in `df_gru` (a factory of theirs) and in the embedding's width
    `emb_dim`.
    `df_fc_a` is upstream's DF "alpha" head: DFN2 computes it (`alpha`), DFN3 never does and keeps
    it only so that state dicts match upstream's in both directions.
    """

    def __init__(self, p: Mapping[str, Any], df_gru: Callable[[], nn.Module], emb_dim: int):
        super().__init__()
        ch = p["conv_ch"]
        hidden = p["df_hidden_dim"]
        self.df_bins = p["nb_df"]
        self.df_out_ch = p["df_order"] * 2
        kt = p["df_pathway_kernel_size_t"]
        self.df_convp = Conv2dNormAct(
            ch, self.df_out_ch, fstride=1, kernel_size=(kt, 1), separable=True, bias=False
        )
        # built here, after the pathway conv as upstream does: the same seed, the same weights
        self.df_gru = df_gru()
        skip = str(p["df_gru_skip"]).lower()
        if skip == "identity" and p["emb_hidden_dim"] != hidden:
            raise ModelConfigError("df_gru_skip=identity needs emb_hidden_dim == df_hidden_dim")
        factory = skip_factory(skip, emb_dim, hidden, p["linear_groups"], "df_gru_skip")
        self.df_skip: nn.Module | None = factory() if factory is not None else None
        df_out = GroupedLinearEinsum(hidden, self.df_bins * self.df_out_ch, p["linear_groups"])
        self.df_out = nn.Sequential(df_out, nn.Tanh())
        self.df_fc_a = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, emb: Tensor, c0: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = emb.shape
        c, _ = self.df_gru(emb)  # [B, T, H]
        if self.df_skip is not None:
            c = c + self.df_skip(emb)
        c0 = self.df_convp(c0).permute(0, 2, 3, 1)  # [B, T, F', 2 * O]
        return self.df_out(c).view(b, t, self.df_bins, self.df_out_ch) + c0, c

    def alpha(self, c: Tensor) -> Tensor:
        """DFN2's DF "alpha" [B, T, 1] from the GRU output `c` that `forward` returned."""
        return self.df_fc_a(c)
