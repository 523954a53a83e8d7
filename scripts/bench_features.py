"""Feature extraction throughput: dfablate.features (batched torch) vs libdf (loop over the batch).

Both compute what DeepFilterNet's forward takes (STFT, ERB features + erb_norm, deep-filter
features + unit_norm) for 16 x 3 s of real speech at 48 kHz, in this process, at one thread and
at all threads. Prints seconds per batch, the speed ratio and the largest output difference.
libdf is the reference extra (`pip install -e '.[reference]'`, Python <= 3.11).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import libdf
import numpy as np
import torch

from dfablate.audio import load_audio
from dfablate.features import DfFeatures

ROOT = Path(__file__).resolve().parents[1]
BATCH, SECONDS, SR, REPEATS = 16, 3.0, 48000, 7


def make_batch() -> np.ndarray:
    files = ["clean_freesound_33711.wav", "noisy_snr0.wav", "codec2_speech_orig_16k.wav"]
    speech = np.concatenate([load_audio(ROOT / "tests" / "data" / f, SR) for f in files])
    n = int(SECONDS * SR)
    starts = np.random.default_rng(0).integers(0, len(speech) - n, BATCH)
    return np.stack([speech[s : s + n] for s in starts]).astype(np.float32)


def libdf_features(batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for wave in batch:
        state = libdf.DF(sr=SR, fft_size=960, hop_size=480, nb_bands=32, min_nb_erb_freqs=2)
        spec = state.analysis(wave[None])
        erb = libdf.erb_norm(libdf.erb(spec, state.erb_widths()), 0.99)
        out.append((spec, erb, libdf.unit_norm(spec[..., :96].copy(), 0.99)))
    return out


def best_time(fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    batch = make_batch()
    features = DfFeatures()
    wave = torch.from_numpy(batch)
    with torch.no_grad():
        ours = features(wave)
    ref = libdf_features(batch)
    diff_spec = max(
        np.abs(torch.view_as_complex(ours.spec[i, 0].contiguous()).numpy() - r[0][0]).max()
        for i, r in enumerate(ref)
    )
    diff_erb = max(np.abs(ours.feat_erb[i, 0].numpy() - r[1][0]).max() for i, r in enumerate(ref))
    diff_unit = max(
        np.abs(torch.view_as_complex(ours.feat_spec[i, 0].contiguous()).numpy() - r[2][0]).max()
        for i, r in enumerate(ref)
    )
    print(f"{BATCH} x {SECONDS:.0f} s at {SR} Hz, best of {REPEATS}; torch {torch.__version__}")
    print(f"max |diff|: spec {diff_spec:.2e}, feat_erb {diff_erb:.2e}, feat_spec {diff_unit:.2e}")
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            t_ours = best_time(lambda: features(wave))
        t_ref = best_time(lambda: libdf_features(batch))
        print(
            f"threads={threads}: dfablate {t_ours * 1e3:7.1f} ms, libdf {t_ref * 1e3:7.1f} ms, "
            f"ratio {t_ref / t_ours:.2f}x"
        )


if __name__ == "__main__":
    main()
