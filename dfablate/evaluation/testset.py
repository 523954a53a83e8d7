"""Test sets and input gains: which pairs an evaluation scores, and where its results go.

`input_gain_db` evaluates at a shifted input level: the model's input is scaled by 10^(G/20), its
output is scored at the reference level (`file_scores.score_file`), and the results go to
`eval/<dataset>@<G>dB` (0 dB: `eval/<dataset>`, as before gains existed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hydra.utils import instantiate

from dfablate.audio import MAX_GAIN_DB, is_gain_db
from dfablate.config import user_error_cause
from dfablate.data.valentini import evenly_spread, find_clean_noisy_pairs
from dfablate.errors import UserError


def check_gain_db(value, option: str) -> float:
    """`value` as a gain in dB (`audio.is_gain_db`); a UserError naming `option` otherwise."""
    if not is_gain_db(value):
        raise UserError(
            f"{option}={value}: must be a number of dB within +-{MAX_GAIN_DB:g} (e.g. -20, 0, 10)"
        )
    return float(value) + 0.0  # -0.0 is 0 dB


def gain_dir_name(dataset: str, input_gain_db: float) -> str:
    """The results folder of a dataset at an input gain: `valentini` at 0 dB, else with an
    explicit sign, `valentini@-20dB`, `valentini@+10dB`, `valentini@+2.5dB`."""
    if input_gain_db == 0:
        return dataset
    return f"{dataset}@{input_gain_db:+g}dB"


@dataclass(frozen=True)
class TestSet:
    """The pairs of one test split and what identifies them."""

    name: str
    root: Path
    pairs: list  # of dfablate.data.valentini.CleanNoisyPair (name, clean, noisy)

    @cached_property
    def fingerprint(self) -> str:
        """What the test set holds: file names and sizes (the same set at another root matches)."""
        digest = hashlib.sha1()
        for pair in sorted(self.pairs, key=lambda p: p.name):
            digest.update(
                f"{pair.noisy.name}:{pair.clean.stat().st_size}:{pair.noisy.stat().st_size};".encode()
            )
        return digest.hexdigest()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "root": str(self.root),
            "n_files": len(self.pairs),
            "fingerprint": self.fingerprint,
        }


def load_test_set(
    data_cfg, name: str, split: str = "test", max_files: int | None = None
) -> TestSet:
    """The pairs of `split` of the dataset a data config (`configs/data/*.yaml`) describes;
    with `max_files`, an evenly spread subset of that many (for smoke runs)."""
    try:
        datamodule = instantiate(data_cfg)
    except Exception as exc:  # Hydra wraps a data module's refusal (e.g. data.root)
        refusal = user_error_cause(exc)
        if refusal is None:
            raise
        raise refusal from exc
    pairs = find_clean_noisy_pairs(datamodule.root, split)
    if split != "test":
        name = f"{name}-{split}"
    if max_files is not None:
        if max_files < 1:
            raise UserError(f"max_files={max_files} must be at least 1")
        if max_files < len(pairs):
            pairs = evenly_spread(pairs, max_files)
            name = f"{name}-{len(pairs)}files"
    return TestSet(name=name, root=datamodule.root, pairs=pairs)
