"""DFN3 loss: values against the formula written out here in numpy, and against df/loss.py itself."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from upstream import import_df_module, requires_reference

from dfablate.audio import load_audio
from dfablate.features import DfFeatures, vorbis_window
from dfablate.losses import (
    DfnLoss,
    Istft,
    MultiResSpecLoss,
    SpectralLoss,
    local_snr_target,
    local_snr_window,
    unit_phase,
)

SR, FFT, HOP = 48000, 960, 480


def _window() -> torch.Tensor:
    return torch.from_numpy(vorbis_window(FFT))


def _spec(wave: np.ndarray) -> torch.Tensor:
    """libDF's analysis (as DfFeatures computes it, tested against libdf) as [1, 1, T, F, 2]."""
    spec = DfFeatures().analysis(torch.from_numpy(wave[None].astype(np.float32)))
    return torch.view_as_real(spec).unsqueeze(0)


@pytest.fixture(scope="module")
def pair(speech_48k, noisy_48k) -> tuple[np.ndarray, np.ndarray]:
    clean = load_audio(speech_48k, SR)[: SR * 2]
    noisy = load_audio(noisy_48k, SR)[: SR * 2]
    return clean, noisy


def _numpy_stft(x: np.ndarray, n: int) -> np.ndarray:
    """torch.stft(center=True, reflect pad, periodic Hann, hop n/4, normalized) written out."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    padded = np.pad(x.astype(np.float64), n // 2, mode="reflect")
    hop = n // 4
    frames = np.stack(
        [padded[i : i + n] * window for i in range(0, len(padded) - n + 1, hop)], axis=0
    )
    return np.fft.rfft(frames, axis=-1) / np.sqrt(n)


def _numpy_multi_res(enh: np.ndarray, clean: np.ndarray, sizes, gamma, f, fc) -> float:
    total = 0.0
    for n in sizes:
        y, s = _numpy_stft(enh, n), _numpy_stft(clean, n)
        ya = np.maximum(np.abs(y), 1e-12) ** gamma
        sa = np.maximum(np.abs(s), 1e-12) ** gamma
        total += f * np.mean((ya - sa) ** 2)
        yc = ya * np.exp(1j * np.angle(y))
        sc = sa * np.exp(1j * np.angle(s))
        diff = np.concatenate([(yc - sc).real.ravel(), (yc - sc).imag.ravel()])
        total += fc * np.mean(diff**2)
    return total


def test_istft_reconstructs_speech_scaled_by_inverse_sqrt_fft(pair):
    """DFN's loss synthesis returns the input aligned and divided by sqrt(fft_size)."""
    clean, _ = pair
    window = _window()
    wave = Istft(FFT, HOP, window)(_spec(clean))[0, 0].numpy()
    assert wave.shape[0] == clean.shape[0]
    inner = slice(FFT, len(clean) - FFT)
    np.testing.assert_allclose(wave[inner] * np.sqrt(FFT), clean[inner], atol=2e-5)


def test_multi_res_spec_loss_matches_numpy_formula(pair):
    clean, noisy = pair
    sizes = (256, 512, 1024, 2048)
    loss = MultiResSpecLoss(sizes, gamma=0.3, factor=500, factor_complex=500)
    value = loss(torch.from_numpy(noisy)[None], torch.from_numpy(clean)[None]).item()
    expected = _numpy_multi_res(noisy, clean, sizes, 0.3, 500, 500)
    assert value == pytest.approx(expected, rel=1e-4)
    assert loss(torch.from_numpy(clean)[None], torch.from_numpy(clean)[None]).item() == 0.0


def _numpy_local_energy(frame_energy: np.ndarray, ws: int) -> np.ndarray:
    ws = ws + 1 if ws % 2 == 0 else ws
    # periodic Hann; a window of length 1 is [1] (torch.hann_window's definition)
    window = np.ones(1) if ws == 1 else 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(ws) / ws)
    padded = np.pad(frame_energy, ws // 2)
    return np.array([np.sum(padded[t : t + ws] * window) / ws for t in range(len(frame_energy))])


def test_local_snr_target_matches_numpy_formula(pair):
    clean, noisy = pair
    clean_spec, noisy_spec = _spec(clean), _spec(noisy)
    ws = local_snr_window(20, SR, FFT, HOP)
    target = local_snr_target(clean_spec, noisy_spec - clean_spec, ws, ws * 2, (-16.0, 36.0))
    clean_c = torch.view_as_complex(clean_spec[0, 0]).numpy().astype(np.complex128)
    noise_c = torch.view_as_complex((noisy_spec - clean_spec)[0, 0]).numpy().astype(np.complex128)
    e_speech = _numpy_local_energy((np.abs(clean_c) ** 2).sum(-1), ws)
    e_noise = _numpy_local_energy((np.abs(noise_c) ** 2).sum(-1), ws * 2)
    expected = np.clip(
        10 * np.log10(np.maximum(e_speech / np.maximum(e_noise, 1e-12), 1e-12)), -16, 36
    )
    np.testing.assert_allclose(target[0].numpy(), expected, atol=1e-3)
    assert expected.min() < 0 < expected.max()  # real speech in noise spans both signs


@pytest.fixture(scope="module")
def upstream_loss_module():
    """df/loss.py itself; its only torchaudio use is `df.io.resample` (ASR loss, unused here)."""
    if "df.io" not in sys.modules:
        import_df_module("config")
        sys.modules["df.io"] = types.SimpleNamespace(resample=None)
        try:
            module = import_df_module("loss")
        finally:
            del sys.modules["df.io"]
    else:
        module = import_df_module("loss")
    import_df_module("config").config.use_defaults(allow_reload=True)  # 48 kHz, fft 960, hop 480
    return module


@requires_reference
def test_dfn_loss_equals_upstream_df_loss(pair, upstream_loss_module):
    """Total = upstream MultiResSpecLoss(istft) + LocalSnrLoss(LocalSnrTarget) with recipe factors."""
    up = upstream_loss_module
    clean, noisy = pair
    clean_spec, noisy_spec = _spec(clean), _spec(noisy)
    enhanced = clean_spec * 0.7 + noisy_spec * 0.3
    lsnr = torch.linspace(-10, 30, clean_spec.shape[2]).reshape(1, -1, 1)
    window = _window()

    ours, parts = DfnLoss(window, lsnr_factor=1e-3)(clean_spec, noisy_spec, enhanced, lsnr)

    istft = up.Istft(FFT, HOP, window)
    mrsl = up.MultiResSpecLoss([256, 512, 1024, 2048], gamma=0.3, factor=500, f_complex=500)
    target = import_df_module("modules").LocalSnrTarget(ws=20, target_snr_range=[-16, 36])
    lsnr_gt = target(clean_spec, noise=noisy_spec - clean_spec)
    expected_spec = mrsl(istft(enhanced), istft(clean_spec))
    expected_lsnr = up.LocalSnrLoss(1e-3)(lsnr, lsnr_gt)
    assert parts["multi_res"].item() == pytest.approx(expected_spec.item(), rel=1e-5)
    assert parts["lsnr"].item() == pytest.approx(expected_lsnr.item(), rel=1e-5)
    assert ours.item() == pytest.approx((expected_spec + expected_lsnr).item(), rel=1e-5)


def test_dfn_loss_gradient_is_finite_for_silent_target(pair):
    """A silent clean target (zero magnitude) must not give NaN gradients (robust angle)."""
    _, noisy = pair
    window = _window()
    noisy_spec = _spec(noisy)
    clean_spec = torch.zeros_like(noisy_spec)
    enhanced = (noisy_spec * 0.5).requires_grad_()
    lsnr = torch.zeros(1, noisy_spec.shape[2], 1)
    total, _ = DfnLoss(window)(clean_spec, noisy_spec, enhanced, lsnr)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(enhanced.grad).all()


@requires_reference
def test_spectral_loss_equals_upstream(pair, upstream_loss_module):
    """The DFN2 recipe's SpectralLoss (factors 1000/1000, gamma 0.3) on libDF spectra."""
    clean, noisy = pair
    clean_spec, noisy_spec = _spec(clean), _spec(noisy)
    ours = SpectralLoss(gamma=0.3, factor_magnitude=1000, factor_complex=1000)(
        noisy_spec, clean_spec
    )
    upstream = upstream_loss_module.SpectralLoss(
        gamma=0.3, factor_magnitude=1000, factor_complex=1000
    )(noisy_spec, clean_spec)
    assert ours.item() == pytest.approx(upstream.item(), rel=1e-5)
    assert ours.item() > 0


@requires_reference
def test_unit_phase_equals_exp_of_upstream_angle():
    """Y / |Y| has the values and gradients of `exp(1j * df.utils.angle(Y))`: at zero magnitude
    (+-1 by the sign of the zero real part, as atan2 gives, and gradient 0), below DFN's 1e-5 gradient clamp and at ordinary magnitudes."""
    upstream_angle = import_df_module("utils").angle.apply
    torch.manual_seed(0)
    x = torch.complex(torch.randn(96, dtype=torch.float64), torch.randn(96, dtype=torch.float64))
    x[:4] = torch.complex(torch.tensor([0.0, -0.0, 0.0, -0.0]), torch.tensor([0.0, 0, -0.0, -0.0]))
    x[4:12] *= 1e-7  # |x| < 1e-5: DFN's angle gradient divides by 1e-10 there, not |x|^2
    weights = torch.complex(
        torch.randn(96, dtype=torch.float64), torch.randn(96, dtype=torch.float64)
    )
    outputs, grads = [], []
    for phase in (unit_phase, lambda z: torch.exp(1j * upstream_angle(z))):
        z = x.clone().requires_grad_()
        out = phase(z)
        torch.view_as_real(out * weights).sum().backward()
        outputs.append(out.detach())
        grads.append(z.grad)
    assert torch.isfinite(grads[0]).all()
    assert outputs[0][:4].tolist() == [1, -1, 1, -1] and (grads[0][:4] == 0).all()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=0)


@requires_reference
def test_trig_free_multi_res_loss_and_gradients_equal_upstream(pair, upstream_loss_module):
    """MultiResSpecLoss and its gradient w.r.t. the enhanced signal equal df.loss's to 1e-6
    relative, with a silent stretch (zero-magnitude bins) in the target."""
    clean, noisy = pair
    clean_t = torch.from_numpy(clean.copy())[None]
    clean_t[:, : SR // 4] = 0
    enhanced = torch.from_numpy(0.7 * clean + 0.3 * noisy)[None].float()
    sizes = [256, 512, 1024, 2048]
    ours = MultiResSpecLoss(sizes, gamma=0.3, factor=500, factor_complex=500)
    upstream = upstream_loss_module.MultiResSpecLoss(sizes, gamma=0.3, factor=500, f_complex=500)
    values, grads = [], []
    for loss in (ours, upstream):
        y = enhanced.clone().requires_grad_()
        value = loss(y, clean_t)
        value.backward()
        values.append(value.item())
        grads.append(y.grad)
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert torch.isfinite(grads[0]).all()
    assert (grads[0] - grads[1]).abs().max() <= 1e-6 * grads[1].abs().max()
