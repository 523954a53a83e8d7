"""A mini Valentini-layout corpus built in seconds from the real speech and noise clips shipped
in `dfablate/data/clips`, so tests and the demo train on real audio with no download.

Layout, names and rates match Valentini (48 kHz, `p<spk>_<nnn>.wav`, the four folders); speakers
are the source recordings (fake ids, except that the default validation speakers p226 and p287
exist). Each 1.5-4 s speech segment is mixed four times, once at each of the split's Valentini
SNRs, each time with a different noise: the real (CC0) noise recording, babble made from other
training speakers, pink-ish or brown-ish noise. The test set uses other speakers and a part of
the noise recording that training never hears. Same seed -> byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from dfablate.audio import load_audio
from dfablate.data.valentini import SPLIT_DIRS, VALENTINI_RATE
from dfablate.errors import UserError
from dfablate.paths import default_cache_dir

MINI_VERSION = 1  # bump when the recipe changes, so cached corpora are rebuilt
CLIPS_DIR = Path(__file__).parent / "clips"
SNRS_DB = {"train": (0.0, 5.0, 10.0, 15.0), "test": (2.5, 7.5, 12.5, 17.5)}
NOISE_KINDS = ("recording", "babble", "pink", "brown")
NOISE_CLIP = "noise_freesound_573577"
NOISE_TEST_FROM_S = 3.2  # the noise recording's last 1.7 s are heard only in the test set
# speaker id -> (split, source clips in speaking order); see clips/LICENSES.md for each clip
SPEAKERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "p226": ("train", ("codec2_hts1a",)),
    "p287": ("train", ("codec2_hts2a",)),
    "p901": (
        "train",
        tuple(f"alsa_{w}_{s}" for w in ("Front", "Rear") for s in ("Left", "Center", "Right"))
        + ("alsa_Side_Left", "alsa_Side_Right"),
    ),
    "p902": ("train", ("arctic_a0007",)),
    "p903": ("train", ("codec2_morig",)),
    "p904": ("train", ("codec2_forig",)),
    "p905": ("train", ("codec2_big_dog",)),
    "p911": ("test", ("codec2_speech_orig_16k",)),
    "p912": ("test", ("arctic_a0009",)),
    "p913": ("test", ("codec2_cross",)),
}
MIN_SEGMENT_S, MIN_CUT_S, MAX_SEGMENT_S = 1.5, 2.0, 4.0
GAP_S = 0.3  # silence between concatenated clips of one speaker
LEVEL_DBFS = (-32.0, -22.0)  # active speech level of the clean files
BABBLE_TALKERS = 4
MARKER = "mini.json"


def _frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    usable = len(x) // frame * frame
    return np.mean(x[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1)


def active_power(x: np.ndarray, sample_rate: int = VALENTINI_RATE) -> float:
    """Mean power over 20 ms frames within 40 dB of the loudest: a simple active speech level."""
    power = _frame_power(x, sample_rate // 50)
    return float(power[power > power.max() * 1e-4].mean())


def _trim(x: np.ndarray, sample_rate: int, margin_s: float = 0.1) -> np.ndarray:
    """Drop leading/trailing frames 50 dB below the loudest, keeping a short margin."""
    frame = sample_rate // 100
    active = np.flatnonzero(_frame_power(x, frame) > _frame_power(x, frame).max() * 1e-5)
    margin = int(margin_s * sample_rate)
    return x[max(0, active[0] * frame - margin) : (active[-1] + 1) * frame + margin]


def _segments(stream: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    """Cut a speaker's speech into 2-4 s utterances (the last may be 1.5 s) at its quietest 10 ms
    frames, which are the pauses."""
    frame = sample_rate // 100
    power = _frame_power(stream, frame)
    shortest, first_cut, longest = (int(s * 100) for s in (MIN_SEGMENT_S, MIN_CUT_S, MAX_SEGMENT_S))
    segments, start = [], 0
    while len(power) - start > longest:
        cut = start + first_cut + int(np.argmin(power[start + first_cut : start + longest]))
        segments.append(stream[start * frame : cut * frame])
        start = cut
    if len(power) - start >= shortest:
        segments.append(stream[start * frame :])
    return segments


def _speaker_segments(clips: tuple[str, ...]) -> list[np.ndarray]:
    gap = np.zeros(int(GAP_S * VALENTINI_RATE), np.float32)
    parts: list[np.ndarray] = []
    for clip in clips:
        audio = load_audio(CLIPS_DIR / f"{clip}.flac", VALENTINI_RATE)
        parts += [_trim(audio, VALENTINI_RATE), gap]
    return _segments(np.concatenate(parts[:-1]), VALENTINI_RATE)


def _loop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of x from a random start, looped back and forth (no clicks at the seams)."""
    cycle = np.concatenate([x, x[::-1]])
    start = int(rng.integers(len(cycle)))
    reps = -(-(start + length) // len(cycle))
    return np.tile(cycle, reps)[start : start + length]


def _coloured(length: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f^exponent power spectrum (1 pink, 2 brown), unit power."""
    size = 1 << (length - 1).bit_length()  # a power of two: fast FFTs
    spectrum = np.fft.rfft(rng.standard_normal(size))
    spectrum *= np.maximum(np.fft.rfftfreq(size, 1 / VALENTINI_RATE), 20.0) ** (-exponent / 2)
    noise = np.fft.irfft(spectrum, n=size)[:length]
    return noise / np.sqrt(np.mean(noise**2))


def _babble(length: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    picks = rng.choice(len(talkers), size=min(BABBLE_TALKERS, len(talkers)), replace=False)
    mix = np.zeros(length)
    for pick in picks:
        voice = _loop(talkers[pick], length, rng)
        mix += voice / np.sqrt(active_power(talkers[pick]))
    return mix


def _mix(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) with the speech at a random active level and the noise at snr_db below it."""
    level_db = rng.uniform(*LEVEL_DBFS)
    clean = speech * np.sqrt(10 ** (level_db / 10) / active_power(speech))
    noise = noise * np.sqrt(active_power(clean) / np.mean(noise**2) / 10 ** (snr_db / 10))
    noisy = clean + noise
    peak = max(np.abs(noisy).max(), np.abs(clean).max())
    if peak > 0.95:  # keep both inside 16-bit range with the same gain
        clean, noisy = clean * (0.95 / peak), noisy * (0.95 / peak)
    return clean, noisy


def _build(out: Path, seed: int) -> dict:
    """Write the corpus into the (empty) folder `out`; returns the manifest."""
    rng = np.random.default_rng(seed)
    segments = {spk: _speaker_segments(clips) for spk, (_, clips) in SPEAKERS.items()}
    recording = load_audio(CLIPS_DIR / f"{NOISE_CLIP}.flac", VALENTINI_RATE)
    split_at = int(NOISE_TEST_FROM_S * VALENTINI_RATE)
    noise_part = {"train": recording[:split_at], "test": recording[split_at:]}
    for clean_name, noisy_name in SPLIT_DIRS.values():
        (out / clean_name).mkdir(parents=True)
        (out / noisy_name).mkdir(parents=True)
    files = []
    for speaker, (split, clips) in SPEAKERS.items():
        clean_dir, noisy_dir = (out / name for name in SPLIT_DIRS[split])
        talkers = [
            seg
            for other, (other_split, _) in SPEAKERS.items()
            if other_split == "train" and other != speaker
            for seg in segments[other]
        ]
        number = 0
        for segment in segments[speaker]:
            for snr_db, kind in zip(SNRS_DB[split], rng.permutation(NOISE_KINDS), strict=True):
                if kind == "recording":
                    noise = _loop(noise_part[split], len(segment), rng)
                elif kind == "babble":
                    noise = _babble(len(segment), talkers, rng)
                else:
                    exponent = rng.uniform(0.7, 1.3) if kind == "pink" else rng.uniform(1.7, 2.2)
                    noise = _coloured(len(segment), exponent, rng)
                clean, noisy = _mix(segment, noise, snr_db, rng)
                number += 1
                name = f"{speaker}_{number:03d}"
                sf.write(clean_dir / f"{name}.wav", clean, VALENTINI_RATE, subtype="PCM_16")
                sf.write(noisy_dir / f"{name}.wav", noisy, VALENTINI_RATE, subtype="PCM_16")
                seconds = round(len(segment) / VALENTINI_RATE, 3)
                files.append(
                    dict(
                        name=name,
                        split=split,
                        speaker=speaker,
                        source="+".join(clips),
                        noise=str(kind),
                        snr_db=snr_db,
                        seconds=seconds,
                    )
                )
    manifest = {
        "version": MINI_VERSION,
        "seed": seed,
        "sample_rate": VALENTINI_RATE,
        "pairs": {split: sum(f["split"] == split for f in files) for split in SPLIT_DIRS},
        "files": files,
    }
    (out / MARKER).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def make_mini(out: str | Path, seed: int = 0) -> Path:
    """Build the mini corpus at `out` (must not exist or be empty); returns `out`.

    Built in a temporary sibling folder and renamed into place, so a crash or a concurrent build
    never leaves a half corpus at `out`.
    """
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not empty; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _build(tmp, seed)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only
        if out.is_dir():
            out.rmdir()  # an empty folder; fails (OSError) if another build just filled it
        os.rename(tmp, out)
    except OSError as exc:
        raise UserError(f"{out}: cannot build the mini corpus there ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def mini_root(root: str | Path) -> Path:
    """A corpus folder built by `make-mini --out DIR` (for data=mini data.root=DIR)."""
    root = Path(root).expanduser()
    if not (root / MARKER).is_file():
        raise UserError(
            f"data.root={root}: not a mini corpus (no {MARKER}); build one with "
            f"`dfablate data make-mini --out {root}`, or use data=valentini data.root={root} for "
            "another Valentini-layout folder"
        )
    return root


def example_pair(root: str | Path) -> tuple[Path, Path]:
    """(clean, noisy) of the first test pair of a mini corpus: a ready pair to try `score` and
    `features` on."""
    root = Path(root)
    files = json.loads((root / MARKER).read_text())["files"]
    name = next(f["name"] for f in files if f["split"] == "test")
    clean_dir, noisy_dir = SPLIT_DIRS["test"]
    return root / clean_dir / f"{name}.wav", root / noisy_dir / f"{name}.wav"


def ensure_mini(cache_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Root of the mini corpus for `seed` in the cache folder, building it on first use."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = cache_dir / f"mini-v{MINI_VERSION}-seed{seed}"
    if (root / MARKER).is_file():
        return root
    try:
        return make_mini(root, seed)
    except UserError:
        if (root / MARKER).is_file():  # a concurrent process (e.g. another DDP rank) built it
            return root
        raise
