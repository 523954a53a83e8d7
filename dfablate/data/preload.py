"""`data.preload`: the decoded training and validation audio held in memory, batches cut from it.

`none` reads every item from its files (today's loader). `host` loads the audio once into one
shared block of host memory (DataLoader workers read the same pages); `device` moves it into the
training device's memory, where each batch is cut with one gather. Audio keeps its file's
precision: 16-bit PCM at the model rate stays int16 (half of float32), anything else is held as
the float32 that `load_audio` returns. Crop offsets and gains follow `PairedWaveDataset`'s seeded
rule, so a batch equals the file loader's bit for bit for the same seed, epoch and files.

`check_preload_fits` refuses, in one line naming a setting that fits, when the estimated size
(from the file headers) does not fit the memory it would go to; `dfablate train` calls it before
anything is written.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dfablate.audio import load_audio
from dfablate.data.valentini import CleanNoisyPair
from dfablate.errors import UserError

PRELOAD_CHOICES = ("none", "host", "device")
# Leave room for the training itself: preloaded audio may take this share of the free memory.
USABLE_SHARE = 0.8
READ_THREADS = 8
_PCM16_SCALE = 1.0 / 32768.0  # what libsndfile multiplies 16-bit PCM by when it reads float


def check_choice(preload: str) -> str:
    """`data.preload` validated: one of none, host, device."""
    if preload not in PRELOAD_CHOICES:
        raise UserError(f"data.preload={preload}: must be one of {', '.join(PRELOAD_CHOICES)}")
    return preload


def _keeps_int16(info: sf._SoundFileInfo, sample_rate: int) -> bool:
    return info.subtype == "PCM_16" and info.channels == 1 and info.samplerate == sample_rate


def estimate_bytes(pairs: Sequence[CleanNoisyPair], sample_rate: int) -> int:
    """Bytes the preloaded audio of `pairs` (clean and noisy) takes, from the file headers."""
    total = 0
    for pair in pairs:
        for path in (pair.clean, pair.noisy):
            info = sf.info(str(path))
            if _keeps_int16(info, sample_rate):
                total += 2 * info.frames
            else:
                total += 4 * -(-info.frames * sample_rate // info.samplerate)
    return total


def free_bytes(device: torch.device) -> int:
    """Memory free for the preloaded audio on `device` (host memory for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_preload_fits(preload: str, needed: int, device: torch.device) -> None:
    """Refuse, in one line naming a setting that fits, when `needed` bytes of audio do not fit
    the memory `preload` puts them in (`device`'s for device, the host's for host)."""
    if check_choice(preload) == "none":
        return
    target = device if preload == "device" else torch.device("cpu")
    free = free_bytes(target)
    if needed <= USABLE_SHARE * free:
        return
    fits_on_host = needed <= USABLE_SHARE * free_bytes(torch.device("cpu"))
    better = "host" if preload == "device" and target.type != "cpu" and fits_on_host else "none"
    where = "host memory" if target.type == "cpu" else str(target)
    raise UserError(
        f"data.preload={preload}: the training and validation audio needs about "
        f"{needed / 1e9:.2f} GB but {where} has {free / 1e9:.2f} GB free; use data.preload={better}"
    )


class PreloadedAudio:
    """The audio of `pairs`, clean and noisy each in one flat tensor (int16 or float32), with
    each pair's start and length. `share()` puts it in shared memory, `to()` on a device."""

    def __init__(self, pairs: Sequence[CleanNoisyPair], sample_rate: int) -> None:
        clean, noisy = [], []
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:  # decoding frees the GIL
            read = pool.map(
                lambda p: (_read(p.clean, sample_rate), _read(p.noisy, sample_rate)), pairs
            )
            for pair, (c, n) in zip(pairs, read, strict=True):
                if len(c) != len(n):
                    raise UserError(
                        f"{pair.noisy}: {len(n)} samples but its clean file has {len(c)}"
                    )
                clean.append(c)
                noisy.append(n)
        lengths = np.array([len(c) for c in clean], dtype=np.int64)
        dtype = np.int16 if all(x.dtype == np.int16 for x in clean + noisy) else np.float32
        self.clean = torch.from_numpy(_concatenate(clean, dtype))  # [sum of lengths]
        self.noisy = torch.from_numpy(_concatenate(noisy, dtype))
        self.lengths = torch.from_numpy(lengths)
        self.starts = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]))

    @property
    def nbytes(self) -> int:
        return self.clean.nbytes + self.noisy.nbytes

    def share(self) -> PreloadedAudio:
        """Move the audio to shared memory: DataLoader workers then read this one copy."""
        self.clean.share_memory_()
        self.noisy.share_memory_()
        return self

    def to(self, device: torch.device) -> PreloadedAudio:
        self.clean, self.noisy = self.clean.to(device), self.noisy.to(device)
        return self

    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        """Samples as the float32 `load_audio` returns (int16 PCM scaled as libsndfile does)."""
        return x.float() * _PCM16_SCALE if x.dtype == torch.int16 else x

    def crops(
        self, indices: Sequence[int], offsets: Sequence[int], length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean and noisy crops [B, length] of items `indices` from `offsets`, zero-padded past
        each file's end, as float32 on the audio's device: one gather each."""
        device = self.clean.device
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        first = torch.as_tensor(list(offsets), dtype=torch.int64).to(device)
        span = torch.arange(length, device=device)
        within = first[:, None] + span  # [B, length]
        valid = within < self.lengths[index].to(device)[:, None]
        where = (self.starts[index].to(device)[:, None] + within).clamp_max(len(self.clean) - 1)
        zero = torch.zeros((), device=device)
        return tuple(  # type: ignore[return-value]
            torch.where(valid, self.as_float(audio[where]), zero)
            for audio in (self.clean, self.noisy)
        )

    def whole(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean and noisy audio [T] of item `index`, whole, as float32."""
        start, length = int(self.starts[index]), int(self.lengths[index])
        return tuple(  # type: ignore[return-value]
            self.as_float(audio[start : start + length]) for audio in (self.clean, self.noisy)
        )


def _read(path: Path, sample_rate: int) -> np.ndarray:
    """A file's samples: int16 when it is mono 16-bit PCM at `sample_rate`, else float32."""
    info = sf.info(str(path))
    if _keeps_int16(info, sample_rate):
        return sf.read(str(path), dtype="int16")[0]
    with warnings.catch_warnings():  # multi-channel files were reported once at setup
        warnings.simplefilter("ignore")
        return load_audio(path, sample_rate)


def _concatenate(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if dtype is np.float32:  # a mix of int16 and float32 files: all as load_audio's float32
        parts = [p.astype(np.float32) * np.float32(_PCM16_SCALE) if p.dtype == np.int16 else p
                 for p in parts]  # fmt: skip
    return np.concatenate(parts).astype(dtype, copy=False)
