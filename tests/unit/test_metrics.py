"""dfablate.metrics against the reference implementations, on real speech.

References: `pesq` (wide-band), `pystoi.stoi` and DeepFilterNet's `df.sepm.composite`, all fed
the same 16 kHz signals (48 kHz input resampled with scipy's resample_poly).
"""

from __future__ import annotations

import numpy as np
import pytest
from pesq import pesq
from pystoi import stoi as pystoi_stoi
from scipy.signal import istft, resample_poly, stft
from upstream import import_df_module, requires_reference

from dfablate import metrics
from dfablate.audio import read_audio
from dfablate.metrics import METRICS, MetricError, score_pair

TOLERANCE = 1e-3


def _mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.resize(noise, speech.shape)
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (speech + gain * noise).astype(np.float32)


def _oracle_wiener(speech: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """A realistic enhanced signal: the noisy STFT times the oracle Wiener gain."""
    _, _, clean_spec = stft(speech, nperseg=512)
    _, _, noisy_spec = stft(noisy, nperseg=512)
    noise_power = np.abs(noisy_spec - clean_spec) ** 2
    gain = np.abs(clean_spec) ** 2 / (np.abs(clean_spec) ** 2 + noise_power + 1e-12)
    return istft(gain * noisy_spec, nperseg=512)[1][: len(speech)].astype(np.float32)


def _pairs(data_dir) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Real clean/degraded pairs: the recorded 48 kHz pair and speech + real noise mixtures."""
    clean48, _ = read_audio(data_dir / "clean_freesound_33711.wav")
    noisy48, _ = read_audio(data_dir / "noisy_snr0.wav")
    noise48, _ = read_audio(data_dir / "noise_freesound_573577.wav")
    noise16 = resample_poly(noise48, 1, 3).astype(np.float32)
    arctic7, _ = read_audio(data_dir / "arctic_a0007.wav")
    arctic9, _ = read_audio(data_dir / "arctic_a0009.wav")
    codec2, _ = read_audio(data_dir / "codec2_speech_orig_16k.wav")
    codec2 = codec2[: 6 * 16000]
    crop48 = clean48[48000 : 48000 * 5]
    arctic9_noisy = _mix(arctic9, noise16, 0)
    return {
        "recorded pair 48k": (clean48, noisy48, 48000),
        "arctic7 -5 dB": (arctic7, _mix(arctic7, noise16, -5), 16000),
        "arctic9 5 dB": (arctic9, _mix(arctic9, noise16, 5), 16000),
        "codec2 15 dB": (codec2, _mix(codec2, noise16, 15), 16000),
        "freesound 48k 10 dB": (crop48, _mix(crop48, noise48[::-1], 10), 48000),
        "arctic9 wiener": (arctic9, _oracle_wiener(arctic9, arctic9_noisy), 16000),
    }


@pytest.fixture(scope="module")
def pairs(data_dir):
    return _pairs(data_dir)


@pytest.fixture(scope="module")
def sepm():
    return import_df_module("sepm")


CASES = [
    "recorded pair 48k",
    "arctic7 -5 dB",
    "arctic9 5 dB",
    "codec2 15 dB",
    "freesound 48k 10 dB",
    "arctic9 wiener",
]


@requires_reference
@pytest.mark.parametrize("case", CASES)
def test_score_pair_agrees_with_reference_implementations(pairs, sepm, case):
    clean, degraded, rate = pairs[case]
    clean16 = resample_poly(clean, 16000, rate) if rate != 16000 else clean
    degraded16 = resample_poly(degraded, 16000, rate) if rate != 16000 else degraded
    clean16, degraded16 = clean16.astype(np.float32), degraded16.astype(np.float32)
    ref_pesq, ref_csig, ref_cbak, ref_covl, ref_ssnr = sepm.composite(clean16, degraded16, 16000)
    reference = {
        "pesq": pesq(16000, clean16, degraded16, "wb"),
        "stoi": pystoi_stoi(clean16, degraded16, 16000),
        "csig": ref_csig,
        "cbak": ref_cbak,
        "covl": ref_covl,
        "ssnr": ref_ssnr,
    }
    assert ref_pesq == reference["pesq"]

    scores = score_pair(clean, degraded, rate)

    assert set(scores) == set(METRICS)
    for name, expected in reference.items():
        assert abs(scores[name] - expected) < TOLERANCE, (name, scores[name], expected)
    for name in ("csig", "cbak", "covl"):
        assert 1.0 <= scores[name] <= 5.0


@requires_reference
@pytest.mark.parametrize("case", ["arctic7 -5 dB", "arctic9 5 dB", "arctic9 wiener"])
def test_composite_parts_match_reference_closely(pairs, sepm, case):
    """LLR reproduces the reference's float32 arithmetic; WSS differs by float32 spectra only."""
    clean, degraded, _ = pairs[case]
    assert abs(metrics.llr(clean, degraded) - sepm.llr(clean, degraded, 16000)) < 1e-9
    assert abs(metrics.wss(clean, degraded) - sepm.wss(clean, degraded, 16000)) < 1e-4
    ssnr = metrics.segmental_snr(clean, degraded)
    assert abs(ssnr - sepm.SNRseg(clean, degraded, 16000)) < 1e-9


@requires_reference
def test_composite_clips_to_mos_range(pairs, sepm):
    """A heavily degraded pair drives CSIG/COVL below 1 before clipping, as in the reference."""
    clean, _, _ = pairs["arctic9 5 dB"]
    noise = np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    degraded = _mix(clean, noise, -10)
    reference = sepm.composite(clean, degraded, 16000)
    scores = score_pair(clean, degraded, 16000)
    assert reference[1] == 1.0 and scores["csig"] == 1.0
    assert abs(scores["covl"] - reference[3]) < TOLERANCE


def test_pesq_runs_once_per_pair(pairs, monkeypatch):
    calls = []
    real_pesq = metrics.pesq

    def counting_pesq(*args, **kwargs):
        calls.append(args[0])
        return real_pesq(*args, **kwargs)

    monkeypatch.setattr(metrics, "pesq", counting_pesq)
    clean, degraded, rate = pairs["freesound 48k 10 dB"]
    score_pair(clean, degraded, rate)
    assert calls == [16000]


def test_si_sdr_at_native_rate_matches_orthogonal_construction(pairs):
    """With noise orthogonal to the reference, SI-SDR is exactly 10 log10(|s|^2 / |n|^2)."""
    clean, _, rate = pairs["recorded pair 48k"]
    assert rate == 48000
    s = clean.astype(np.float64)
    noise = np.random.default_rng(1).standard_normal(s.shape)
    noise -= (noise @ s) / (s @ s) * s
    noise *= np.sqrt((s @ s) / (noise @ noise)) / 10  # 20 dB
    expected = 10 * np.log10((s @ s) / (noise @ noise))
    scores = score_pair(clean, (s + noise).astype(np.float32), rate)
    assert abs(scores["sisdr"] - expected) < 1e-3
    assert abs(metrics.si_sdr(s, 0.25 * (s + noise)) - expected) < 1e-6  # scale-invariant


def test_identical_signals_score_perfectly(pairs):
    clean, _, rate = pairs["arctic7 -5 dB"]
    scores = score_pair(clean, clean.copy(), rate)
    assert scores["pesq"] > 4.5
    assert scores["stoi"] > 0.999
    assert scores["ssnr"] == 35.0  # per-frame SNR clipped at 35 dB


def test_unscorable_pairs_raise_metric_error(pairs):
    clean, degraded, rate = pairs["arctic7 -5 dB"]
    with pytest.raises(MetricError, match="length mismatch"):
        score_pair(clean, degraded[:-10], rate)
    broken = degraded.copy()
    broken[100] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        score_pair(clean, broken, rate)
    with pytest.raises(MetricError, match="no speech"):
        score_pair(np.zeros(16000, np.float32), degraded[:16000], rate)
    with pytest.raises(MetricError, match="all zeros"):
        score_pair(clean, np.zeros_like(degraded), rate)
    with pytest.raises(MetricError, match="too short"):
        score_pair(clean[:800], degraded[:800], rate)
    with pytest.raises(MetricError, match="mono"):
        score_pair(np.stack([clean, clean]), np.stack([degraded, degraded]), rate)
