"""Reading audio for every stage: one place that decodes, down-mixes, resamples and validates."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from dfablate.errors import UserError


class AudioError(UserError):
    """A file that cannot be used as audio (unreadable, empty, non-finite)."""


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase (anti-aliased) resampling along the last axis; float32 in, float32 out."""
    if from_rate == to_rate:
        return audio
    ratio = Fraction(to_rate, from_rate)
    out = resample_poly(audio, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32, copy=False)


def read_audio(path: str | Path, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read a sound file as float32 ([T] when mono, else [C, T]) and its sample rate.

    Stereo is averaged to mono with a warning when `mono` is set. Raises AudioError naming the
    file when it cannot be decoded, is truncated, holds no samples, or holds NaN/Inf.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if reason := truncation(path):
        raise AudioError(f"{path}: {reason}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{path}: cannot read audio ({reason})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    data = data.T  # [C, T]
    if mono:
        if data.shape[0] > 1:
            warnings.warn(f"{path}: {data.shape[0]} channels, down-mixed to mono", stacklevel=2)
        data = data.mean(axis=0)
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def truncation(path: str | Path, info=None) -> str | None:
    """Why `path` looks cut short, as `truncated: N of M frames` (its header promises more audio
    than the file holds, as after an interrupted copy), or None. libsndfile reads such a file
    without complaint, as if it were complete. `info`: its `soundfile.info`, if already read."""
    try:
        info = info or sf.info(str(path))
    except Exception:  # unreadable: read_audio says why
        return None
    fields = dict(line.partition(":")[::2] for line in (info.extra_info or "").splitlines())
    fields = {name.strip(): value.strip() for name, value in fields.items()}
    data = fields.get("data", "")
    if "should be" not in data:
        return None
    declared, _, held = data.partition("(should be")
    declared_bytes, held_bytes = int(declared), int(held.strip(" )"))
    try:
        frame_bytes = int(fields["Block Align"])
    except (KeyError, ValueError):
        frame_bytes = max(1, held_bytes // max(1, info.frames))
    return f"truncated: {held_bytes // frame_bytes} of {declared_bytes // frame_bytes} frames"


def load_audio(path: str | Path, sample_rate: int, *, mono: bool = True) -> np.ndarray:
    """Read a file (see `read_audio`) and resample it to `sample_rate`."""
    data, rate = read_audio(path, mono=mono)
    return resample(data, rate, sample_rate)


# An input gain beyond this says nothing about a recording's level any more, and far beyond it
# float32 audio scaled by 10^(G/20) overflows (about 770 dB) and the metrics fail.
MAX_GAIN_DB = 120.0


def is_gain_db(value) -> bool:
    """Whether `value` is a usable gain in dB: a finite number (not a bool) within
    +-MAX_GAIN_DB."""
    if isinstance(value, bool):
        return False
    try:
        gain = float(value)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(gain)) and abs(gain) <= MAX_GAIN_DB


def gain_factor(input_gain_db: float) -> float:
    """The amplitude factor 10^(G/20) of an input gain in dB."""
    return 10.0 ** (input_gain_db / 20.0)
