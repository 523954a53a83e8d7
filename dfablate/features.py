"""DeepFilterNet's input features in torch, with the deep-filter normalisation chosen by name.

This is the one place the normalisation lives. `DfFeatures` reproduces libDF's pipeline (STFT,
ERB features + `erb_norm`, complex features + `unit_norm`) on batches, on any device, and its
`synthesis` is libDF's inverse STFT. The exponential moving averages that the normalisations need
are computed as a chunked linear scan (`ema`), not with a per-frame Python loop.

A built-in normalisation variant is one function registered with `@register_norm("name")` plus
one config file `dfablate/configs/norm/<name>.yaml`. A norm from outside the package is one YAML
in a user config folder that names an importable function (`function: mylab.norms.fast_norm`);
`register_norm_function` registers it when a run is configured or a checkpoint is loaded.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfablate.errors import UserError
from dfablate.models.layers import erb_widths
from dfablate.models.params import DF_PARAMS

# The parameters that define DfFeatures (besides the norm), with deepfilternet's defaults and
# the types its INI config gives them (`DF_PARAMS`, the one table): checkpoints store these
# (dfablate.training.model_identity).
_FEATURE_NAMES = ("sr", "fft_size", "hop_size", "nb_erb", "nb_df", "min_nb_erb_freqs", "norm_tau")
FEATURE_PARAMS: dict[str, Callable[[str], int | float]] = {
    name: cast for name, _, cast in DF_PARAMS if name in _FEATURE_NAMES
}
FEATURE_DEFAULTS: dict[str, int | float] = {
    name: cast(default) for name, default, cast in DF_PARAMS if name in _FEATURE_NAMES
}
DEFAULT_SAMPLE_RATE = int(FEATURE_DEFAULTS["sr"])

NormFn = Callable[[Tensor, Tensor, float], Tensor]
NORMALISATIONS: dict[str, NormFn] = {}

_EMA_CHUNK = 64


class UnknownNormError(UserError):
    """A normalisation name that is not in the registry."""


class Features(NamedTuple):
    """What DfNet's forward takes: (spec, feat_erb, feat_spec), real/imag in the last dim."""

    spec: Tensor  # [B, 1, T, F, 2]
    feat_erb: Tensor  # [B, 1, T, nb_erb]
    feat_spec: Tensor  # [B, 1, T, nb_df, 2]


def register_norm(name: str) -> Callable[[NormFn], NormFn]:
    """Register `fn(spec, init_state, alpha) -> normalised spec` under `name`.

    `spec` is the deep-filter part of the complex spectrum [B, T, nb_df]; `init_state` is libDF's
    initial EMA state for the magnitude (linspace(1e-3, 1e-4, nb_df)).
    """

    def decorator(fn: NormFn) -> NormFn:
        NORMALISATIONS[name] = fn
        return fn

    return decorator


def register_norm_function(name: str, function: str) -> NormFn:
    """Import `function` ("package.module.attribute") and register it as the norm `name`; a
    built-in name cannot be taken by another function."""
    module_name, _, attribute = function.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), attribute) if module_name else None
    except ImportError as exc:
        raise UserError(f"norm {name!r}: cannot import {function} ({exc})") from None
    except AttributeError:
        fn = None
    if not callable(fn):
        raise UserError(f"norm {name!r}: {function} is not an importable function")
    if NORMALISATIONS.get(name, fn) is not fn:
        taken = NORMALISATIONS[name]
        raise UserError(
            f"norm {name!r}: the name is taken by {taken.__module__}.{taken.__qualname__}"
        )
    NORMALISATIONS[name] = fn
    return fn


def get_norm(name: str) -> NormFn:
    """The registered normalisation `name`; unknown names list the known ones."""
    try:
        return NORMALISATIONS[name]
    except KeyError:
        known = ", ".join(sorted(NORMALISATIONS))
        raise UnknownNormError(f"unknown normalisation {name!r}; known: {known}") from None


def ema(x: Tensor, alpha: float, init: Tensor) -> Tensor:
    """Exponential moving average along dim 1: s_t = (1 - alpha) x_t + alpha s_{t-1}, s_-1 = init.

    x is [B, T, ...]; init broadcasts to x[:, 0]. Frames are processed in chunks: inside a chunk
    the recurrence is a matrix product with a decay matrix, and the chunk-end states follow the
    same recurrence with decay alpha**chunk, solved recursively. No per-frame Python loop.
    """
    batch, frames = x.shape[:2]
    rest = x.shape[2:]
    init = init.to(dtype=x.dtype, device=x.device).expand(batch, *rest)
    if frames == 0:
        return x.clone()
    chunk = min(_EMA_CHUNK, frames)
    n_chunks = math.ceil(frames / chunk)
    padded = F.pad(x.reshape(batch, frames, -1), (0, 0, 0, n_chunks * chunk - frames))
    blocks = padded.reshape(batch, n_chunks, chunk, -1)  # [B, C, L, D]
    idx = torch.arange(chunk, device=x.device)
    exponent = (idx[:, None] - idx[None, :]).to(x.dtype)
    decay = torch.where(
        exponent >= 0, alpha ** exponent.clamp_min(0), torch.zeros((), dtype=x.dtype)
    )  # decay[i, j] = alpha^(i-j) for j <= i
    local = torch.matmul((1 - alpha) * decay, blocks)  # each chunk from a zero initial state
    powers = alpha ** (idx.to(x.dtype) + 1)  # alpha^(i+1): weight of the state entering a chunk
    # state entering chunk c: S_c = alpha^L S_{c-1} + local_{c-1}[-1], S_0 = init
    ends = local[:, :, -1]  # [B, C, D]
    init_flat = init.reshape(batch, -1)
    if n_chunks > 1:
        carried = _linear_recurrence(ends[:, :-1], alpha**chunk, init_flat)  # states after chunks
        entering = torch.cat([init_flat[:, None], carried], dim=1)
    else:
        entering = init_flat[:, None]
    out = local + powers[None, None, :, None] * entering[:, :, None, :]
    return out.reshape(batch, n_chunks * chunk, *rest)[:, :frames]


def _linear_recurrence(x: Tensor, decay: float, init: Tensor) -> Tensor:
    """s_t = decay * s_{t-1} + x_t along dim 1 (s_-1 = init), via `ema` on rescaled inputs."""
    # ema computes s_t = (1 - a) x_t + a s_{t-1}; with a = decay, feed x / (1 - a).
    if decay >= 1.0:
        return init[:, None] + torch.cumsum(x, dim=1)
    return ema(x / (1 - decay), decay, init)


def power(spec: Tensor) -> Tensor:
    """|X|^2 of a complex tensor (faster than `abs()`, which computes hypot)."""
    return torch.addcmul(spec.real * spec.real, spec.imag, spec.imag)


@register_norm("original")
def original_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """libDF's `unit_norm`: divide by sqrt(EMA of |X|) (features scale with sqrt of the gain)."""
    state = ema(power(spec).sqrt(), alpha, init_state)
    return spec * state.rsqrt()


@register_norm("fixed")
def fixed_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """DeepFilterNet2 paper eq. 12: divide by the EMA of |X| itself.

    Not gain-invariant: the EMA starts from libDF's fixed state, whose weight alpha^t (0.37
    after 1 s, 0.05 after 3 s) dominates a training crop, so the features grow with the input
    level until the start state has decayed. `fixed_debiased` removes that start state.
    """
    return spec * ema(power(spec).sqrt(), alpha, init_state).reciprocal()


@register_norm("fixed_warm")
def fixed_warm_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """`fixed` with each bin's EMA started from that bin's first non-zero |X| (causal).

    The EMA is linear in its input and its start, so feat_spec of g*x equals that of x for any
    gain g > 0. Until a bin's first non-zero magnitude its input is 0 and so is its output (no
    NaN on digital silence); libDF's `init_state` is not used. Only feat_spec becomes
    gain-invariant: `spec` still scales with g, and feat_erb's EMA starts from libDF's fixed
    state linspace(-60, -90) dB, so it depends on the level until that state has decayed.
    """
    magnitude = power(spec).sqrt()  # [B, T, F]
    nonzero = magnitude > 0
    seen = torch.cumsum(nonzero, dim=1) > 0  # frames at or after the bin's first non-zero |X|
    first = nonzero.int().argmax(dim=1, keepdim=True)  # 0 for an all-zero bin (magnitude 0)
    start = magnitude.gather(1, first)  # [B, 1, F]
    # before the first non-zero frame, hold the start value: the state there is exactly `start`
    state = ema(torch.where(seen, magnitude, start), alpha, start[:, 0])
    safe = torch.where(state > 0, state, torch.ones_like(state))
    return torch.where(state > 0, spec / safe, torch.zeros_like(spec))


def debiased_ema(
    x: Tensor, alpha: float, state: Tensor | None = None, frames_before: int = 0
) -> tuple[Tensor, Tensor]:
    """Bias-corrected EMA along dim 1 (Adam's correction), and the raw state to carry on.

    s_t = alpha s_{t-1} + (1 - alpha) x_t with s_{-1} = 0, m_t = s_t / (1 - alpha^(t+1)): no
    start state, so m is linear in x (gain-invariant ratios) and its first frames are the mean
    of the frames so far, not a guess. Streaming: pass the returned state and the number of
    frames already seen (one counter per stream) with the next chunk. x is [B, T, ...]; returns
    (m [B, T, ...], s at the last frame [B, ...]).
    """
    if state is None:
        state = torch.zeros(x.shape[:1] + x.shape[2:], dtype=x.dtype, device=x.device)
    smoothed = ema(x, alpha, state)
    frames = torch.arange(frames_before + 1, frames_before + x.shape[1] + 1, device=x.device)
    correction = -torch.expm1(frames.double() * math.log(alpha))  # 1 - alpha^(t+1)
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    debiased = smoothed / correction.to(x.dtype).reshape(shape)
    last = smoothed[:, -1] if x.shape[1] else state
    return debiased, last


def _divide_or_zero(spec: Tensor, divisor: Tensor) -> Tensor:
    """spec / divisor, 0 where the divisor is 0 (digital silence: no NaN)."""
    safe = torch.where(divisor > 0, divisor, torch.ones_like(divisor))
    return torch.where(divisor > 0, spec / safe, torch.zeros_like(spec))


@register_norm("original_debiased")
def original_debiased_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """X / sqrt(m_t), m_t the bias-corrected EMA of |X| (`debiased_ema`): libDF's exponent
    without its level-dependent start state; features scale exactly with sqrt of the gain."""
    mean, _ = debiased_ema(power(spec).sqrt(), alpha)  # [B, T, F]
    return _divide_or_zero(spec, mean.sqrt())


@register_norm("fixed_debiased")
def fixed_debiased_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """X / m_t, m_t the bias-corrected EMA of |X| (`debiased_ema`): the paper's exponent with no
    start state, so feat_spec is exactly gain-invariant; the recommended gain-invariant norm
    (its early frames are tamer than `fixed_warm`'s, which starts from a half-padded frame)."""
    mean, _ = debiased_ema(power(spec).sqrt(), alpha)  # [B, T, F]
    return _divide_or_zero(spec, mean)


@register_norm("rms")
def rms_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """Divide by the running RMS sqrt(EMA of |X|^2); its initial state is init_state**2."""
    return spec * ema(power(spec), alpha, init_state.square()).rsqrt()


@register_norm("none")
def no_norm(spec: Tensor, init_state: Tensor, alpha: float) -> Tensor:
    """No normalisation: the raw complex spectrum."""
    return spec


def norm_alpha(sr: int, hop_size: int, norm_tau: float) -> float:
    """The EMA decay factor, rounded as `df.utils.get_norm_alpha` does (0.99 at the defaults)."""
    exact = math.exp(-(hop_size / sr) / norm_tau)
    precision, alpha = 3, 1.0
    while alpha >= 1.0:
        alpha = round(exact, precision)
        precision += 1
    return alpha


def vorbis_window(size: int) -> np.ndarray:
    """libDF's analysis/synthesis window, computed in float64 and stored as float32."""
    n = np.arange(size, dtype=np.float64)
    return np.sin(0.5 * np.pi * np.sin(np.pi * (n + 0.5) / size) ** 2).astype(np.float32)


class DfFeatures(nn.Module):
    """Waveforms [B, T] -> `Features` exactly as libDF computes them, with the chosen norm.

    Output has T // hop_size frames; `synthesis` inverts `spec` with libDF's overlap-add, delayed
    by `delay` = fft_size - hop_size samples. No trainable parameters; buffers follow `.to()`.
    """

    def __init__(
        self,
        norm: str = "original",
        sr: int = DEFAULT_SAMPLE_RATE,
        fft_size: int = int(FEATURE_DEFAULTS["fft_size"]),
        hop_size: int = int(FEATURE_DEFAULTS["hop_size"]),
        nb_erb: int = int(FEATURE_DEFAULTS["nb_erb"]),
        nb_df: int = int(FEATURE_DEFAULTS["nb_df"]),
        min_nb_erb_freqs: int = int(FEATURE_DEFAULTS["min_nb_erb_freqs"]),
        norm_tau: float = float(FEATURE_DEFAULTS["norm_tau"]),
    ) -> None:
        super().__init__()
        self.norm_fn = get_norm(norm)
        self.norm = norm
        self.sr, self.fft_size, self.hop_size = sr, fft_size, hop_size
        self.nb_erb, self.nb_df, self.min_nb_erb_freqs = nb_erb, nb_df, min_nb_erb_freqs
        self.norm_tau = norm_tau
        self.alpha = norm_alpha(sr, hop_size, norm_tau)
        self.delay = fft_size - hop_size
        widths = erb_widths(sr, fft_size, nb_erb, min_nb_erb_freqs)
        band_of_bin = np.repeat(np.arange(nb_erb), widths)
        erb_fb = np.zeros((fft_size // 2 + 1, nb_erb), dtype=np.float32)
        erb_fb[np.arange(len(band_of_bin)), band_of_bin] = 1.0 / widths[band_of_bin]
        window = torch.from_numpy(vorbis_window(fft_size))
        self.register_buffer("window", window, persistent=False)
        wnorm = 1.0 / (fft_size**2 / (2 * hop_size))  # libDF scales the analysis output
        self.register_buffer("analysis_window", window * wnorm, persistent=False)
        self.register_buffer("erb_fb", torch.from_numpy(erb_fb), persistent=False)
        self.register_buffer(
            "erb_init", torch.linspace(-60.0, -90.0, nb_erb, dtype=torch.float32), persistent=False
        )
        unit_init = np.linspace(1e-3, 1e-4, nb_df, dtype=np.float32)  # libdf.unit_norm_init
        self.register_buffer("unit_init", torch.from_numpy(unit_init), persistent=False)

    @property
    def params(self) -> dict[str, int | float | str]:
        """The values that define these features (stored in checkpoints)."""
        return {"norm": self.norm, **{name: getattr(self, name) for name in FEATURE_PARAMS}}

    def analysis(self, wave: Tensor) -> Tensor:
        """libDF's STFT: [B, T] -> complex [B, T // hop, F] (contiguous)."""
        batch, frames = wave.shape[0], wave.shape[1] // self.hop_size
        if frames == 0:
            return wave.new_zeros(batch, 0, self.fft_size // 2 + 1, dtype=torch.complex64)
        padded = F.pad(wave, (self.fft_size - self.hop_size, 0))
        # frame k = the previous hop followed by the current one; windowing makes it contiguous
        frames_view = padded.unfold(-1, self.fft_size, self.hop_size)
        return torch.fft.rfft(frames_view * self.analysis_window)

    def forward(self, wave: Tensor) -> Features:
        if wave.dim() != 2:
            raise ValueError(f"expected waveforms [B, T], got shape {tuple(wave.shape)}")
        spec = self.analysis(wave.float())  # [B, T, F] complex
        erb_db = 10.0 * torch.log10(power(spec) @ self.erb_fb + 1e-10)
        feat_erb = (erb_db - ema(erb_db, self.alpha, self.erb_init)) / 40.0
        feat_spec = self.norm_fn(spec[:, :, : self.nb_df].contiguous(), self.unit_init, self.alpha)
        return Features(
            torch.view_as_real(spec).unsqueeze(1),
            feat_erb.unsqueeze(1),
            torch.view_as_real(feat_spec.contiguous()).unsqueeze(1),
        )

    def synthesis(self, spec: Tensor) -> Tensor:
        """libDF's inverse STFT: [B, 1, T', F, 2] (or [B, T', F, 2]) -> [B, T' * hop]."""
        if spec.dim() == 5:
            spec = spec.squeeze(1)
        batch, frames = spec.shape[:2]
        if frames == 0:
            return spec.new_zeros(batch, 0)
        time_frames = torch.fft.irfft(
            torch.view_as_complex(spec.float().contiguous()), n=self.fft_size, norm="forward"
        )
        time_frames = time_frames * self.window  # [B, T', N]
        length = (frames - 1) * self.hop_size + self.fft_size
        out = F.fold(
            time_frames.transpose(1, 2),
            output_size=(1, length),
            kernel_size=(1, self.fft_size),
            stride=(1, self.hop_size),
        )
        return out.reshape(batch, length)[:, : frames * self.hop_size]


def feature_std(
    waves: Sequence[np.ndarray], norm: str = "original", **params: int | float
) -> pandas.DataFrame:  # noqa: F821
    """Per deep-filter bin std over time (Bessel-corrected, all frames of all waves) of feat_spec.

    The diagnostic for whether a normalisation yields unit-variance features; columns
    `bin,std_real,std_imag`.
    """
    features = DfFeatures(norm=norm, **params)
    with torch.no_grad():
        parts = [
            features(torch.from_numpy(np.asarray(w, dtype=np.float32))[None]).feat_spec[0, 0]
            for w in waves
        ]
    stacked = torch.cat(parts, dim=0).double()  # [frames, nb_df, 2]
    if stacked.shape[0] < 2:
        raise UserError(
            f"audio too short for a feature std: {stacked.shape[0]} frame(s), need at least 2 "
            f"({2 * features.hop_size / features.sr * 1000:.0f} ms)"
        )
    std = stacked.std(dim=0, unbiased=True)
    return pd.DataFrame(
        {
            "bin": np.arange(features.nb_df),
            "std_real": std[:, 0].numpy(),
            "std_imag": std[:, 1].numpy(),
        }
    )
