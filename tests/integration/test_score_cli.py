"""`dfablate score` end to end: real audio files, bad inputs, exit codes, resuming."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pesq import pesq

from dfablate.audio import read_audio
from dfablate.cli import main
from dfablate.scoring import COLUMNS, scoring_pool

DFABLATE = Path(sys.executable).with_name("dfablate")
RATE = 16000
METRIC_COLUMNS = COLUMNS[1:-1]


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return {row["file"]: row for row in reader}


@pytest.fixture(scope="module")
def speech(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """Two seconds of real 16 kHz speech and of real noise at the same rate."""
    clean, _ = read_audio(data_dir / "arctic_a0007.wav")
    noise, _ = read_audio(data_dir / "noise_freesound_573577.wav")
    return clean[: 2 * RATE], noise[::3][: 2 * RATE]


def _write_good_pair(clean_dir: Path, enhanced_dir: Path, name: str, speech, noise_gain: float):
    clean, noise = speech
    sf.write(clean_dir / name, clean, RATE)
    sf.write(enhanced_dir / name, clean + noise_gain * noise, RATE)


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    clean_dir, enhanced_dir = tmp_path / "clean", tmp_path / "enhanced"
    clean_dir.mkdir()
    enhanced_dir.mkdir()
    return clean_dir, enhanced_dir


def _write_bad_pairs(clean_dir: Path, enhanced_dir: Path, speech) -> dict[str, str]:
    """One pair per kind of bad input; returns name -> text expected in the error column."""
    clean, noise = speech
    noisy = (clean + 0.3 * noise).astype(np.float32)
    rng = np.random.default_rng(0)

    sf.write(clean_dir / "silent.wav", np.zeros(RATE, np.float32), RATE)
    sf.write(enhanced_dir / "silent.wav", 0.01 * rng.standard_normal(RATE), RATE)
    with_nan = noisy.copy()
    with_nan[1000] = np.nan
    sf.write(clean_dir / "nan.wav", clean, RATE)
    sf.write(enhanced_dir / "nan.wav", with_nan, RATE, subtype="FLOAT")
    with_inf = noisy.copy()
    with_inf[5] = np.inf
    sf.write(clean_dir / "inf.wav", with_inf, RATE, subtype="FLOAT")
    sf.write(enhanced_dir / "inf.wav", noisy, RATE)
    sf.write(clean_dir / "corrupt.wav", clean, RATE)
    (enhanced_dir / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + rng.bytes(2000))
    sf.write(clean_dir / "truncated.wav", clean, RATE)
    sf.write(enhanced_dir / "truncated.wav", noisy, RATE)
    data = (enhanced_dir / "truncated.wav").read_bytes()
    (enhanced_dir / "truncated.wav").write_bytes(data[: len(data) // 2])
    sf.write(clean_dir / "stereo.wav", clean, RATE)
    sf.write(enhanced_dir / "stereo.wav", np.stack([noisy, noisy], axis=1), RATE)
    sf.write(clean_dir / "rate.wav", clean, RATE)
    sf.write(enhanced_dir / "rate.wav", noisy, 8000)
    sf.write(clean_dir / "length.wav", clean, RATE)
    sf.write(enhanced_dir / "length.wav", noisy[:-160], RATE)
    sf.write(clean_dir / "clean_only.wav", clean, RATE)
    sf.write(enhanced_dir / "enhanced_only.wav", noisy, RATE)
    return {
        "silent.wav": "no speech",
        "nan.wav": "NaN or Inf",
        "inf.wav": "NaN or Inf",
        "corrupt.wav": "cannot read audio",
        "truncated.wav": "truncated: 15989 of 32000 frames",
        "stereo.wav": "2 channels",
        "rate.wav": "sample rate mismatch",
        "length.wav": "length mismatch",
        "clean_only.wav": "no enhanced file",
        "enhanced_only.wav": "no clean reference",
    }


def test_every_bad_input_gets_an_error_row_and_the_rest_is_scored(dirs, speech, tmp_path, capsys):
    clean_dir, enhanced_dir = dirs
    _write_good_pair(clean_dir, enhanced_dir, "good_a.wav", speech, 0.3)
    _write_good_pair(clean_dir, enhanced_dir, "good_b.wav", speech, 0.05)
    expected_errors = _write_bad_pairs(clean_dir, enhanced_dir, speech)
    out = tmp_path / "metrics.csv"

    code = main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out), "--jobs", "2"])

    captured = capsys.readouterr()
    assert code == 0
    assert "Traceback" not in captured.err + captured.out
    rows = _read_csv(out)
    assert list(rows) == sorted(rows)  # sorted by file
    assert set(rows) == {"good_a.wav", "good_b.wav", *expected_errors}
    for name, fragment in expected_errors.items():
        assert fragment in rows[name]["error"], (name, rows[name]["error"])
        assert all(math.isnan(float(rows[name][m])) for m in METRIC_COLUMNS), name
        assert f"failed: {name}" in captured.err
    for name in ("good_a.wav", "good_b.wav"):
        assert rows[name]["error"] == ""
        clean, _ = sf.read(clean_dir / name, dtype="float32")
        enhanced, _ = sf.read(enhanced_dir / name, dtype="float32")
        assert float(rows[name]["pesq"]) == pytest.approx(pesq(RATE, clean, enhanced, "wb"))
        assert all(math.isfinite(float(rows[name][m])) for m in METRIC_COLUMNS)
    assert float(rows["good_b.wav"]["pesq"]) > float(rows["good_a.wav"]["pesq"])  # less noise
    assert f"scored: 2, failed: {len(expected_errors)}" in captured.out
    mean_pesq = (float(rows["good_a.wav"]["pesq"]) + float(rows["good_b.wav"]["pesq"])) / 2
    assert f"{mean_pesq:.4f}" in captured.out


def test_two_files_give_one_row_named_after_the_enhanced_file(dirs, speech, tmp_path, capsys):
    clean_dir, enhanced_dir = dirs
    _write_good_pair(clean_dir, enhanced_dir, "x.wav", speech, 0.1)
    out = tmp_path / "sub" / "one.csv"
    code = main(["score", str(clean_dir / "x.wav"), str(enhanced_dir / "x.wav"), "--out", str(out)])
    assert code == 0
    rows = _read_csv(out)
    assert list(rows) == ["x.wav"] and rows["x.wav"]["error"] == ""
    assert "scored: 1, failed: 0" in capsys.readouterr().out


def test_nothing_scored_exits_1_and_still_writes_the_rows(dirs, speech, tmp_path, capsys):
    clean_dir, enhanced_dir = dirs
    clean, _ = speech
    sf.write(clean_dir / "a.wav", clean, RATE)
    sf.write(enhanced_dir / "a.wav", clean, 8000)
    out = tmp_path / "m.csv"
    assert main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out)]) == 1
    assert "sample rate mismatch" in _read_csv(out)["a.wav"]["error"]
    assert "no file could be scored" in capsys.readouterr().err


def test_wrong_arguments_exit_2_with_one_line_naming_the_path(dirs, speech, tmp_path, capsys):
    clean_dir, enhanced_dir = dirs
    _write_good_pair(clean_dir, enhanced_dir, "x.wav", speech, 0.1)
    cases = {
        "nope": (["score", str(tmp_path / "nope"), str(enhanced_dir)], "nope"),
        "file vs dir": (["score", str(clean_dir / "x.wav"), str(enhanced_dir)], "both be files"),
    }
    (tmp_path / "empty_a").mkdir()
    (tmp_path / "empty_b").mkdir()
    cases["empty"] = (["score", str(tmp_path / "empty_a"), str(tmp_path / "empty_b")], "empty_a")
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,score\nx.wav,1\n")
    cases["foreign csv"] = (
        ["score", str(clean_dir), str(enhanced_dir), "--out", str(foreign)],
        "foreign.csv",
    )
    cases["out is a dir"] = (
        ["score", str(clean_dir), str(enhanced_dir), "--out", str(tmp_path)],
        "is a directory",
    )
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases["out under a file"] = (
        ["score", str(clean_dir), str(enhanced_dir), "--out", str(blocker / "m.csv")],
        "cannot write",
    )
    for label, (argv, fragment) in cases.items():
        assert main(argv) == 2, label
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and fragment in err and "\n" not in err, (label, err)
    assert foreign.read_text() == "name,score\nx.wav,1\n"  # left alone
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(clean_dir), str(enhanced_dir), "--jobs", "-1"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_only_adds_the_traceback(tmp_path, capsys, where):
    """`-v` before or after the subcommand: the same exit code and error line, plus the
    traceback."""
    args = ["score", str(tmp_path / "a"), str(tmp_path / "b")]
    assert main(args) == 2
    plain = capsys.readouterr().err
    assert main(["-v", *args] if where == "before" else [*args, "-v"]) == 2
    verbose = capsys.readouterr().err
    assert "Traceback" in verbose and "Traceback" not in plain
    assert (
        verbose.strip().splitlines()[-1]
        == plain.strip()
        == f"error: CLEAN {tmp_path / 'a'}: no such file or directory"
    )


def test_finished_rows_are_kept_and_errors_or_changed_files_rescored(dirs, speech, tmp_path):
    clean_dir, enhanced_dir = dirs
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        _write_good_pair(clean_dir, enhanced_dir, name, speech, 0.2)
    out = tmp_path / "m.csv"
    sentinel = ["9.5"] * len(METRIC_COLUMNS)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow(["b.wav", *sentinel, ""])  # finished: must be kept as is
        writer.writerow(["c.wav", *sentinel, "some earlier failure"])  # error: retried
        writer.writerow(["d.wav", *sentinel, ""])  # its audio changes below: rescored
        handle.write("a.wav,2.5,0.9")  # a line cut short by an interruption
    written = out.stat().st_mtime_ns
    clean, noise = speech
    sf.write(enhanced_dir / "d.wav", clean + 0.5 * noise, RATE)
    os.utime(enhanced_dir / "d.wav", ns=(written + 10**9, written + 10**9))

    assert main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out)]) == 0

    rows = _read_csv(out)
    assert list(rows) == ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert [rows["b.wav"][m] for m in METRIC_COLUMNS] == sentinel
    for name in ("a.wav", "c.wav", "d.wav"):
        assert rows[name]["error"] == ""
        assert float(rows[name]["pesq"]) < 5


def test_a_csv_of_other_files_is_refused_and_force_replaces_it(dirs, speech, tmp_path, capsys):
    """`score dirA dirB` then `score x.wav y.wav` in the same folder (the default --out): the
    first job's rows are not silently replaced by one row."""
    clean_dir, enhanced_dir = dirs
    for name in ("a.wav", "b.wav"):
        _write_good_pair(clean_dir, enhanced_dir, name, speech, 0.2)
    out = tmp_path / "metrics.csv"
    assert main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out)]) == 0
    before = out.read_bytes()
    one_pair = ["score", str(clean_dir / "a.wav"), str(enhanced_dir / "b.wav"), "--out", str(out)]
    capsys.readouterr()
    assert main(one_pair) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --out {out}: holds the results of 1 other file(s) (a.wav); choose another "
        "--out, or pass --force to replace it"
    ]
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "clean", "enhanced", "metrics.csv"]  # fmt: skip
    assert main([*one_pair, "--force"]) == 0
    assert list(_read_csv(out)) == ["b.wav"]


def test_a_second_process_on_the_same_csv_refuses_naming_the_holder(dirs, speech, tmp_path, capsys):
    """An advisory lock (fcntl) on the output: a second `score` into the same CSV refuses
    instead of scoring everything again."""
    clean_dir, enhanced_dir = dirs
    _write_good_pair(clean_dir, enhanced_dir, "a.wav", speech, 0.2)
    out = tmp_path / "m.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from dfablate.scoring import output_lock\n"
         "with output_lock(Path(sys.argv[1])):\n print('locked', flush=True); sys.stdin.read()",
         str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: --out {out}: being written by another process (PID {holder.pid}); wait for "
            "it to finish or choose another --out"
        ]
        assert not out.exists()
    finally:
        holder.communicate("")
    assert not (tmp_path / "m.csv.lock").exists()  # the holder removed it
    assert main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out)]) == 0


def test_jobs_zero_means_all_cores_and_a_word_is_named(dirs, speech, tmp_path, capsys):
    """One rule for every jobs/num_threads option: 0 = all cores, negative or not a number
    refused naming the option."""
    clean_dir, enhanced_dir = dirs
    _write_good_pair(clean_dir, enhanced_dir, "a.wav", speech, 0.2)
    args = ["score", str(clean_dir), str(enhanced_dir), "--out", str(tmp_path / "m.csv")]
    assert main([*args, "--jobs", "0"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--jobs", "abc"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--jobs=abc: must be a whole number" in err and "_core_count" not in err


def test_empty_and_narrow_band_files_say_what_is_wrong(dirs, speech, tmp_path, capsys):
    clean_dir, enhanced_dir = dirs
    sf.write(clean_dir / "empty.wav", np.zeros(0, np.float32), RATE)
    sf.write(enhanced_dir / "empty.wav", np.zeros(0, np.float32), RATE)
    clean, noise = speech
    sf.write(clean_dir / "tiny.wav", clean[1000:1004], RATE)
    sf.write(enhanced_dir / "tiny.wav", noise[1000:1004], RATE)
    sf.write(clean_dir / "narrow.wav", clean[::2], RATE // 2)
    sf.write(enhanced_dir / "narrow.wav", (clean + 0.2 * noise)[::2], RATE // 2)
    with pytest.warns(UserWarning, match="8000 Hz audio scored with wide-band PESQ"):
        main(["score", str(clean_dir), str(enhanced_dir), "--out", str(tmp_path / "m.csv")])
    rows = _read_csv(tmp_path / "m.csv")
    assert rows["empty.wav"]["error"] == f"{clean_dir / 'empty.wav'}: file holds no audio samples"
    assert rows["tiny.wav"]["error"] == (
        "too short to score: 4 samples (0.000 s); the metrics need at least 0.038 s"
    )
    assert rows["narrow.wav"]["error"] == ""


def _wait_for_rows(csv_path: Path, rows: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) > rows:  # + header
            return
        time.sleep(0.01)


def _group_is_gone(group: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_killed_run_resumes_to_the_same_csv_as_an_uninterrupted_run(dirs, speech, tmp_path):
    clean_dir, enhanced_dir = dirs
    names = [f"utt{i:02d}.wav" for i in range(10)]
    for i, name in enumerate(names):
        _write_good_pair(clean_dir, enhanced_dir, name, speech, 0.02 * (i + 1))
    uninterrupted, resumed = tmp_path / "full.csv", tmp_path / "resumed.csv"
    command = [str(DFABLATE), "score", str(clean_dir), str(enhanced_dir)]

    process = subprocess.Popen(
        [*command, "--out", str(resumed), "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for_rows(resumed, 3, process)
    process.send_signal(signal.SIGKILL)  # no chance to clean up
    process.wait()
    assert _group_is_gone(process.pid), "worker processes outlived the killed run"
    partial = _read_csv(resumed)
    assert 3 <= len(partial) < len(names), "the run was not interrupted part-way"
    stale = {name: row["pesq"] for name, row in partial.items() if row["error"] == ""}

    subprocess.run(
        [*command, "--out", str(resumed), "--jobs", "2"], check=True, capture_output=True
    )
    args = ["score", str(clean_dir), str(enhanced_dir), "--out", str(uninterrupted), "--jobs", "1"]
    assert main(args) == 0

    assert resumed.read_bytes() == uninterrupted.read_bytes()
    final = _read_csv(resumed)
    assert list(final) == names
    assert all(final[name]["pesq"] == pesq for name, pesq in stale.items())


def test_parallel_and_serial_runs_write_identical_csvs(dirs, speech, tmp_path):
    clean_dir, enhanced_dir = dirs
    for i in range(4):
        _write_good_pair(clean_dir, enhanced_dir, f"u{i}.wav", speech, 0.1 * (i + 1))
    shutil.copy(clean_dir / "u0.wav", enhanced_dir / "extra.wav")
    serial, parallel = tmp_path / "serial.csv", tmp_path / "parallel.csv"
    assert (
        main(["score", str(clean_dir), str(enhanced_dir), "--out", str(serial), "--jobs", "1"]) == 0
    )
    args = ["score", str(clean_dir), str(enhanced_dir), "--out", str(parallel), "--jobs", "2"]
    assert main(args) == 0
    assert serial.read_bytes() == parallel.read_bytes()


def test_an_interrupted_pool_stops_its_workers_and_no_pool_thread_fails(monkeypatch):
    """Ctrl-C in the `with` body: the workers are gone once the `with` exits, no work is left
    pending or running, and the pool's manager thread raises nothing (a future cancelled behind
    its back made it print a traceback under `dfablate score`)."""
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    with pytest.raises(KeyboardInterrupt), scoring_pool(2) as pool:
        futures = [pool.submit(time.sleep, 60) for _ in range(8)]
        while sum(future.running() for future in futures) < 2:
            time.sleep(0.01)
        workers = list(pool._processes.values())
        raise KeyboardInterrupt

    assert len(workers) == 2 and not any(worker.is_alive() for worker in workers)
    assert all(future.done() for future in futures)
    failed = [future for future in futures if not future.cancelled()]
    assert len(failed) >= 2  # the two that were running cannot be cancelled
    assert all(isinstance(future.exception(), BrokenProcessPool) for future in failed)
    assert thread_errors == []


def test_ctrl_c_stops_the_workers_promptly_and_keeps_finished_rows(dirs, speech, tmp_path):
    """Two short pairs, then 30 s ones: once the short rows are written, the rest takes tens of
    seconds, so Ctrl-C lands mid-run however loaded the machine is (not a race with the end)."""
    clean_dir, enhanced_dir = dirs
    names = [f"utt{i:02d}.wav" for i in range(16)]
    clean, noise = speech
    long_speech = (np.tile(clean, 15), np.tile(noise, 15))
    for i, name in enumerate(names):
        _write_good_pair(
            clean_dir, enhanced_dir, name, speech if i < 2 else long_speech, 0.01 * (i + 1)
        )
    out = tmp_path / "m.csv"
    command = [str(DFABLATE), "score", str(clean_dir), str(enhanced_dir), "--out", str(out)]
    process = subprocess.Popen(
        [*command, "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    _wait_for_rows(out, 2, process)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends
    _, err = process.communicate(timeout=30)  # the queued pairs are dropped, not scored

    assert process.returncode == 130
    assert _group_is_gone(process.pid)
    assert "interrupted" in err and "rerun to resume" in err and "Traceback" not in err
    kept = _read_csv(out)
    assert 2 <= len(kept) < len(names)
    for i, name in enumerate(names[2:], start=2):  # short again: the resume stays quick
        _write_good_pair(clean_dir, enhanced_dir, name, speech, 0.01 * (i + 1))
    assert main(["score", str(clean_dir), str(enhanced_dir), "--out", str(out)]) == 0
    assert list(_read_csv(out)) == names
