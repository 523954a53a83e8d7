"""The DeepFilterNet3 training loss, re-implemented because `df.loss` cannot be imported.

`df.loss` imports torchaudio (through `df.io`), which has no build for current torch. This module
mirrors the parts of `df/loss.py` (deepfilternet 0.5.6) that the DFN3 recipe uses, with the same
arithmetic, so the recipe's loss factors keep their meaning:

- `Istft`: DFN's time-domain synthesis for the loss (`torch.istft`, `normalized=True`, libDF's
  Vorbis window, one extra frame of padding). Note it is *not* scale-exact against libDF's
  analysis (the signal comes out divided by sqrt(fft_size)); the recipe's factor 500 was tuned
  on exactly this scale, so it is kept.
- `MultiResSpecLoss`: per FFT size, MSE of compressed magnitudes |Y|^g vs |S|^g plus MSE of the
  compressed complex spectra |Y|^g e^{j angle Y} (Hann window, hop n/4, normalised STFT). The
  phase factor is computed without trigonometry, as Y / |Y|, with DFN's gradient.
- `SpectralLoss` (DFN2 recipe): the same compressed magnitude + complex MSE on the model's
  output spectrum directly (no synthesis).
- `LocalSnrLoss` with `local_snr_target`: MSE between the model's local-SNR output and the local
  SNR of clean vs noise (noisy - clean) spectra, in dB, clamped to [lsnr_min - 1, lsnr_max + 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _UnitPhase(torch.autograd.Function):
    """e^{j angle x} computed as x / |x|, without `atan2` and complex `exp`.

    Where x = 0 it is what the reference computes there: atan2(+-0, +-0) is 0 or +-pi by the sign
    of the zero real part, so +1 or -1 (a zero STFT bin often has real part -0). Its backward is
    exactly that of `exp(1j * df.utils.angle(x))`: DFN's angle gradient, which divides by
    max(|x|^2, 1e-10), so it stays finite at zero magnitude and equals the reference's.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        magnitude = x.abs()
        zero = magnitude == 0
        sign_of_zero = torch.copysign(torch.ones_like(magnitude), x.real).to(x.dtype)
        unit = torch.where(zero, sign_of_zero, x / magnitude.masked_fill(zero, 1))
        ctx.save_for_backward(x, unit)
        return unit

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, unit = ctx.saved_tensors
        # d unit / d angle = j * unit, so d loss / d angle = Re(conj(grad) * j * unit)
        grad_angle = grad.imag * unit.real - grad.real * unit.imag
        grad_inv = grad_angle / (x.real.square() + x.imag.square()).clamp_min(1e-10)
        return torch.complex(-x.imag * grad_inv, x.real * grad_inv)


def _complex(x: Tensor) -> Tensor:
    """[..., 2] real/imag -> complex; complex passes through."""
    if torch.is_complex(x):
        return x
    return torch.view_as_complex(x.contiguous())


def unit_phase(x: Tensor) -> Tensor:
    """e^{j angle x} of a complex tensor, with DFN's zero-safe angle gradient (see _UnitPhase)."""
    return _UnitPhase.apply(x)


class Istft(nn.Module):
    """DFN's loss-side synthesis: spectrum [B, C, T, F(, 2)] -> waveform [B, C, T * hop]."""

    def __init__(self, fft_size: int, hop_size: int, window: Tensor):
        super().__init__()
        if window.shape[0] != fft_size:
            raise ValueError(f"window length {window.shape[0]} != fft_size {fft_size}")
        self.fft_size = fft_size
        self.hop_size = hop_size
        self.window: Tensor
        self.register_buffer("window", window.float(), persistent=False)

    def forward(self, spec: Tensor) -> Tensor:
        spec = _complex(spec)
        frames, bins = spec.shape[-2:]
        leading = spec.shape[:-2]
        wave = torch.istft(
            F.pad(spec.reshape(-1, frames, bins).transpose(1, 2), (0, 1)),
            n_fft=self.fft_size,
            hop_length=self.hop_size,
            window=self.window,
            normalized=True,
        )
        return wave.reshape(*leading, wave.shape[-1])


class MultiResSpecLoss(nn.Module):
    """Sum over FFT sizes of factor * MSE(|Y|^g, |S|^g) + factor_complex * MSE of complex parts."""

    def __init__(
        self,
        fft_sizes: Sequence[int] = (256, 512, 1024, 2048),
        gamma: float = 0.3,
        factor: float = 500.0,
        factor_complex: float = 500.0,
    ):
        super().__init__()
        self.fft_sizes = [int(n) for n in fft_sizes]
        self.gamma = float(gamma)
        self.factor = float(factor)
        self.factor_complex = float(factor_complex)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _stft(self, wave: Tensor, n_fft: int) -> Tensor:
        length = wave.shape[-1]
        spec = torch.stft(
            wave.reshape(-1, length),
            n_fft=n_fft,
            hop_length=n_fft // 4,
            window=getattr(self, f"window_{n_fft}"),
            normalized=True,
            return_complex=True,
        )
        return spec.reshape(*wave.shape[:-1], *spec.shape[-2:])

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        loss = torch.zeros((), device=enhanced.device, dtype=enhanced.dtype)
        for n_fft in self.fft_sizes:
            loss = loss + _compressed_spectrum_mse(
                self._stft(enhanced, n_fft),
                self._stft(clean, n_fft),
                self.gamma,
                self.factor,
                self.factor_complex,
            )
        return loss


def _compressed_spectrum_mse(
    enhanced: Tensor, clean: Tensor, gamma: float, factor_magnitude: float, factor_complex: float
) -> Tensor:
    """DFN's spectral term on complex spectra: factor_magnitude * MSE(|Y|^g, |S|^g) plus
    factor_complex * MSE of the compressed complex spectra |.|^g e^(j angle).

    The compressed spectrum |Y|^g e^{j angle Y} is computed as |Y|^g * Y / |Y| (unit_phase):
    the same values and gradients as DFN's `atan2` + complex `exp`, at a fraction of the cost."""
    enh_abs, clean_abs = enhanced.abs(), clean.abs()
    if gamma != 1:
        enh_abs = enh_abs.clamp_min(1e-12).pow(gamma)
        clean_abs = clean_abs.clamp_min(1e-12).pow(gamma)
    loss = F.mse_loss(enh_abs, clean_abs) * factor_magnitude
    if factor_complex:
        if gamma != 1:
            enhanced = enh_abs * unit_phase(enhanced)
            clean = clean_abs * unit_phase(clean)
        loss = loss + (
            F.mse_loss(torch.view_as_real(enhanced), torch.view_as_real(clean)) * factor_complex
        )
    return loss


class SpectralLoss(nn.Module):
    """factor_magnitude * MSE(|Y|^g, |S|^g) + factor_complex * MSE of the compressed complex
    spectra, on spectra [..., F, 2] (DFN2's recipe uses it beside MultiResSpecLoss)."""

    def __init__(
        self, gamma: float = 0.3, factor_magnitude: float = 1.0, factor_complex: float = 1.0
    ):
        super().__init__()
        self.gamma = float(gamma)
        self.factor_magnitude = float(factor_magnitude)
        self.factor_complex = float(factor_complex)

    def forward(self, enhanced_spec: Tensor, clean_spec: Tensor) -> Tensor:
        return _compressed_spectrum_mse(
            _complex(enhanced_spec),
            _complex(clean_spec),
            self.gamma,
            self.factor_magnitude,
            self.factor_complex,
        )


def _local_energy(spec: Tensor, window_size: int) -> Tensor:
    """Hann-weighted moving average over frames of the frame energy; spec [B, C, T, F, 2]."""
    if window_size % 2 == 0:
        window_size += 1
    half = window_size // 2
    energy = F.pad(spec.pow(2).sum(-1).sum(-1), (half, half, 0, 0))
    window = torch.hann_window(window_size, device=spec.device, dtype=energy.dtype)
    return (energy.unfold(-1, size=window_size, step=1) * window).sum(-1).div(window_size)


def local_snr_window(window_ms: float, sr: int, fft_size: int, hop_size: int) -> int:
    """Window of `window_ms` in STFT frames, as `df.modules.LocalSnrTarget.calc_ws` computes it."""
    frames = 1 + (window_ms - fft_size / sr * 1000) / (hop_size / sr * 1000)
    return max(int(round(frames)), 1)


def local_snr_target(
    clean_spec: Tensor,
    noise_spec: Tensor,
    window_size: int,
    noise_window_size: int,
    snr_range: tuple[float, float],
    eps: float = 1e-12,
) -> Tensor:
    """Local SNR in dB per frame [B, T] of clean vs noise spectra [B, 1, T, F, 2] (DFN's target)."""
    speech_energy = _local_energy(clean_spec, window_size)
    noise_energy = _local_energy(noise_spec, noise_window_size)
    snr = (speech_energy / noise_energy.clamp_min(eps)).clamp_min(eps).log10().mul(10)
    return snr.clamp(snr_range[0], snr_range[1]).squeeze(1)


class DfnLoss(nn.Module):
    """DFN recipe loss: MultiResSpecLoss on synthesised signals + lsnr_factor * MSE(lsnr, target)
    (+ SpectralLoss when its factors are non-zero, as in the DFN2 recipe).

    forward(clean_spec, noisy_spec, enhanced_spec, lsnr) with spectra [B, 1, T, F, 2] from libDF's
    analysis and the model's lsnr [B, T, 1]; returns (total, parts) with parts a dict of the two
    detached terms for logging.
    """

    def __init__(
        self,
        window: Tensor,
        sr: int = 48000,
        fft_size: int = 960,
        hop_size: int = 480,
        lsnr_min: float = -15.0,
        lsnr_max: float = 35.0,
        fft_sizes: Sequence[int] = (256, 512, 1024, 2048),
        gamma: float = 0.3,
        factor: float = 500.0,
        factor_complex: float = 500.0,
        lsnr_factor: float = 1e-3,
        lsnr_window_ms: float = 20.0,
        spectral_factor_magnitude: float = 0.0,
        spectral_factor_complex: float = 0.0,
        spectral_gamma: float = 1.0,
    ):
        super().__init__()
        self.istft = Istft(fft_size, hop_size, window)
        self.multi_res = MultiResSpecLoss(fft_sizes, gamma, factor, factor_complex)
        self.spectral = None
        if spectral_factor_magnitude or spectral_factor_complex:
            self.spectral = SpectralLoss(
                spectral_gamma, spectral_factor_magnitude, spectral_factor_complex
            )
        self.lsnr_factor = float(lsnr_factor)
        self.snr_window = local_snr_window(lsnr_window_ms, sr, fft_size, hop_size)
        self.snr_range = (float(lsnr_min) - 1, float(lsnr_max) + 1)

    def forward(
        self, clean_spec: Tensor, noisy_spec: Tensor, enhanced_spec: Tensor, lsnr: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        spec_loss = self.multi_res(self.istft(enhanced_spec), self.istft(clean_spec))
        target = local_snr_target(
            clean_spec,
            noisy_spec - clean_spec,
            self.snr_window,
            self.snr_window * 2,
            self.snr_range,
        )
        lsnr_loss = F.mse_loss(lsnr.squeeze(-1), target) * self.lsnr_factor
        total = spec_loss + lsnr_loss
        parts = {"multi_res": spec_loss.detach(), "lsnr": lsnr_loss.detach()}
        if self.spectral is not None:
            spectral_loss = self.spectral(enhanced_spec, clean_spec)
            total = total + spectral_loss
            parts["spectral"] = spectral_loss.detach()
        return total, parts
