"""Score many clean/enhanced file pairs into one metrics CSV: in parallel, resumable, robust.

Used by `dfablate score` and by the evaluation stage. Each pair becomes one row
`file,pesq,stoi,csig,cbak,covl,ssnr,sisdr,error`. Rows are appended as they finish, so an
interrupted run resumes where it stopped; at the end the rows are sorted by file name and floats
are written in their shortest exact form, so a resumed run's CSV equals an uninterrupted one's.
A pair that cannot be scored gets NaN metrics and a one-line reason in `error`; such rows, and
rows whose audio changed after the CSV was written, are scored again by the next run.
"""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dfablate.audio import read_audio
from dfablate.errors import UserError
from dfablate.metrics import METRICS, MetricError, score_pair
from dfablate.paths import check_output_file
from dfablate.progress import progress_bar

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("file", *METRICS, "error")
AUDIO_SUFFIXES = (".wav", ".flac")

Pair = tuple[str, "Path | None", "Path | None"]  # (name, clean, enhanced); None: file missing
Row = tuple[str, ...]  # one CSV row, as written

log = logging.getLogger(__name__)


class PairError(UserError):
    """A pair of files that cannot be scored together (missing side, channels, rates)."""


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pair_files(clean: str | Path, enhanced: str | Path) -> list[Pair]:
    """One pair, named after the enhanced file."""
    clean, enhanced = Path(clean), Path(enhanced)
    return [(enhanced.name, clean, enhanced)]


def _audio_files(directory: Path) -> dict[str, Path]:
    return {
        p.name: p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    }


def pair_directories(clean_dir: str | Path, enhanced_dir: str | Path) -> list[Pair]:
    """Pairs of audio files (.wav, .flac) with the same name in the two directories.

    A file present on one side only is kept with None for the other side (it becomes an error
    row). Sorted by name.
    """
    clean_files = _audio_files(Path(clean_dir))
    enhanced_files = _audio_files(Path(enhanced_dir))
    names = sorted(clean_files.keys() | enhanced_files.keys())
    return [(name, clean_files.get(name), enhanced_files.get(name)) for name in names]


def find_pairs(clean: str | Path, enhanced: str | Path) -> list[Pair]:
    """Pairs for two files or two directories; UserError naming the path for anything else."""
    clean, enhanced = Path(clean), Path(enhanced)
    for label, path in (("CLEAN", clean), ("ENHANCED", enhanced)):
        if not path.exists():
            raise UserError(f"{label} {path}: no such file or directory")
    if clean.is_file() and enhanced.is_file():
        return pair_files(clean, enhanced)
    if clean.is_dir() and enhanced.is_dir():
        pairs = pair_directories(clean, enhanced)
        if not pairs:
            suffixes = "/".join(AUDIO_SUFFIXES)
            raise UserError(f"no audio files ({suffixes}) in {clean} or {enhanced}")
        return pairs
    raise UserError(
        f"CLEAN {clean} and ENHANCED {enhanced} must both be files or both be directories"
    )


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = read_audio(path, mono=False)
    if audio.shape[0] != 1:
        raise PairError(f"{path}: {audio.shape[0]} channels; metrics need mono files")
    return audio[0], rate


def score_files(clean: Path | None, enhanced: Path | None) -> dict[str, float]:
    """Metrics of one pair of files; PairError/AudioError/MetricError when it cannot be scored.

    Both files must be mono, at the same rate and of the same length: nothing is trimmed,
    down-mixed or resampled to hide a mismatch.
    """
    if clean is None:
        raise PairError("no clean reference file with this name")
    if enhanced is None:
        raise PairError("no enhanced file with this name")
    clean_audio, clean_rate = _read_mono(clean)
    enhanced_audio, enhanced_rate = _read_mono(enhanced)
    if clean_rate != enhanced_rate:
        raise PairError(f"sample rate mismatch: clean {clean_rate} Hz, enhanced {enhanced_rate} Hz")
    return score_pair(clean_audio, enhanced_audio, clean_rate)


def _format_float(value: float) -> str:
    """Shortest exact text of a float: the same value always gives the same text."""
    return "nan" if math.isnan(value) else repr(float(value))


def score_row(pair: Pair) -> tuple[Row, str | None]:
    """The CSV row of one pair and, for an unexpected failure, its traceback (for -v)."""
    name, clean, enhanced = pair
    details = None
    try:
        scores = score_files(clean, enhanced)
        error = ""
    except (UserError, MetricError) as exc:
        scores, error = {}, str(exc)
    except Exception as exc:  # a bug or an exotic file must not stop the other pairs
        scores, error = {}, f"unexpected {type(exc).__name__}: {exc}"
        details = traceback.format_exc()
    error = " ".join(error.split())  # one line
    values = [_format_float(scores.get(metric, math.nan)) for metric in METRICS]
    return (name, *values, error), details


def _init_worker(parent_alive: Connection) -> None:
    """Leave Ctrl-C to the parent (it stops the pool and keeps the finished rows), and exit when
    the parent dies (killed): the pool's own queues would otherwise block such a worker forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_on_eof, args=(parent_alive,), daemon=True).start()


def _exit_on_eof(connection: Connection) -> None:
    try:
        connection.recv_bytes()  # the parent never sends: returns only at EOF
    except (EOFError, OSError):
        pass
    os._exit(1)


def _score_in_processes(
    pairs: Sequence[Pair], jobs: int, on_row: Callable[[Row, str | None], None]
) -> None:
    context = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
    context.set_forkserver_preload(["dfablate.scoring"])
    parent_alive, alive_writer = context.Pipe(duplex=False)  # closes when this process dies
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(parent_alive,)
    )
    futures = {pool.submit(score_row, pair): pair for pair in pairs}
    try:
        for future in as_completed(futures):
            try:
                row, details = future.result()
            except BrokenProcessPool:
                name = futures[future][0]
                row = (name, *(["nan"] * len(METRICS)), "scoring process crashed; rerun to retry")
                details = None
            on_row(row, details)
    except BaseException:
        for future in futures:  # the pool's own cancel_futures is lost if it is collected first
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        parent_alive.close()
    pool.shutdown()
    alive_writer.close()


def _write_rows(path: Path, rows: Iterable[Row]) -> None:
    """Write header + rows atomically (a crash leaves the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def _is_finished(fields: list[str]) -> bool:
    if len(fields) != len(COLUMNS) or fields[-1]:
        return False  # cut short by an interruption, or an error to retry
    try:
        [float(value) for value in fields[1:-1]]
    except ValueError:
        return False
    return True


def _modified_after(pair: Pair, time_ns: int) -> bool:
    return any(p is not None and p.exists() and p.stat().st_mtime_ns > time_ns for p in pair[1:])


def load_finished_rows(out_csv: Path, pairs: Sequence[Pair]) -> dict[str, Row]:
    """Rows of `out_csv` that a new run can keep: scored without error, for a pair in `pairs`,
    whose files have not changed since the CSV was written."""
    if not out_csv.exists():
        return {}
    written_ns = out_csv.stat().st_mtime_ns
    by_name = {pair[0]: pair for pair in pairs}
    with out_csv.open(newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error):  # a binary file
            header = ["(not text)"]
        if header is None:
            return {}
        if tuple(header) != COLUMNS:
            raise UserError(
                f"{out_csv} exists but is not a metrics CSV (expected columns "
                f"{','.join(COLUMNS)}); remove it or choose another output file"
            )
        finished = {}
        for fields in reader:
            pair = by_name.get(fields[0]) if fields else None
            if pair is not None and _is_finished(fields) and not _modified_after(pair, written_ns):
                finished[fields[0]] = tuple(fields)
    return finished


def rows_to_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """CSV rows as a DataFrame: metrics as floats, `error` "" where the pair was scored."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    for metric in METRICS:
        frame[metric] = frame[metric].astype(float)
    return frame


def score_pairs_to_csv(
    pairs: Sequence[Pair], out_csv: str | Path, jobs: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """Score `pairs` (name, clean path, enhanced path) into `out_csv`, resuming a previous run.

    `jobs` worker processes (default: all cores). Returns all rows sorted by name.
    """
    out_csv = Path(out_csv)
    names = [pair[0] for pair in pairs]
    if len(set(names)) != len(names):
        raise UserError(f"duplicate file names in the pairs to score into {out_csv}")
    check_output_file(out_csv, "--out")
    try:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        rows = load_finished_rows(out_csv, pairs)
        _write_rows(out_csv, rows.values())  # drops partial lines, errors and stale rows
        _score_missing(pairs, rows, out_csv, jobs, progress)
        ordered = [rows[name] for name in sorted(rows)]
        _write_rows(out_csv, ordered)
    except OSError as exc:  # unwritable folder, disk full, ...
        raise UserError(f"{out_csv}: cannot write the metrics CSV ({exc})") from exc
    return rows_to_frame(ordered)


def _score_missing(
    pairs: Sequence[Pair], rows: dict[str, Row], out_csv: Path, jobs: int | None, progress: bool
) -> None:
    """Score the pairs that have no row yet, appending each row to `out_csv` and to `rows`."""
    todo = [pair for pair in pairs if pair[0] not in rows]
    jobs = max(1, min(jobs or available_cores(), len(todo)))
    with out_csv.open("a", newline="") as handle, progress_bar(progress) as bar:
        writer = csv.writer(handle)
        resumed = f" (resuming: {len(rows)} already in {out_csv.name})" if rows else ""
        task = bar.add_task(f"scoring{resumed}", total=len(pairs), completed=len(rows))

        def on_row(row: Row, details: str | None) -> None:
            writer.writerow(row)
            handle.flush()
            rows[row[0]] = row
            if details:
                log.debug("%s: %s", row[0], details)
            bar.advance(task)

        if jobs == 1:
            for pair in todo:
                on_row(*score_row(pair))
        else:
            _score_in_processes(todo, jobs, on_row)
