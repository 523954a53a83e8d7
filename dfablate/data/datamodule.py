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
from dfablate.data.mini import MARKER, MINI_VERSION, ensure_mini, mini_root
from dfablate.data.preload import PreloadedAudio, check_choice, check_preload_fits, estimate_bytes
from dfablate.data.valentini import (
    CleanNoisyPair,
    check_pairs,
    evenly_spread,
    find_clean_noisy_pairs,
    rate_note,
    split_by_speakers,
    split_dirs,
)
from dfablate.errors import UserError
from dfablate.paths import default_cache_dir

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
        pairs: Sequence[CleanNoisyPair],
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


class PreloadedPairDataset(PairedWaveDataset):
    """`PairedWaveDataset`'s items, cut from preloaded audio (`data.preload`): the same crops
    and gains, batch by batch. `__getitems__` returns a whole batch (the DataLoader's fetcher
    calls it with the batch's keys), so a loader over it takes `collate_fn=as_batch`."""

    def __init__(
        self,
        pairs: Sequence[CleanNoisyPair],
        audio: PreloadedAudio,
        sample_rate: int,
        crop_samples: int | None = None,
        seed: int = 0,
        gains_db: Sequence[float] = (0.0,),
    ) -> None:
        super().__init__(pairs, sample_rate, crop_samples, seed, gains_db)
        self.audio = audio

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> dict:
        items = [key if isinstance(key, tuple) else (key, 0) for key in keys]
        indices = [index for index, _ in items]
        if self.crop_samples is None:
            clean, noisy = (
                torch.stack(x) for x in zip(*map(self.audio.whole, indices), strict=True)
            )
        else:
            lengths = self.audio.lengths[indices].tolist()
            offsets = [
                self.crop_offset(length, index, epoch)
                for length, (index, epoch) in zip(lengths, items, strict=True)
            ]
            clean, noisy = self.audio.crops(indices, offsets, self.crop_samples)  # [B, T]
        gains = [self.gain_db(index, epoch) for index, epoch in items]
        if any(gains):
            factors = np.array([10.0 ** (g / 20.0) for g in gains], dtype=np.float32)
            factors = torch.from_numpy(factors).to(clean.device)[:, None]
            clean, noisy = clean * factors, noisy * factors
        return {"noisy": noisy, "clean": clean, "name": [self.pairs[i].name for i in indices]}

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        batch = self.__getitems__([key])
        return {"noisy": batch["noisy"][0], "clean": batch["clean"][0], "name": batch["name"][0]}


def as_batch(batch: dict) -> dict:
    """The collate function of a loader over `PreloadedPairDataset`: its batches come whole."""
    return batch


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
    mismatches and empty splits. `preload` (none, host, device) holds the training and validation
    audio in memory (`dfablate.data.preload`); the batches stay the same.
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
        preload: str = "none",
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
        self.preload = check_choice(preload)
        self.train_set: PairedWaveDataset | None = None
        self.val_set: PairedWaveDataset | None = None
        self.test_set: PairedWaveDataset | None = None

    def training_pairs(self) -> tuple[list[CleanNoisyPair], list[CleanNoisyPair]]:
        """(train, validation) pairs, from the folder listing alone (no file is opened): a
        missing dataset or unknown `val_speakers` fail here, before a run writes anything."""
        where = split_dirs(self.root, "train")[0]
        train, val = split_by_speakers(
            find_clean_noisy_pairs(self.root, "train"), self.val_speakers, where=where
        )
        return train, evenly_spread(val, self.val_max_files)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            train, val = self.training_pairs()
            self._check(train + val, "train")
            if self.preload == "none":
                self.train_set = PairedWaveDataset(
                    train, self.sample_rate, self.crop_samples, self.seed, self.gains_db
                )
                self.val_set = PairedWaveDataset(val, self.sample_rate)
            else:
                self.train_set, self.val_set = self._preloaded(train, val)
        if stage in (None, "test") and self.test_set is None:
            test = find_clean_noisy_pairs(self.root, "test")
            self._check(test, "test")
            self.test_set = PairedWaveDataset(test, self.sample_rate)

    def preload_device(self) -> torch.device:
        """Where `preload` puts the audio: the trainer's device for device, else the host."""
        trainer = getattr(self, "trainer", None)
        if self.preload == "device" and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _preloaded(
        self, train: list[CleanNoisyPair], val: list[CleanNoisyPair]
    ) -> tuple[PreloadedPairDataset, PreloadedPairDataset]:
        device = self.preload_device()
        check_preload_fits(self.preload, estimate_bytes(train + val, self.sample_rate), device)
        sets = []
        for pairs, crop, gains in ((train, self.crop_samples, self.gains_db), (val, None, (0.0,))):
            audio = PreloadedAudio(pairs, self.sample_rate)
            audio = audio.share() if device.type == "cpu" else audio.to(device)
            sets.append(
                PreloadedPairDataset(pairs, audio, self.sample_rate, crop, self.seed, gains)
            )
        return sets[0], sets[1]

    def _check(self, pairs: list[CleanNoisyPair], split: str) -> None:
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
        if isinstance(dataset, PreloadedPairDataset):
            kwargs["collate_fn"] = as_batch
        on_device = self.preload == "device" and self.preload_device().type != "cpu"
        workers = 0 if on_device else self.num_workers  # batches are cut on the device itself
        return DataLoader(
            dataset,
            num_workers=workers,
            pin_memory=self.pin_memory and not on_device,
            persistent_workers=workers > 0,
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
    if isinstance(mini_seed, bool) or not isinstance(mini_seed, int) or mini_seed < 0:
        raise UserError(f"data option mini_seed={mini_seed} must be a whole number, 0 or more")
    corpus = mini_root(root) if root is not None else ensure_mini(cache_dir, mini_seed)
    return ValentiniDataModule(corpus, **options)


def check_preload_config(data: Mapping, accelerator: str | None) -> None:
    """`check_preload_fits` for a data config, before anything is built or written: the
    training and validation files it names (the mini corpus only once built: it is small)."""
    preload = check_choice(str(data.get("preload", "none")))
    if preload == "none":
        return
    if str(data.get("_target_", "")).endswith("mini_datamodule") and data.get("root") is not None:
        root = mini_root(data.get("root"))
    elif str(data.get("_target_", "")).endswith("mini_datamodule"):
        cache = data.get("cache_dir")
        cache = Path(cache).expanduser() if cache is not None else default_cache_dir()
        root = cache / f"mini-v{MINI_VERSION}-seed{data.get('mini_seed', 0)}"
        if not (root / MARKER).is_file():
            return
    else:
        root = Path(str(data.get("root"))).expanduser()
    where = split_dirs(root, "train")[0]
    speakers = data.get("val_speakers") or ()
    speakers = (speakers,) if isinstance(speakers, str) else tuple(speakers)
    train, val = split_by_speakers(find_clean_noisy_pairs(root, "train"), speakers, where=where)
    val = evenly_spread(val, data.get("val_max_files"))
    on_gpu = accelerator != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    sample_rate = int(data.get("sample_rate", 48000))
    check_preload_fits(preload, estimate_bytes(train + val, sample_rate), device)
