"""Score many clean/enhanced file pairs into one metrics CSV: in parallel, resumable, robust.

The one implementation of the per-file metrics CSV (`MetricsCsv`), of the scoring process pool
(`scoring_pool`) and of turning a failure into a row (`failure_text`): `dfablate score` uses them
here, and the evaluation stage (`dfablate evaluate`, `ablate`) for its enhanced and noisy rows. Each pair becomes one row
`file,<metrics>,error`, by default `file,pesq,stoi,csig,cbak,covl,ssnr,sisdr,error`. Rows are appended as they finish, so an
interrupted run resumes where it stopped; at the end the rows are sorted by file name and floats
are written in their shortest exact form, so a resumed run's CSV equals an uninterrupted one's.
A pair that cannot be scored gets NaN metrics and a one-line reason in `error`; such rows, and
rows whose audio changed after the CSV was written, are scored again by the next run. A CSV
written with another metric list is never resumed nor overwritten: the run is refused.
"""

from __future__ import annotations

import csv
import fcntl
import logging
import math
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dfablate.audio import read_audio
from dfablate.errors import UserError
from dfablate.metrics import ALL_METRICS, METRICS, MetricError, score_pair
from dfablate.paths import check_output_file
from dfablate.progress import progress_bar

if TYPE_CHECKING:
    import pandas as pd


def csv_columns(metrics: Sequence[str] = METRICS) -> tuple[str, ...]:
    """The header of a metrics CSV holding `metrics`."""
    return ("file", *metrics, "error")


COLUMNS = csv_columns(METRICS)
AUDIO_SUFFIXES = (".wav", ".flac")

CleanEnhancedPair = tuple[
    str, "Path | None", "Path | None"
]  # (name, clean, enhanced); None: file missing
Row = dict[str, Any]  # {"file": name, <metric>: float (NaN: not scored), "error": "" or why}

log = logging.getLogger(__name__)


class PairError(UserError):
    """A pair of files that cannot be scored together (missing side, channels, rates)."""


def pair_files(clean: str | Path, enhanced: str | Path) -> list[CleanEnhancedPair]:
    """One pair, named after the enhanced file."""
    clean, enhanced = Path(clean), Path(enhanced)
    return [(enhanced.name, clean, enhanced)]


def _audio_files(directory: Path) -> dict[str, Path]:
    return {
        p.name: p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    }


def pair_directories(clean_dir: str | Path, enhanced_dir: str | Path) -> list[CleanEnhancedPair]:
    """Pairs of audio files (.wav, .flac) with the same name in the two directories.

    A file present on one side only is kept with None for the other side (it becomes an error
    row). Sorted by name.
    """
    clean_files = _audio_files(Path(clean_dir))
    enhanced_files = _audio_files(Path(enhanced_dir))
    names = sorted(clean_files.keys() | enhanced_files.keys())
    return [(name, clean_files.get(name), enhanced_files.get(name)) for name in names]


def find_clean_enhanced_pairs(clean: str | Path, enhanced: str | Path) -> list[CleanEnhancedPair]:
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


def score_files(
    clean: Path | None, enhanced: Path | None, metrics: Sequence[str] = METRICS
) -> dict[str, float]:
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
    return score_pair(clean_audio, enhanced_audio, clean_rate, metrics)


def _format_float(value: float) -> str:
    """Shortest exact text of a float: the same value always gives the same text."""
    return "nan" if math.isnan(value) else repr(float(value))


def failure_text(exc: BaseException) -> tuple[str, str | None]:
    """The one-line `error` of a pair that could not be scored and, for an unexpected failure (a
    bug, an exotic file: it must not stop the other pairs), its traceback for -v."""
    if isinstance(exc, UserError | MetricError):
        return " ".join(str(exc).split()), None
    return " ".join(f"unexpected {type(exc).__name__}: {exc}".split()), traceback.format_exc()


def failed_row(name: str, error: str, metrics: Sequence[str] = METRICS) -> Row:
    """The row of a pair that could not be scored: NaN metrics and the reason."""
    return {"file": name, **dict.fromkeys(metrics, math.nan), "error": error}


def score_row(pair: CleanEnhancedPair, metrics: Sequence[str] = METRICS) -> tuple[Row, str | None]:
    """The CSV row of one pair and, for an unexpected failure, its traceback (for -v)."""
    name, clean, enhanced = pair
    try:
        scores = score_files(clean, enhanced, metrics)
    except Exception as exc:
        error, details = failure_text(exc)
        return failed_row(name, error, metrics), details
    return {"file": name, **{m: float(scores[m]) for m in metrics}, "error": ""}, None


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


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def scoring_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """`jobs` scoring processes that leave Ctrl-C to this process and exit when it dies.

    Forkserver, not fork (no fork of a threaded parent) nor spawn (workers start from a
    preloaded server). On an exception in the `with` body (Ctrl-C) the workers stop at once and
    are gone when the `with` exits; every future is then done (cancelled, or failed with
    BrokenProcessPool) and the caller keeps what had finished before.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dfablate.scoring"])
    parent_alive, alive_writer = context.Pipe(duplex=False)  # closes when this process dies
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(parent_alive,)
    )
    try:
        yield pool
    except BaseException:
        # Only the pool's manager thread may cancel its futures: one cancelled from here while
        # still in its pending work makes CPython 3.11's terminate_broken (run when the workers
        # exit) raise InvalidStateError, printed as a thread traceback. The workers ignore
        # Ctrl-C and exit when this pipe closes; the manager then cancels the queued work (or,
        # if it sees the workers gone first, fails it with the running work) and stops.
        alive_writer.close()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        parent_alive.close()
    pool.shutdown()
    alive_writer.close()


def _score_in_processes(
    pairs: Sequence[CleanEnhancedPair],
    jobs: int,
    on_row: Callable[[Row, str | None], None],
    metrics: Sequence[str],
) -> None:
    with scoring_pool(jobs) as pool:
        futures = {pool.submit(score_row, pair, metrics): pair for pair in pairs}
        for future in as_completed(futures):
            try:
                row, details = future.result()
            except BrokenProcessPool:
                crashed = "scoring process crashed; rerun to retry"
                row = failed_row(futures[future][0], crashed, metrics)
                details = None
            on_row(row, details)


def _parse_finished(fields: list[str], metrics: Sequence[str]) -> Row | None:
    """The row of a CSV line scored without error; None for a line cut short by an
    interruption or a failure to retry."""
    if len(fields) != len(metrics) + 2 or fields[-1]:
        return None
    try:
        values = [float(value) if value else math.nan for value in fields[1:-1]]
    except ValueError:
        return None
    return {"file": fields[0], **dict(zip(metrics, values, strict=True)), "error": ""}


def _is_metrics_header(header: Sequence[str]) -> bool:
    return (
        len(header) > 2
        and header[0] == "file"
        and header[-1] == "error"
        and all(column in ALL_METRICS for column in header[1:-1])
    )


class MetricsCsv:
    """A per-file metrics CSV (`csv_columns(metrics)`) that grows one complete line at a time,
    survives interruption and is rewritten atomically in its final order."""

    def __init__(self, path: Path, metrics: Sequence[str] = METRICS) -> None:
        self.path = Path(path)
        self.metrics = tuple(metrics)
        self.columns = csv_columns(self.metrics)

    def check_metrics(self) -> None:
        """UserError when the file exists as a metrics CSV of another metric list (resuming it
        would mix or drop columns)."""
        header = self._header()
        if header and _is_metrics_header(header) and tuple(header) != self.columns:
            raise UserError(
                f"{self.path} was scored with the metrics {','.join(header[1:-1])}, not "
                f"{','.join(self.metrics)}; ask for the same metrics or write elsewhere"
            )

    def _header(self) -> list[str] | None:
        if not self.path.is_file():
            return None
        with self.path.open(newline="") as handle:
            try:
                return next(csv.reader(handle), None)
            except (UnicodeDecodeError, csv.Error):
                return ["(not text)"]

    def files(self) -> set[str]:
        """The file name of every line (scored or failed); UserError if not a metrics CSV."""
        return {fields[0] for fields in self._lines() if fields}

    def finished(self, keep: Callable[[str], bool] = lambda name: True) -> dict[str, Row]:
        """Rows scored without error whose file `keep` accepts; partial lines and failures
        (scored again: the file may have been fixed since) are left out."""
        rows = {}
        for fields in self._lines():
            row = _parse_finished(fields, self.metrics) if fields and keep(fields[0]) else None
            if row is not None:
                rows[row["file"]] = row
        return rows

    def _lines(self) -> list[list[str]]:
        """The lines after the header; UserError naming the file when it is not a metrics CSV
        of these metrics."""
        if not self.path.exists():
            return []
        with self.path.open(newline="") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
                lines = list(reader)
            except (UnicodeDecodeError, csv.Error):  # a binary file
                header, lines = ["(not text)"], []
        if header is None:
            return []
        self.check_metrics()
        if tuple(header) != self.columns:
            raise UserError(
                f"{self.path} exists but is not a metrics CSV (expected columns "
                f"{','.join(self.columns)}); remove it or choose another output file"
            )
        return lines

    def append(self, row: Row) -> None:
        """Add one row as one complete, flushed line (the header first in a new file)."""
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(self.columns)
            writer.writerow(self._fields(row))

    def rewrite(self, rows: Iterable[Row]) -> None:
        """Header + `rows` in the given order, atomically (a crash leaves the old file or the
        new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(self._fields(row) for row in rows)
        os.replace(tmp, self.path)

    def _fields(self, row: Row) -> tuple[str, ...]:
        return (row["file"], *(_format_float(row[m]) for m in self.metrics), row["error"])


def _modified_after(pair: CleanEnhancedPair, time_ns: int) -> bool:
    return any(p is not None and p.exists() and p.stat().st_mtime_ns > time_ns for p in pair[1:])


def load_finished_rows(
    out_csv: Path, pairs: Sequence[CleanEnhancedPair], metrics: Sequence[str] = METRICS
) -> dict[str, Row]:
    """Rows of `out_csv` that a new run can keep: scored without error, for a pair in `pairs`,
    whose files have not changed since the CSV was written."""
    if not out_csv.exists():
        return {}
    written_ns = out_csv.stat().st_mtime_ns
    by_name = {pair[0]: pair for pair in pairs}
    return MetricsCsv(out_csv, metrics).finished(
        lambda name: name in by_name and not _modified_after(by_name[name], written_ns)
    )


def rows_to_frame(rows: Iterable[Row], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Rows as a DataFrame: metrics as floats, `error` "" where the pair was scored."""
    frame = pd.DataFrame(list(rows), columns=list(csv_columns(metrics)))
    for metric in metrics:
        frame[metric] = frame[metric].astype(float)
    return frame


MAX_LISTED_FILES = 3


def check_same_job(
    out_csv: Path, names: Iterable[str], option: str = "--out", metrics: Sequence[str] = METRICS
) -> None:
    """Refuse an existing metrics CSV holding rows of files not in `names`: the results of
    another job, which resuming would silently replace (a resume is only ever the same pairs)."""
    others = sorted(MetricsCsv(out_csv, metrics).files() - set(names))
    if others:
        more = ", ..." if len(others) > MAX_LISTED_FILES else ""
        listed = ", ".join(others[:MAX_LISTED_FILES]) + more
        raise UserError(
            f"{option} {out_csv}: holds the results of {len(others)} other file(s) ({listed}); "
            "choose another --out, or pass --force to replace it"
        )


@contextmanager
def output_lock(out_csv: Path, option: str = "--out") -> Iterator[None]:
    """An advisory lock (fcntl) on `out_csv` for this process, through `<out_csv>.lock` (the
    CSV itself is replaced atomically, so it cannot hold the lock): a second process writing
    the same CSV refuses, naming the holder's PID, instead of scoring everything again."""
    lock_path = out_csv.with_name(out_csv.name + ".lock")
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise UserError(
                f"{option} {out_csv}: being written by another process (PID {holder}); wait for "
                "it to finish or choose another --out"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            lock_path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def score_pairs_to_csv(
    pairs: Sequence[CleanEnhancedPair],
    out_csv: str | Path,
    jobs: int | None = None,
    progress: bool = True,
    metrics: Sequence[str] = METRICS,
    force: bool = False,
) -> pd.DataFrame:
    """Score `pairs` (name, clean path, enhanced path) into `out_csv`, resuming a previous run
    of the same pairs and the same `metrics` (another metric list is refused); `force` replaces
    a CSV holding other files' rows instead of refusing.

    `jobs` worker processes (default: all cores). Returns all rows sorted by name.
    """
    out_csv = Path(out_csv)
    names = [pair[0] for pair in pairs]
    if len(set(names)) != len(names):
        raise UserError(f"duplicate file names in the pairs to score into {out_csv}")
    check_output_file(out_csv, "--out")
    results = MetricsCsv(out_csv, metrics)
    if force:  # even --force never replaces a file that is not a metrics CSV
        header = results._header()
        if header is not None and not _is_metrics_header(header):
            results.files()  # raises, naming the file
    else:
        results.check_metrics()
        check_same_job(out_csv, names, metrics=metrics)
    try:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(out_csv):
            rows = {} if force else load_finished_rows(out_csv, pairs, metrics)
            results.rewrite(rows.values())  # drops partial lines, errors and stale rows
            _score_missing(pairs, rows, results, jobs, progress)
            ordered = [rows[name] for name in sorted(rows)]
            results.rewrite(ordered)
    except OSError as exc:  # unwritable folder, disk full, ...
        raise UserError(f"{out_csv}: cannot write the metrics CSV ({exc})") from exc
    return rows_to_frame(ordered, metrics)


def _score_missing(
    pairs: Sequence[CleanEnhancedPair],
    rows: dict[str, Row],
    results: MetricsCsv,
    jobs: int | None,
    progress: bool,
) -> None:
    """Score the pairs that have no row yet, appending each row to `results` and to `rows`."""
    todo = [pair for pair in pairs if pair[0] not in rows]
    jobs = max(1, min(jobs or available_cores(), len(todo)))
    with progress_bar(progress) as bar:
        resumed = f" (resuming: {len(rows)} already in {results.path.name})" if rows else ""
        task = bar.add_task(f"scoring{resumed}", total=len(pairs), completed=len(rows))

        def on_row(row: Row, details: str | None) -> None:
            results.append(row)
            rows[row["file"]] = row
            if details:
                log.debug("%s: %s", row["file"], details)
            bar.advance(task)

        if jobs == 1:
            for pair in todo:
                on_row(*score_row(pair, results.metrics))
        else:
            _score_in_processes(todo, jobs, on_row, results.metrics)
