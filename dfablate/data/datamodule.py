"""Waveform pairs for training: seeded random crops for training, whole utterances otherwise.

Features are not computed here: the model computes them on its own device, so the
normalisation variant lives in one place (`dfablate.features`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dfablate.audio import MAX_GAIN_DB, is_gain_db, load_audio
from dfablate.data.mini import ensure_mini, mini_root
from dfablate.data.valentini import (
    Pair,
    check_pairs,
    evenly_spread,
    find_pairs,
    rate_note,
    split_by_speakers,
    split_dirs,
)
from dfablate.errors import UserError

_GAIN_STREAM = 1  # separates the gain draw's random stream from the crop's


class PairedWaveDataset(Dataset):
    """Clean/noisy pairs as float32 waveforms at `sample_rate`.

    With `crop_samples`, each item is a crop of that length (zero-padded at the end when the file
    is shorter) whose offset depends only on (seed, epoch, index): different every epoch,
    identical across runs and worker counts. With `gains_db`, each item's noisy input and clean
    target are scaled together by one gain drawn from it, seeded the same way (DeepFilterNet's
    loader draws from -6/0/+6 dB). Items are indexed by `index` or `(index, epoch)`.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        sample_rate: int,
        crop_samples: int | None = None,
        seed: int = 0,
        gains_db: Sequence[float] = (0.0,),
    ) -> None:
        self.pairs = list(pairs)
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.seed = seed
        self.gains_db = tuple(float(g) for g in gains_db)

    def __len__(self) -> int:
        return len(self.pairs)

    def crop_offset(self, length: int, index: int, epoch: int) -> int:
        """Start of the crop for item `index` in `epoch` (0 when the file is not longer)."""
        assert self.crop_samples is not None
        if length <= self.crop_samples:
            return 0
        rng = np.random.default_rng([self.seed, epoch, index])
        return int(rng.integers(length - self.crop_samples + 1))

    def gain_db(self, index: int, epoch: int) -> float:
        """The gain of item `index` in `epoch`, drawn from `gains_db` (seed, epoch, index)."""
        if len(self.gains_db) == 1:
            return self.gains_db[0]
        rng = np.random.default_rng([self.seed, epoch, index, _GAIN_STREAM])
        return self.gains_db[int(rng.integers(len(self.gains_db)))]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        pair = self.pairs[index]
        with warnings.catch_warnings():  # multi-channel files were reported once at setup
            warnings.simplefilter("ignore")
            clean = load_audio(pair.clean, self.sample_rate)
            noisy = load_audio(pair.noisy, self.sample_rate)
        if len(clean) != len(noisy):
            raise UserError(
                f"{pair.noisy}: {len(noisy)} samples but its clean file has {len(clean)}"
            )
        if self.crop_samples is not None:
            start = self.crop_offset(len(clean), index, epoch)
            clean, noisy = (_crop(x, start, self.crop_samples) for x in (clean, noisy))
        gain_db = self.gain_db(index, epoch)
        if gain_db != 0:
            factor = np.float32(10.0 ** (gain_db / 20.0))
            clean, noisy = clean * factor, noisy * factor
        return {
            "noisy": torch.from_numpy(noisy),
            "clean": torch.from_numpy(clean),
            "name": pair.name,
        }


def _crop(x: np.ndarray, start: int, length: int) -> np.ndarray:
    out = x[start : start + length]
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


class EpochCropSampler(DistributedSampler):
    """Shuffles like DistributedSampler (seed + epoch; one shard per rank under DDP) and tags each
    index with the epoch, so the dataset picks a new, reproducible crop every epoch. Lightning
    calls `set_epoch` at the start of every training epoch."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=True,
            seed=seed,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((index, epoch) for index in super().__iter__())


class ValentiniDataModule(L.LightningDataModule):
    """Valentini-layout data: train / validation (held-out training speakers) / test.

    Batches are dicts {"noisy": [B, T] float32, "clean": [B, T] float32, "name": list[str]}.
    Training batches are `crop_seconds` crops, each scaled by a gain drawn from `gains_db`;
    validation and test batches are one whole utterance each, never scaled.
    `batch_size_schedule` ({epoch: size}, from epoch 0, capped at `batch_size`) ramps the
    training batch size as DeepFilterNet's trainer does; the trainer must then reload the
    training loader every epoch (`dfablate train` sets that). Files at another rate are
    resampled to `sample_rate` on load. Setup checks every file's header and fails early, naming
    files, on unpaired, unreadable or empty files, NaN samples (in float files), length
    mismatches and empty splits.
    """

    def __init__(
        self,
        root: str | Path,
        sample_rate: int = 48000,
        crop_seconds: float = 3.0,
        batch_size: int = 8,
        num_workers: int = 0,
        val_speakers: Sequence[str] = ("p226", "p287"),
        seed: int = 0,
        pin_memory: bool = False,
        val_max_files: int | None = None,
        gains_db: Sequence[float] = (0.0,),
        batch_size_schedule: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        for option, value, least in (
            ("sample_rate", sample_rate, 1),
            ("crop_seconds", crop_seconds, 1e-3),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("val_max_files", val_max_files, 1),
        ):
            if value is not None and value < least:
                raise UserError(f"data option {option}={value} must be at least {least}")
        if isinstance(val_speakers, str):
            val_speakers = (val_speakers,)
        self.root = Path(root).expanduser()
        self.sample_rate = int(sample_rate)
        self.crop_samples = round(crop_seconds * sample_rate)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_speakers = tuple(str(speaker) for speaker in val_speakers)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.val_max_files = val_max_files
        self.gains_db = _gains(gains_db)
        self.batch_size_schedule = _batch_size_schedule(batch_size_schedule)
        self.train_set: PairedWaveDataset | None = None
        self.val_set: PairedWaveDataset | None = None
        self.test_set: PairedWaveDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            where = split_dirs(self.root, "train")[0]
            train, val = split_by_speakers(
                find_pairs(self.root, "train"), self.val_speakers, where=where
            )
            val = evenly_spread(val, self.val_max_files)
            self._check(train + val, "train")
            self.train_set = PairedWaveDataset(
                train, self.sample_rate, self.crop_samples, self.seed, self.gains_db
            )
            self.val_set = PairedWaveDataset(val, self.sample_rate)
        if stage in (None, "test") and self.test_set is None:
            test = find_pairs(self.root, "test")
            self._check(test, "test")
            self.test_set = PairedWaveDataset(test, self.sample_rate)

    def _check(self, pairs: list[Pair], split: str) -> None:
        """Fail early on bad files; warn once about resampling and down-mixing."""
        check = check_pairs(pairs)
        if check.problems:
            raise UserError(f"{self.root} ({split} split): {'; '.join(check.problem_lines())}")
        if note := rate_note(check.rates, self.sample_rate):
            warnings.warn(f"{self.root} ({split} split): {note}", stacklevel=3)
        if multi := sum(n for ch, n in check.channels.items() if ch > 1):
            warnings.warn(
                f"{self.root} ({split} split): {multi} multi-channel files, down-mixed to mono",
                stacklevel=3,
            )

    @staticmethod
    def _ready(dataset: PairedWaveDataset | None, stage: str) -> PairedWaveDataset:
        if dataset is None:
            raise RuntimeError(f"call setup({stage!r}) before asking for its data loader")
        return dataset

    def _loader(self, dataset: PairedWaveDataset, **kwargs) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def train_batch_size(self, epoch: int) -> int:
        """The training batch size in `epoch`: the schedule's last entry at or before it,
        capped at `batch_size` (as DeepFilterNet's trainer), or `batch_size` without one."""
        if not self.batch_size_schedule:
            return self.batch_size
        size = max((e, b) for e, b in self.batch_size_schedule.items() if e <= epoch)[1]
        return min(size, self.batch_size)

    def train_dataloader(self) -> DataLoader:
        train_set = self._ready(self.train_set, "fit")
        sampler = EpochCropSampler(train_set, self.seed)
        trainer = getattr(self, "trainer", None)
        epoch = trainer.current_epoch if trainer is not None else 0
        return self._loader(train_set, batch_size=self.train_batch_size(epoch), sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._ready(self.val_set, "validate"), batch_size=1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._ready(self.test_set, "test"), batch_size=1)


def _gains(gains_db) -> tuple[float, ...]:
    """`data.gains_db` as a tuple of finite gains in dB; one-line UserError otherwise."""
    values = [gains_db] if isinstance(gains_db, int | float) else gains_db
    try:
        values = list(values)
    except TypeError:
        values = []
    if not values or not all(is_gain_db(g) for g in values):
        raise UserError(
            f"data option gains_db={gains_db} must be a non-empty list of gains in dB within "
            f"+-{MAX_GAIN_DB:g}, e.g. [-6, 0, 6] (DeepFilterNet's) or [0] (no augmentation)"
        )
    return tuple(float(g) for g in values)


def _batch_size_schedule(schedule) -> dict[int, int] | None:
    """`data.batch_size_schedule` as {epoch: batch size} starting at epoch 0, or None."""
    if schedule is None or len(schedule) == 0:
        return None
    try:
        parsed = {int(epoch): int(size) for epoch, size in dict(schedule).items()}
    except (TypeError, ValueError):
        parsed = {}
    if 0 not in parsed or any(e < 0 or b < 1 for e, b in parsed.items()):
        raise UserError(
            f"data option batch_size_schedule={schedule} must map epochs to batch sizes >= 1, "
            "starting at epoch 0, e.g. {0: 16, 2: 24, 5: 32, 10: 64}"
        )
    return dict(sorted(parsed.items()))


def mini_datamodule(
    root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    mini_seed: int = 0,
    **options,
) -> ValentiniDataModule:
    """The data module on the mini corpus (for data=mini): the one built by `make-mini --out
    root`, else the one of `mini_seed` in `cache_dir`, built there on first use."""
    corpus = mini_root(root) if root is not None else ensure_mini(cache_dir, mini_seed)
    return ValentiniDataModule(corpus, **options)
