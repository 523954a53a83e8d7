"""DNSMOS (P.835 SIG/BAK/OVRL and P.808): non-intrusive speech quality of one signal at 16 kHz.

Microsoft's ONNX models (vendored in `dfablate/dnsmos_models`, MIT) run with onnxruntime (the
`dnsmos` extra). The scoring follows the DNS challenge's `dnsmos_local.py` as packaged in
`speechmos.dnsmos.run(x, 16000)` (not personalised): a signal shorter than 9.01 s is repeated
until it is that long; longer ones are cut into 9.01 s segments every second (the last partial
one dropped) and the scores are averaged. P.835's raw outputs go through the challenge's
polynomial fits; P.808 takes a 120-band log-mel spectrogram, computed here with numpy as
librosa's `melspectrogram` (Slaney mel scale and norm, centred frames, zero padding) followed by
`power_to_db(ref=max)`, so librosa is not needed at run time.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

DNSMOS_METRICS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
DNSMOS_RATE = 16000
SEGMENT_S = 9.01  # the models' input length
MODEL_DIR = Path(__file__).parent / "dnsmos_models"
# The DNS challenge's polynomial fits of P.835's raw outputs (highest power first)
_SIG_FIT = (-0.08397278, 1.22083953, 0.0052439)
_BAK_FIT = (-0.13166888, 1.60915514, -0.39604546)
_OVRL_FIT = (-0.06766283, 1.11546468, 0.04602535)
# P.808's log-mel front end
_MEL_FFT, _MEL_HOP, _MEL_BANDS = 321, 160, 120
_MIN_POWER, _TOP_DB = 1e-10, 80.0


class DnsmosUnavailable(ImportError):
    """onnxruntime is not installed (the `dnsmos` extra)."""


def dnsmos(audio16: np.ndarray) -> dict[str, float]:
    """DNSMOS scores of a mono signal at 16 kHz (samples within [-1, 1]), keys DNSMOS_METRICS."""
    p835, p808 = _sessions()
    segment = int(SEGMENT_S * DNSMOS_RATE)
    audio = np.asarray(audio16)
    while len(audio) < segment:  # as the reference: repeat the whole signal until long enough
        audio = np.append(audio, audio)
    hops = int(np.floor(len(audio) / DNSMOS_RATE) - SEGMENT_S) + 1
    scores = []
    for start in range(hops):
        piece = audio[start * DNSMOS_RATE : int((start + SEGMENT_S) * DNSMOS_RATE)]
        if len(piece) < segment:
            continue
        raw = p835.run(None, {"input_1": piece.astype(np.float32)[None, :]})[0][0]
        mel = log_mel(piece[:-_MEL_HOP]).astype(np.float32)[None]  # [1, T, 120]
        p808_mos = p808.run(None, {"input_1": mel})[0][0][0]
        fits = (_SIG_FIT, _BAK_FIT, _OVRL_FIT)
        sig, bak, ovrl = (np.polyval(fit, x) for fit, x in zip(fits, raw, strict=True))
        scores.append((sig, bak, ovrl, p808_mos))
    means = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
    return dict(zip(DNSMOS_METRICS, map(float, means), strict=True))


def log_mel(audio16: np.ndarray) -> np.ndarray:
    """P.808's input [frames, 120]: (power_to_db(mel power, ref=max, top_db=80) + 40) / 40."""
    power = mel_power(audio16)
    db = 10 * np.log10(np.maximum(_MIN_POWER, power))
    db -= 10 * np.log10(np.maximum(_MIN_POWER, power.max()))
    db = np.maximum(db, db.max() - _TOP_DB)
    return ((db + 40) / 40).T


def mel_power(audio16: np.ndarray) -> np.ndarray:
    """Mel power spectrogram [120, frames] as librosa's melspectrogram(sr=16000, n_fft=321,
    hop_length=160, n_mels=120): periodic Hann, centred zero-padded frames, |STFT|^2."""
    audio = np.asarray(audio16)
    real = np.float32 if audio.dtype == np.float32 else np.float64
    padded = np.pad(audio, _MEL_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, _MEL_FFT)[::_MEL_HOP]  # [T, 321]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_MEL_FFT) / _MEL_FFT)  # periodic Hann
    spectrum = np.fft.rfft(frames * window.astype(real), axis=1)  # [T, 161]
    power = (spectrum.real**2 + spectrum.imag**2).astype(real)
    return mel_filters() @ power.T  # [120, T]


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=321, n_mels=120): Slaney scale and area norm
    [120, 161], float32."""
    fft_freqs = np.fft.rfftfreq(_MEL_FFT, 1 / DNSMOS_RATE)
    mel_edges = _mel_to_hz(
        np.linspace(_hz_to_mel(0.0), _hz_to_mel(DNSMOS_RATE / 2), _MEL_BANDS + 2)
    )
    widths = np.diff(mel_edges)
    ramps = mel_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_edges[2:] - mel_edges[:-2]))[:, None]
    return weights.astype(np.float32)


# Slaney's mel scale: linear below 1 kHz, logarithmic above
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP
    return hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    return np.where(
        mels >= _MIN_LOG_MEL,
        _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)),
        _F_SP * mels,
    )


def dnsmos_available() -> bool:
    """Whether onnxruntime (the `dnsmos` extra) is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


@lru_cache(maxsize=1)
def _sessions():
    """The P.835 and P.808 inference sessions, one thread each (files are scored in parallel)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DnsmosUnavailable("DNSMOS needs onnxruntime: pip install 'dfablate[dnsmos]'") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    return tuple(
        ort.InferenceSession(str(MODEL_DIR / name), options, providers=providers)
        for name in ("sig_bak_ovr.onnx", "model_v8.onnx")
    )
