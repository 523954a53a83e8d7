"""One evaluation CSV row per file, scored at the reference level. The scoring processes run
`score_file`, so this module imports only what scoring needs (no torch, no Lightning): each
worker starts from the forkserver that preloaded `dfablate.scoring`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfablate.audio import gain_factor, load_audio
from dfablate.metrics import METRICS, score_pair
from dfablate.scoring import failed_row, failure_text


def score_file(
    name: str,
    clean_path: Path,
    degraded: np.ndarray | Path,
    sample_rate: int,
    input_gain_db: float = 0.0,
    metrics: Sequence[str] = METRICS,
) -> dict:
    """One CSV row: the `metrics` of `degraded` (array or file) against the unscaled clean file.

    Scores are taken at the reference level: an array is the model's output for the input
    scaled by g = 10^(G/20), and is divided by g before scoring; a file (the unprocessed noisy
    input) is scored unscaled, so its scores are the same at every gain. The composite
    measures depend slightly on level (WSS floors band energy, LLR runs in float32), so
    scoring both signals at the scaled level would move them with G.

    As in `dfablate score`, a pair that cannot be scored (unreadable file, no speech for PESQ,
    even an unexpected failure) gives NaN metrics and a one-line reason in `error`, so one bad
    file never stops the evaluation; such rows are tried again when the evaluation resumes.
    """
    try:
        clean = load_audio(clean_path, sample_rate)
        if isinstance(degraded, Path):
            degraded = load_audio(degraded, sample_rate)
        else:
            degraded = at_gain(degraded, -input_gain_db)
        scores = score_pair(clean, degraded, sample_rate, metrics)
    except Exception as exc:  # a bad file must not stop the other files
        return failed_row(name, failure_text(exc)[0], metrics)
    return {"file": name, **{m: float(scores[m]) for m in metrics}, "error": ""}


def at_gain(audio: np.ndarray, input_gain_db: float) -> np.ndarray:
    """`audio` scaled by the input gain `input_gain_db` (float32)."""
    if input_gain_db == 0:
        return audio
    return (audio * np.float32(gain_factor(input_gain_db))).astype(np.float32)
