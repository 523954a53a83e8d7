"""Metric throughput: dfablate.metrics.score_pair vs the reference path, on the same pairs.

16 clean/degraded pairs of 3-10 s built from the real speech and noise in tests/data (the
recorded 48 kHz noisy pair, 48 kHz crops mixed with real noise, 16 kHz speech mixed with real
noise). The reference path is what one would write with the reference packages: resample to
16 kHz, `pesq`, `pystoi.stoi`, DeepFilterNet's `df.sepm.composite` (which runs PESQ again) and
DeepFilterNet's SI-SDR formula. Both score every pair with one process per core.

Prints wall and summed worker CPU seconds (CPU time is the steadier figure on a shared machine),
the speed ratios, the largest absolute difference per metric and, in one process, the
all-metrics time per file against one wide-band PESQ call on the same file.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from pesq import pesq
from pystoi import stoi

from dfablate.audio import read_audio, resample
from dfablate.metrics import METRICS, score_pair

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
sys.path.insert(0, str(DATA.parent))  # the reference (deepfilternet) is reached as in the tests
from upstream import import_df_module  # noqa: E402

REPEATS = 3

Pair = tuple[np.ndarray, np.ndarray, int]


def _mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.resize(noise, speech.shape)
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (speech + gain * noise).astype(np.float32)


def make_pairs() -> list[Pair]:
    """16 pairs, 3-10 s, at 48 kHz and 16 kHz."""
    clean48, _ = read_audio(DATA / "clean_freesound_33711.wav")
    noisy48, _ = read_audio(DATA / "noisy_snr0.wav")
    noise48, _ = read_audio(DATA / "noise_freesound_573577.wav")
    noise16 = resample(noise48, 48000, 16000)
    speech16 = [read_audio(DATA / f"{name}.wav")[0] for name in ("arctic_a0007", "arctic_a0009")]
    codec2, _ = read_audio(DATA / "codec2_speech_orig_16k.wav")
    rng = np.random.default_rng(0)
    pairs: list[Pair] = [(clean48[: 10 * 48000], noisy48[: 10 * 48000], 48000)]
    for seconds, snr in zip((3, 4, 5, 6, 7, 8, 9), (-5, 0, 2.5, 5, 7.5, 10, 15), strict=True):
        start = rng.integers(0, len(clean48) - seconds * 48000)
        crop = clean48[start : start + seconds * 48000]
        pairs.append((crop, _mix(crop, noise48[::-1], snr), 48000))
    for i, snr in enumerate((-5, 0, 5, 10, 15, 20)):
        speech = speech16[i % 2]
        pairs.append((speech, _mix(speech, np.roll(noise16, 7919 * i), snr), 16000))
    for seconds, snr in ((10, 5), (6, 12.5)):
        crop = codec2[: seconds * 16000]
        pairs.append((crop, _mix(crop, noise16, snr), 16000))
    return pairs


def speechmetrics_si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """DeepFilterNet's `si_sdr_speechmetrics` (df.evaluation_utils needs torchaudio), in float64."""
    reference = reference.astype(np.float64).reshape(-1, 1)
    estimate = estimate.astype(np.float64).reshape(-1, 1)
    eps = np.finfo(reference.dtype).eps
    rss = np.dot(reference.T, reference)
    a = (eps + np.dot(reference.T, estimate)) / (rss + eps)
    e_true = a * reference
    e_res = estimate - e_true
    return float(10 * np.log10((eps + (e_true**2).sum()) / (eps + (e_res**2).sum())))


def reference_scores(pair: Pair) -> dict[str, float]:
    clean, degraded, rate = pair
    clean16, degraded16 = resample(clean, rate, 16000), resample(degraded, rate, 16000)
    sepm = import_df_module("sepm")
    wb = pesq(16000, clean16, degraded16, "wb")
    stoi_value = stoi(clean16, degraded16, 16000)
    _, csig, cbak, covl, ssnr = sepm.composite(clean16, degraded16, 16000)
    values = (wb, stoi_value, csig, cbak, covl, ssnr, speechmetrics_si_sdr(clean, degraded))
    return dict(zip(METRICS, map(float, values), strict=True))


def dfablate_scores(pair: Pair) -> dict[str, float]:
    return score_pair(*pair)


_PAIRS: list[Pair] = []  # inherited by the forked workers


def _run(args: tuple[str, int]) -> tuple[dict[str, float], float]:
    """Scores of one pair and the CPU seconds this worker spent on them."""
    kind, index = args
    start = time.process_time()
    scores = (reference_scores if kind == "reference" else dfablate_scores)(_PAIRS[index])
    return scores, time.process_time() - start


def parallel_run(pool, kind: str) -> tuple[float, float, list[dict[str, float]]]:
    """Wall seconds, summed worker CPU seconds and scores of all pairs."""
    start = time.perf_counter()
    results = pool.map(_run, [(kind, i) for i in range(len(_PAIRS))], chunksize=1)
    wall = time.perf_counter() - start
    return wall, sum(cpu for _, cpu in results), [scores for scores, _ in results]


def per_file_times(pair: Pair) -> tuple[float, float]:
    """Best-of-REPEATS CPU seconds for score_pair and for one wide-band PESQ call, interleaved."""
    clean, degraded, rate = pair
    clean16, degraded16 = resample(clean, rate, 16000), resample(degraded, rate, 16000)
    all_metrics, pesq_only = [], []
    for _ in range(REPEATS):
        start = time.process_time()
        score_pair(clean, degraded, rate)
        all_metrics.append(time.process_time() - start)
        start = time.process_time()
        pesq(16000, clean16, degraded16, "wb")
        pesq_only.append(time.process_time() - start)
    return min(all_metrics), min(pesq_only)


def main() -> None:
    _PAIRS.extend(make_pairs())
    cores = os.cpu_count() or 1
    seconds = sum(len(c) / r for c, _, r in _PAIRS)
    print(f"{len(_PAIRS)} pairs, {seconds:.1f} s of audio; {cores} processes; {platform.machine()}")
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        pool.map(_run, [("dfablate", 0), ("reference", 0)] * cores, chunksize=1)  # warm up
        ours_wall, ours_cpu, ours = parallel_run(pool, "dfablate")
        ref_wall, ref_cpu, ref = parallel_run(pool, "reference")
    print(f"{'':10s} {'wall s':>8s} {'CPU s':>8s} {'CPU s/file':>11s}")
    for name, wall, cpu in (("dfablate", ours_wall, ours_cpu), ("reference", ref_wall, ref_cpu)):
        print(f"{name:10s} {wall:8.2f} {cpu:8.2f} {cpu / len(_PAIRS):11.3f}")
    print(f"speed-up: {ref_wall / ours_wall:.1f} x wall, {ref_cpu / ours_cpu:.1f} x CPU time")
    print("largest |dfablate - reference| per metric:")
    for metric in METRICS:
        diff = max(abs(a[metric] - b[metric]) for a, b in zip(ours, ref, strict=True))
        print(f"  {metric:6s} {diff:.2e}")
    times = [per_file_times(pair) for pair in _PAIRS]
    all_metrics = sum(t for t, _ in times)
    pesq_only = sum(t for _, t in times)
    print(
        f"one process, CPU time: all metrics {all_metrics / len(_PAIRS) * 1000:.0f} ms per file, "
        f"one wide-band PESQ call {pesq_only / len(_PAIRS) * 1000:.0f} ms per file "
        f"-> {all_metrics / pesq_only:.2f} x"
    )


if __name__ == "__main__":
    main()
