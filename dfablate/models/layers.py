"""The building blocks of DeepFilterNet 2 and 3, ported from `df.modules` / `df.multiframe`.

Each class keeps upstream's submodule layout (the `nn.Sequential` indices included), so parameter
names and shapes, and therefore state dicts, are the same as deepfilternet 0.5.6's. What differs
is only how some forwards compute the same values with current torch: the deep filter works on
the `nb_df` filtered bins only and returns a new tensor instead of writing into a clone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Factory = Callable[..., nn.Module]


def erb_widths(sr: int, fft_size: int, nb_erb: int, min_nb_erb_freqs: int) -> np.ndarray:
    """Widths (in frequency bins) of libDF's ERB bands; they sum to fft_size // 2 + 1.

    A port of libDF's `erb_fb` (float32 arithmetic, as in Rust), so features need no libdf at
    run time; tests check it against `libdf.DF(...).erb_widths()`.
    """
    f32 = np.float32
    ear_q, min_bw = f32(9.265), f32(24.7)

    def freq2erb(freq: np.float32) -> np.float32:
        return f32(ear_q * f32(np.log1p(f32(freq / f32(min_bw * ear_q)))))

    def erb2freq(n_erb: np.float32) -> np.float32:
        return f32(f32(min_bw * ear_q) * f32(np.exp(f32(n_erb / ear_q)) - f32(1)))

    freq_width = f32(f32(sr) / f32(fft_size))
    erb_low, erb_high = freq2erb(f32(0)), freq2erb(f32(sr // 2))
    step = f32(f32(erb_high - erb_low) / f32(nb_erb))
    widths = np.zeros(nb_erb, dtype=np.int64)
    prev_bin, carried = 0, 0  # carried: bins already given to earlier bands by the minimum
    for i in range(1, nb_erb + 1):
        edge = int(np.round(erb2freq(f32(erb_low + f32(f32(i) * step))) / freq_width))
        width = edge - prev_bin - carried
        if width < min_nb_erb_freqs:
            carried, width = min_nb_erb_freqs - width, min_nb_erb_freqs
        else:
            carried = 0
        widths[i - 1] = width
        prev_bin = edge
    widths[-1] += 1  # fft_size // 2 + 1 bins in all
    widths[-1] -= max(int(widths.sum()) - (fft_size // 2 + 1), 0)
    return widths


def _pair(kernel_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(kernel_size, int):
        return kernel_size, kernel_size
    first, second = kernel_size
    return int(first), int(second)


def _pointwise_norm_act(
    out_ch: int, separable: bool, norm_layer: Factory | None, activation_layer: Factory | None
) -> list[nn.Module]:
    """What follows a (transposed) conv in upstream's blocks, in its Sequential order: a 1x1 conv
    when separable, then the norm, then the activation."""
    layers: list[nn.Module] = []
    if separable:
        layers.append(nn.Conv2d(out_ch, out_ch, kernel_size=1, bias=False))
    if norm_layer is not None:
        layers.append(norm_layer(out_ch))
    if activation_layer is not None:
        layers.append(activation_layer())
    return layers


class Conv2dNormAct(nn.Sequential):
    """Causal conv over [B, C, T, F]: time padding, (separable) conv, BatchNorm, activation.

    Upstream's `df.modules.Conv2dNormAct`: stride and dilation apply to frequency only.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | Sequence[int],
        fstride: int = 1,
        dilation: int = 1,
        fpad: bool = True,
        bias: bool = True,
        separable: bool = False,
        norm_layer: Factory | None = nn.BatchNorm2d,
        activation_layer: Factory | None = nn.ReLU,
    ):
        kernel = _pair(kernel_size)
        fpad_ = kernel[1] // 2 + dilation - 1 if fpad else 0
        layers: list[nn.Module] = []
        if kernel[0] > 1:
            layers.append(nn.ConstantPad2d((0, 0, kernel[0] - 1, 0), 0.0))
        groups = math.gcd(in_ch, out_ch) if separable else 1
        separable = separable and groups > 1 and max(kernel) > 1
        layers.append(
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel_size=kernel,
                padding=(0, fpad_),
                stride=(1, fstride),
                dilation=(1, dilation),
                groups=groups,
                bias=bias,
            )
        )
        layers += _pointwise_norm_act(out_ch, separable, norm_layer, activation_layer)
        super().__init__(*layers)


class ConvTranspose2dNormAct(nn.Sequential):
    """Causal transposed conv over [B, C, T, F] (upsampling frequency), as upstream's."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | Sequence[int],
        fstride: int = 1,
        dilation: int = 1,
        fpad: bool = True,
        bias: bool = True,
        separable: bool = False,
        norm_layer: Factory | None = nn.BatchNorm2d,
        activation_layer: Factory | None = nn.ReLU,
    ):
        kernel = _pair(kernel_size)
        fpad_ = kernel[1] // 2 if fpad else 0
        layers: list[nn.Module] = []
        if kernel[0] > 1:
            layers.append(nn.ConstantPad2d((0, 0, kernel[0] - 1, 0), 0.0))
        groups = math.gcd(in_ch, out_ch) if separable else 1
        separable = separable and groups > 1
        layers.append(
            nn.ConvTranspose2d(
                in_ch,
                out_ch,
                kernel_size=kernel,
                padding=(kernel[0] - 1, fpad_ + dilation - 1),
                output_padding=(0, fpad_),
                stride=(1, fstride),
                dilation=(1, dilation),
                groups=groups,
                bias=bias,
            )
        )
        layers += _pointwise_norm_act(out_ch, separable, norm_layer, activation_layer)
        super().__init__(*layers)


class Add(nn.Module):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class Concat(nn.Module):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat((a, b), dim=-1)


def shift_features(x: Tensor, lookahead: int) -> Tensor:
    """Drop the first `lookahead` frames of [B, C, T, F] and zero-pad the end (upstream's
    pad_feat): the convolutions then see `lookahead` frames of the future."""
    if lookahead <= 0:
        return x
    return F.pad(x[:, :, lookahead:], (0, 0, 0, lookahead))


class GroupedLinearEinsum(nn.Module):
    """A block-diagonal linear map over the last axis of [B, T, I]: `groups` independent blocks."""

    def __init__(self, input_size: int, hidden_size: int, groups: int = 1):
        super().__init__()
        if input_size % groups or hidden_size % groups:
            raise ValueError(
                f"input size {input_size} and hidden size {hidden_size} must be divisible by "
                f"the number of groups {groups}"
            )
        self.input_size, self.hidden_size, self.groups = input_size, hidden_size, groups
        self.ws = input_size // groups
        self.weight = nn.Parameter(torch.zeros(groups, self.ws, hidden_size // groups))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        # [G, B*T, I/G] @ [G, I/G, H/G]: one batched matmul
        x = x.reshape(b * t, self.groups, self.ws).transpose(0, 1)
        return torch.bmm(x, self.weight).transpose(0, 1).reshape(b, t, -1)


class GroupedLinear(nn.Module):
    """DFN2's grouped linear layer: one `nn.Linear` per group, outputs optionally shuffled."""

    def __init__(self, input_size: int, hidden_size: int, groups: int = 1, shuffle: bool = True):
        super().__init__()
        if input_size % groups or hidden_size % groups:
            raise ValueError(f"sizes {input_size}, {hidden_size} not divisible by {groups} groups")
        self.groups = groups
        self.input_size = input_size // groups
        self.hidden_size = hidden_size // groups
        self.shuffle = shuffle and groups > 1
        self.layers = nn.ModuleList(
            nn.Linear(self.input_size, self.hidden_size) for _ in range(groups)
        )

    def forward(self, x: Tensor) -> Tensor:
        chunks = x.split(self.input_size, dim=-1)
        output = torch.cat([layer(c) for layer, c in zip(self.layers, chunks, strict=True)], dim=-1)
        if self.shuffle:
            shape = output.shape
            output = output.view(-1, self.hidden_size, self.groups).transpose(-1, -2).reshape(shape)
        return output


class GroupedGRULayer(nn.Module):
    """`groups` independent GRUs, each on its slice of the input features (batch first)."""

    def __init__(self, input_size: int, hidden_size: int, groups: int):
        super().__init__()
        if input_size % groups or hidden_size % groups:
            raise ValueError(f"sizes {input_size}, {hidden_size} not divisible by {groups} groups")
        self.input_size = input_size // groups
        self.hidden_size = hidden_size // groups
        self.groups = groups
        self.layers = nn.ModuleList(
            nn.GRU(self.input_size, self.hidden_size, batch_first=True) for _ in range(groups)
        )

    def forward(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        outputs, states = [], []
        for i, (layer, chunk) in enumerate(
            zip(self.layers, x.split(self.input_size, dim=-1), strict=True)
        ):
            o, s = layer(chunk, h0[i : i + 1].detach())
            outputs.append(o)
            states.append(s)
        return torch.cat(outputs, dim=-1), torch.cat(states, dim=0)


class GroupedGRU(nn.Module):
    """DFN2's stacked grouped GRU; layer outputs are shuffled between layers and summed
    (`add_outputs`) as upstream's `GroupedGRU`."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        groups: int = 4,
        shuffle: bool = True,
        add_outputs: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.groups = groups
        self.num_layers = num_layers
        self.hidden_size = hidden_size // groups
        self.shuffle = shuffle and groups > 1
        self.add_outputs = add_outputs
        self.grus = nn.ModuleList(
            GroupedGRULayer(input_size if i == 0 else hidden_size, hidden_size, groups)
            for i in range(num_layers)
        )

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, t, _ = x.shape
        if state is None:
            state = x.new_zeros(self.num_layers * self.groups, b, self.hidden_size)
        output: Tensor | None = None
        states = []
        for i, gru in enumerate(self.grus):
            x, s = gru(x, state[i * self.groups : (i + 1) * self.groups])
            states.append(s)
            if self.shuffle and i < self.num_layers - 1:
                x = x.view(b, t, -1, self.groups).transpose(2, 3).reshape(b, t, -1)
            output = output + x if self.add_outputs and output is not None else x
        assert output is not None
        return output, torch.cat(states, dim=0)


class SqueezedGRU(nn.Module):
    """DFN2's GRU between grouped linear maps (input -> hidden -> output); the skip adds the
    squeezed input to the GRU output before the output map."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        num_layers: int = 1,
        linear_groups: int = 8,
        gru_skip_op: Factory | None = None,
        linear_act_layer: Factory = nn.Identity,
    ):
        super().__init__()
        self.linear_in = nn.Sequential(
            GroupedLinearEinsum(input_size, hidden_size, linear_groups), linear_act_layer()
        )
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.gru_skip = gru_skip_op() if gru_skip_op is not None else None
        self.linear_out: nn.Module = (
            nn.Sequential(
                GroupedLinearEinsum(hidden_size, output_size, linear_groups), linear_act_layer()
            )
            if output_size is not None
            else nn.Identity()
        )

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.linear_in(x)
        y, h = self.gru(x, h)
        if self.gru_skip is not None:
            y = y + self.gru_skip(x)
        return self.linear_out(y), h


class SqueezedGRU_S(SqueezedGRU):  # upstream's name, kept for readers comparing the two
    """DFN3's variant: the skip adds the (unsqueezed) input to the output map's result."""

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, h = self.gru(self.linear_in(x), h)
        y = self.linear_out(y)
        if self.gru_skip is not None:
            y = y + self.gru_skip(x)
        return y, h


def erb_filterbank(widths: np.ndarray, sr: int, inverse: bool = False) -> Tensor:
    """ERB band matrix from band widths in bins: [F, E] averaging bins per band, or [E, F]
    (`inverse`) spreading band values back to bins (`df.modules.erb_fb`, normalized)."""
    widths = np.asarray(widths, dtype=np.int64)
    n_freqs = int(widths.sum())
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    fb = torch.zeros(n_freqs, len(widths))
    for band, (start, width) in enumerate(zip(starts.tolist(), widths.tolist(), strict=True)):
        fb[start : start + width, band] = 1
    return fb.t().contiguous() if inverse else fb / fb.sum(dim=0)


class Mask(nn.Module):
    """Applies an ERB-band gain mask [B, 1, T, E] to a spectrum [B, 1, T, F, 2]; optionally
    (eval only) through Valin et al.'s perceptual post-filter, as upstream's `Mask`."""

    def __init__(self, erb_inv_fb: Tensor, post_filter: bool = False, eps: float = 1e-12):
        super().__init__()
        self.erb_inv_fb: Tensor
        self.register_buffer("erb_inv_fb", erb_inv_fb)
        self.post_filter = post_filter
        self.eps = eps

    def pf(self, mask: Tensor, beta: float = 0.02) -> Tensor:
        mask_sin = mask * torch.sin(np.pi * mask / 2)
        return (1 + beta) * mask / (1 + beta * mask.div(mask_sin.clamp_min(self.eps)).pow(2))

    def forward(self, spec: Tensor, mask: Tensor) -> Tensor:
        if not self.training and self.post_filter:
            mask = self.pf(mask)
        mask = mask.matmul(self.erb_inv_fb)
        return spec * (mask if spec.is_complex() else mask.unsqueeze(4))


class DeepFilter(nn.Module):
    """The deep-filter op (`df.multiframe.DF`): per bin of the lowest `num_freqs`, a complex
    FIR filter of `frame_size` taps over time, `lookahead` of them future frames.

    spec [B, 1, T, F, 2], coefs [B, frame_size, T, num_freqs, 2] -> spec with the filtered bins.
    Computes in float32 (the coefficients are viewed as complex, which bf16 cannot be).
    """

    def __init__(self, num_freqs: int, frame_size: int, lookahead: int = 0):
        super().__init__()
        self.num_freqs, self.frame_size, self.lookahead = num_freqs, frame_size, lookahead

    def forward(self, spec: Tensor, coefs: Tensor) -> Tensor:
        spec, coefs = spec.float(), coefs.float()
        low = torch.view_as_complex(spec[..., : self.num_freqs, :].contiguous())  # [B, 1, T, F']
        coefs = torch.view_as_complex(coefs.contiguous())  # [B, N, T, F']
        if self.frame_size > 1:
            pad = (0, 0, self.frame_size - 1 - self.lookahead, self.lookahead)
            frames = F.pad(low, pad).unfold(2, self.frame_size, 1)  # [B, 1, T, F', N]
            filtered = torch.einsum("...tfn,...ntf->...tf", frames, coefs.unsqueeze(1))
        else:
            filtered = low * coefs
        return torch.cat((torch.view_as_real(filtered), spec[..., self.num_freqs :, :]), dim=-2)


class DfOpRealUnfold(nn.Module):
    """DFN2's original deep-filter op (`df.modules.DfOp`, method `real_unfold`) with the DF
    "alpha": output = alpha * filtered + (1 - alpha) * input on the lowest `df_bins` bins.

    spec [B, 1, T, F, 2], coefs [B, T, O, df_bins, 2], alpha [B, T, 1].
    """

    def __init__(self, df_bins: int, df_order: int, df_lookahead: int = 0):
        super().__init__()
        self.df_bins, self.df_order, self.df_lookahead = df_bins, df_order, df_lookahead

    def forward(self, spec: Tensor, coefs: Tensor, alpha: Tensor) -> Tensor:
        low = spec[..., : self.df_bins, :]
        pad = (0, 0, 0, 0, self.df_order - 1 - self.df_lookahead, self.df_lookahead)
        frames = F.pad(low.squeeze(1), pad).unfold(1, self.df_order, 1)  # [B, T, F', 2, O]
        frames = frames.permute(0, 1, 4, 2, 3)  # [B, T, O, F', 2]
        re = frames[..., 0] * coefs[..., 0] - frames[..., 1] * coefs[..., 1]
        im = frames[..., 1] * coefs[..., 0] + frames[..., 0] * coefs[..., 1]
        filtered = torch.stack((re, im), dim=-1).sum(dim=2).unsqueeze(1)
        a = alpha.view(spec.shape[0], 1, -1, 1, 1)
        mixed = filtered * a + low * (1 - a)
        return torch.cat((mixed, spec[..., self.df_bins :, :]), dim=-2)


relu = partial(nn.ReLU, inplace=True)
