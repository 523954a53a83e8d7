"""DNSMOS time per file against one wide-band PESQ call, on bench_metrics' 16 pairs.

For each degraded signal (resampled to 16 kHz once, outside the timing): `dfablate.dnsmos`
(P.835 + P.808, onnxruntime with one thread, as in a scoring process), one wide-band PESQ call on
the same pair, and, when the test extra is installed, the reference `speechmos.dnsmos.run`
(librosa front end; its onnxruntime sessions use their default thread count, so its CPU time is
the fairer figure). Best of REPEATS CPU seconds per file, in one process; prints ms per file and
the ratios, and the largest difference from the reference (on the pairs within [-1, 1]: the
reference refuses louder signals).
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
from pesq import pesq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_metrics import make_pairs  # noqa: E402

from dfablate.audio import resample  # noqa: E402
from dfablate.dnsmos import DNSMOS_METRICS, dnsmos  # noqa: E402

REPEATS = 3
REFERENCE_KEYS = ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos")


def best_cpu_seconds(function, *args) -> tuple[float, object]:
    """The smallest CPU time of REPEATS calls, and the last result."""
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        result = function(*args)
        times.append(time.process_time() - start)
    return min(times), result


def main() -> None:
    try:
        from speechmos import dnsmos as reference
    except ImportError:
        reference = None
    pairs = [(resample(c, r, 16000), resample(d, r, 16000)) for c, d, r in make_pairs()]
    seconds = sum(len(c) / 16000 for c, _ in pairs)
    print(f"{len(pairs)} pairs, {seconds:.1f} s of audio; one process; {platform.machine()}")
    dnsmos(pairs[0][1])  # load the models
    ours_total, pesq_total, ref_total, ref_ours, largest = 0.0, 0.0, 0.0, 0.0, 0.0
    for clean16, degraded16 in pairs:
        ours_time, ours = best_cpu_seconds(dnsmos, degraded16)
        pesq_time, _ = best_cpu_seconds(pesq, 16000, clean16, degraded16, "wb")
        ours_total += ours_time
        pesq_total += pesq_time
        if reference is not None and np.abs(degraded16).max() <= 1:  # speechmos refuses others
            ref_time, theirs = best_cpu_seconds(reference.run, degraded16, 16000)
            ref_total += ref_time
            ref_ours += ours_time
            names = zip(DNSMOS_METRICS, REFERENCE_KEYS, strict=True)
            largest = max(largest, *(abs(ours[m] - float(theirs[k])) for m, k in names))
    n = len(pairs)
    print(f"CPU ms per file: dfablate DNSMOS {ours_total / n * 1000:.0f}, "
          f"wide-band PESQ {pesq_total / n * 1000:.0f} -> DNSMOS = {ours_total / pesq_total:.2f} x PESQ")  # fmt: skip
    if reference is not None and ref_ours:
        print(f"speechmos.dnsmos.run: {ref_total / ref_ours:.2f} x dfablate's CPU time on the "
              f"pairs within [-1, 1]; largest |difference| {largest:.1e}")  # fmt: skip
    print(f"audio per file: {np.mean([len(c) / 16000 for c, _ in pairs]):.1f} s")


if __name__ == "__main__":
    main()
