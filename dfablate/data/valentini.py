"""The Valentini (VoiceBank-DEMAND) layout: pairing clean/noisy files by name and checking them.

Pure file-system and header work (no torch), so `dfablate data verify` and the downloader stay
light; the data module builds on `find_clean_noisy_pairs`, `split_by_speakers` and `check_pairs`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from dfablate.audio import AudioError, read_audio, truncation
from dfablate.errors import UserError
from dfablate.progress import progress_bar

SPLIT_DIRS: dict[str, tuple[str, str]] = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
}
OFFICIAL_PAIR_COUNTS: dict[str, int] = {"train": 11572, "test": 824}
VALENTINI_RATE = 48000
SHOW = 5  # how many example files an error message names
# Sample formats that can hold NaN/Inf: only these need a full read to be checked.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III"})
_GET_IT = "get Valentini with `dfablate data download-valentini --root DIR`"


class CleanNoisyPair(NamedTuple):
    """One utterance: its name (file stem, e.g. "p232_001") and the clean and noisy files."""

    name: str
    clean: Path
    noisy: Path


def speaker_of(name: str) -> str:
    """Speaker id of a Valentini file name: the prefix before the first "_" ("p226_001" -> "p226")."""
    return name.split("_", 1)[0]


def evenly_spread(pairs: list[CleanNoisyPair], limit: int | None) -> list[CleanNoisyPair]:
    """At most `limit` pairs, evenly spaced over the list, first and last included (over a
    sorted list every speaker stays represented): validation subsets, `max_files` smoke runs."""
    if limit is None or len(pairs) <= limit:
        return pairs
    picks = np.linspace(0, len(pairs) - 1, limit).round().astype(int)
    return [pairs[i] for i in picks]


def examples(items: Sequence[object], show: int = SHOW, sep: str = ", ") -> str:
    """The first few of a list of offending items and how many more: "a, b, c and 12 more"."""
    head = sep.join(str(item) for item in items[:show])
    return head if len(items) <= show else f"{head} and {len(items) - show} more"


def split_dirs(root: str | Path, split: str) -> tuple[Path, Path]:
    """The clean and noisy folders of a split ("train" or "test") under `root`."""
    if split not in SPLIT_DIRS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLIT_DIRS)}")
    clean, noisy = SPLIT_DIRS[split]
    return Path(root) / clean, Path(root) / noisy


def split_present(root: str | Path, split: str) -> bool:
    """Whether either folder of the split exists (a half-present split is reported by find_clean_noisy_pairs)."""
    return any(folder.is_dir() for folder in split_dirs(root, split))


def _wav_files(folder: Path) -> dict[str, Path]:
    """Stem -> path of the .wav files in a folder (hidden files such as macOS "._x.wav" skipped)."""
    return {
        path.stem: path
        for path in folder.iterdir()
        if path.suffix.lower() == ".wav" and not path.name.startswith(".") and path.is_file()
    }


def find_clean_noisy_pairs(root: str | Path, split: str) -> list[CleanNoisyPair]:
    """All clean/noisy pairs of a split, sorted by name.

    Raises UserError naming the folder for a missing folder, an empty split, or files present on
    one side only (the first few of them and their count).
    """
    pairs, unpaired = scan_split(root, split)
    if unpaired:
        raise UserError(unpaired)
    return pairs


def scan_split(root: str | Path, split: str) -> tuple[list[CleanNoisyPair], str | None]:
    """The pairs of a split, sorted by name, and what is unpaired (None when every file has
    its partner); UserError for a missing folder or an empty split."""
    root = Path(root)
    clean_dir, noisy_dir = split_dirs(root, split)
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found ({_GET_IT})")
    missing = [folder.name for folder in (clean_dir, noisy_dir) if not folder.is_dir()]
    if missing:
        raise UserError(
            f"{root}: missing {' and '.join(missing)} (Valentini layout; {_GET_IT}, "
            f"or `dfablate data make-mini --out DIR` for the mini corpus)"
        )
    clean, noisy = _wav_files(clean_dir), _wav_files(noisy_dir)
    only_clean, only_noisy = (
        sorted(clean.keys() - noisy.keys()),
        sorted(noisy.keys() - clean.keys()),
    )
    unpaired = None
    if only_clean or only_noisy:
        sides = []
        if only_clean:
            sides.append(f"{len(only_clean)} only in {clean_dir} ({examples(only_clean)})")
        if only_noisy:
            sides.append(f"{len(only_noisy)} only in {noisy_dir} ({examples(only_noisy)})")
        unpaired = f"unpaired files in the {split} split: {'; '.join(sides)}"
    elif not clean:
        raise UserError(f"{clean_dir}: no .wav files (the {split} split is empty)")
    return [
        CleanNoisyPair(name, clean[name], noisy[name])
        for name in sorted(clean.keys() & noisy.keys())
    ], unpaired


def split_by_speakers(
    pairs: Sequence[CleanNoisyPair],
    held_out: Iterable[str],
    *,
    where: str | Path = "the training set",
) -> tuple[list[CleanNoisyPair], list[CleanNoisyPair]]:
    """(kept, held-out) by speaker: validation is whole speakers never seen in training."""
    held_out = tuple(held_out)
    if not held_out:
        raise UserError("val_speakers is empty: name at least one training speaker to validate on")
    speakers = sorted({speaker_of(pair.name) for pair in pairs})
    unknown = [speaker for speaker in held_out if speaker not in speakers]
    if unknown:
        raise UserError(
            f"val_speakers {', '.join(unknown)} not found in {where} "
            f"(its speakers: {examples(speakers, 10)})"
        )
    kept = [pair for pair in pairs if speaker_of(pair.name) not in held_out]
    val = [pair for pair in pairs if speaker_of(pair.name) in held_out]
    if not kept:
        raise UserError(f"val_speakers {', '.join(held_out)} leave no training speakers in {where}")
    return kept, val


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says (and, after a full read, that its samples are usable)."""

    rate: int
    channels: int
    frames: int


def inspect_audio(path: Path, *, full_read: bool = False) -> AudioInfo:
    """Header of one file; reads the samples too when asked or when the format can hold NaN.

    Raises AudioError naming the file when it cannot be read, is empty or holds NaN/Inf.
    """
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{path}: cannot read audio ({reason})") from exc
    if info.frames <= 0:
        raise AudioError(f"{path}: file holds no audio samples")
    if reason := truncation(path, info):
        raise AudioError(f"{path}: {reason}")
    if full_read or info.subtype in _FLOAT_SUBTYPES:
        read_audio(path, mono=False)
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


@dataclass
class PairCheck:
    """Outcome of checking a list of pairs: problems by kind (each entry names a file) and stats."""

    pairs: int = 0
    rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add_problem(self, kind: str, what: str) -> None:
        self.problems.setdefault(kind, []).append(what)

    def problem_lines(self) -> list[str]:
        """One line per kind of problem: count, then the first few offending files."""
        return [
            f"{len(items)} {kind}: {examples(items, 3, sep='; ')}"
            for kind, items in self.problems.items()
        ]


def _check_pair(
    pair: CleanNoisyPair, full_read: bool
) -> tuple[CleanNoisyPair, list[AudioInfo | AudioError]]:
    results: list[AudioInfo | AudioError] = []
    for path in (pair.clean, pair.noisy):
        try:
            results.append(inspect_audio(path, full_read=full_read))
        except AudioError as exc:
            results.append(exc)
    return pair, results


def check_pairs(
    pairs: Sequence[CleanNoisyPair],
    *,
    full_read: bool = False,
    jobs: int = 4,
    progress: bool = False,
) -> PairCheck:
    """Check every file of every pair: readable, non-empty, finite, same length and rate per pair.

    Header-only by default (fast: catches unreadable and empty files; formats that can hold NaN
    are read in full anyway); `full_read` decodes every sample, as `dfablate data verify` does.
    """
    check = PairCheck(pairs=len(pairs))
    with (
        ThreadPoolExecutor(max_workers=max(1, jobs)) as pool,
        progress_bar(progress, transient=True) as bar,
    ):
        task = bar.add_task("checking files", total=len(pairs))
        for pair, (clean, noisy) in pool.map(lambda p: _check_pair(p, full_read), pairs):
            bar.advance(task)
            for result in (clean, noisy):
                if isinstance(result, AudioError):
                    check.add_problem("unusable audio files", str(result))
                else:
                    check.rates[result.rate] += 1
                    check.channels[result.channels] += 1
            if isinstance(clean, AudioError) or isinstance(noisy, AudioError):
                continue
            check.seconds += clean.frames / clean.rate
            if clean.rate != noisy.rate:
                check.add_problem(
                    "pairs with different clean/noisy sample rates",
                    f"{pair.name} ({clean.rate} vs {noisy.rate} Hz)",
                )
            elif clean.frames != noisy.frames:
                check.add_problem(
                    "pairs with different clean/noisy lengths",
                    f"{pair.name} ({clean.frames} vs {noisy.frames} samples)",
                )
    return check


def rate_note(rates: Counter, sample_rate: int) -> str | None:
    """A warning when files are not at the model rate (typically a 16 kHz copy of Valentini)."""
    other = sorted(rate for rate in rates if rate != sample_rate)
    if not other:
        return None
    listed = ", ".join(f"{rate} Hz" for rate in other)
    note = (
        f"files at {listed}, not {sample_rate} Hz: dfablate resamples every file to the model "
        f"rate ({sample_rate} Hz, the data config's sample_rate) when loading"
    )
    if max(other) < sample_rate:
        note += (
            f", but the band above {max(other) // 2} Hz stays empty, so scores are not comparable "
            f"with training on the original 48 kHz Valentini ({_GET_IT})"
        )
    return note


@dataclass
class SplitReport:
    split: str
    check: PairCheck | None = None
    speakers: int = 0
    error: str | None = None  # layout problem that stopped the split from being checked
    unpaired: str | None = None  # files without a partner (the others are still checked)


def verify_dataset(
    root: str | Path,
    splits: Sequence[str] | None = None,
    *,
    sample_rate: int = VALENTINI_RATE,
    jobs: int = 4,
    progress: bool = True,
) -> tuple[bool, list[str]]:
    """Fully check a dataset folder: layout, pairing, readability, lengths, rates, channels.

    `splits=None` checks the splits whose folders exist. Returns (no problems found, the
    printable report lines); rate and channel notes are warnings, not problems.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found ({_GET_IT})")
    if splits is None:
        splits = [split for split in SPLIT_DIRS if split_present(root, split)]
        if not splits:
            expected = ", ".join(name for pair in SPLIT_DIRS.values() for name in pair)
            raise UserError(f"{root}: no Valentini folders ({expected}); {_GET_IT}")
    reports, lines = [], [f"dataset {root}"]
    for split in splits:
        report = SplitReport(split)
        reports.append(report)
        try:
            pairs, unpaired = scan_split(root, split)
        except UserError as exc:
            report.error = str(exc)
            lines.append(f"{split}: FAILED: {exc}")
            continue
        # every kind of problem in one pass: the paired files are checked even when some
        # files have no partner
        report.check = check_pairs(pairs, full_read=True, jobs=jobs, progress=progress)
        report.unpaired = unpaired
        report.speakers = len({speaker_of(pair.name) for pair in pairs})
        lines += _split_lines(report, sample_rate)
    problems = sum(bool(r.error or r.unpaired or (r.check and r.check.problems)) for r in reports)
    lines.append("result: OK" if not problems else f"result: problems in {problems} split(s)")
    return not problems, lines


def _split_lines(report: SplitReport, sample_rate: int) -> list[str]:
    check = report.check
    assert check is not None
    rates = ", ".join(f"{rate} Hz" for rate in sorted(check.rates))
    channels = ", ".join(f"{n} files x {ch} ch" for ch, n in sorted(check.channels.items()))
    hours = check.seconds / 3600
    length = f"{hours:.1f} h" if hours >= 1 else f"{check.seconds / 60:.1f} min"
    lines = [
        f"{report.split}: {check.pairs} pairs, {report.speakers} speakers, {length} per side; "
        f"{rates}; {'mono' if set(check.channels) <= {1} else channels}"
    ]
    official = OFFICIAL_PAIR_COUNTS[report.split]
    if check.pairs != official:
        lines.append(f"  note: the official Valentini {report.split} set has {official} pairs")
    if note := rate_note(check.rates, sample_rate):
        lines.append(f"  warning: {note}")
    if any(ch != 1 for ch in check.channels):
        lines.append("  warning: multi-channel files are down-mixed to mono when loading")
    if report.unpaired:
        lines.append(f"  problem: {report.unpaired}")
    lines += [f"  problem: {line}" for line in check.problem_lines()]
    return lines
