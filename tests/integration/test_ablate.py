"""`dfablate ablate` end to end on the mini corpus with the tiny model: real training (one
step per run), evaluation at two input gains and comparison; a failed sweep job; resuming skips
finished stages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from helpers import Output, captured_output

from dfablate.cli import main

FAILED_JOB = pytest.mark.xdist_group("ablate_failed_job")  # one process runs the sweep once
# rich wraps lines at the terminal's width (80 without a terminal): a long temporary path
# would split the lines the tests look for
WIDE = "500"


@dataclass(frozen=True)
class FailedSweep:
    """`dfablate ablate` of three norms on the mini corpus, the rms job failing on a corrupt
    checkpoint: the first run's exit code, its output and the files it left."""

    args: list[str]
    cache: Path  # DFABLATE_CACHE for the sweep
    out: Path  # output_root
    code: int
    output: Output
    stamps: dict[Path, int]  # what the finished runs wrote: modification time (ns)


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory) -> FailedSweep:
    base = tmp_path_factory.mktemp("failed-sweep")
    out, cache = base / "outputs", base / "cache"
    # a corrupt checkpoint makes the rms job fail when training resumes from it
    broken = out / "norm_ablation" / "rms-seed0" / "checkpoints" / "last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    args = [
        "ablate", "experiment=norm_ablation", "norm=original,fixed,rms", "seed=0",
        "model=dfn3_tiny", "data=mini", "trainer=cpu", "logger=none", f"output_root={out}",
        "num_threads=1",
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "validate_first=false", "val_metric_utterances=0", "callbacks.media=null",
        "callbacks.progress_bar=null", "callbacks.early_stopping=null", "ablate.evaluate.jobs=2",
        "ablate.evaluate.max_files=6", "ablate.evaluate.input_gains_db=[0,-20]",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as env, captured_output(base) as output:
        env.setenv("DFABLATE_CACHE", str(cache))
        env.setenv("COLUMNS", WIDE)
        code = main(args)
    finished = [out / "norm_ablation" / f"{norm}-seed0" for norm in ("original", "fixed")]
    outputs = [run / "eval" / where / "metrics.csv" for run in finished
               for where in ("mini-6files", "mini-6files@-20dB")]  # fmt: skip
    outputs += [run / "checkpoints" / "best.ckpt" for run in finished]
    outputs += [out / "norm_ablation" / "compare" / "report.md"]
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    return FailedSweep(args, cache, out, code, output, stamps)


@pytest.mark.slow
@FAILED_JOB
def test_ablate_reports_a_failed_job(failed_sweep):
    assert failed_sweep.code == 1  # one job failed, the others were trained, evaluated, compared
    printed = failed_sweep.output.out
    assert "missing run rms-seed0: training failed" in printed
    assert "not a readable checkpoint" in printed  # why the rms job failed
    assert printed.count("new run in ") == 2  # fresh runs start quietly: no resume warning
    assert "does not exist" not in failed_sweep.output.out + failed_sweep.output.err
    report = (failed_sweep.out / "norm_ablation" / "compare" / "report.md").read_text()
    assert "rms-seed0: training failed" in report


@pytest.mark.slow
@FAILED_JOB
def test_ablate_evaluates_the_finished_runs_at_two_gains_and_compares_them(failed_sweep):
    summary = pd.read_csv(failed_sweep.out / "norm_ablation" / "compare" / "summary.csv")
    assert set(summary["metric"]) == {"pesq", "stoi", "csig", "cbak", "covl", "ssnr", "sisdr"}
    assert (summary["a"] == "original").all() and (summary["b"] == "fixed").all()
    assert (summary["n_files"] == 6).all()  # a spread subset of the mini corpus test split
    original = failed_sweep.out / "norm_ablation" / "original-seed0"
    shifted = json.loads((original / "eval" / "mini-6files@-20dB" / "summary.json").read_text())
    assert shifted["input_gain_db"] == -20.0 and shifted["dataset"]["n_files"] == 6


@pytest.mark.slow
@FAILED_JOB
def test_ablate_resumes_with_the_failed_job_only(failed_sweep, monkeypatch, capfd):
    monkeypatch.setenv("DFABLATE_CACHE", str(failed_sweep.cache))
    monkeypatch.setenv("COLUMNS", WIDE)
    assert main(failed_sweep.args) == 1  # resumes: only the failed job is tried again
    printed = capfd.readouterr().out
    assert "norm=rms seed=0" in printed and "norm=original" not in printed
    assert "4 evaluations (run x gain) already done, skipped" in printed
    assert "up to date, skipped" in printed
    assert "fixed (B) vs original (A)" in printed and "report:" in printed
    stamps = failed_sweep.stamps
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


@pytest.mark.parametrize("gains", ["5", "[]", "[0,loud]", "[0,1e9]"])
def test_bad_input_gains_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys, gains):
    monkeypatch.setenv("DFABLATE_CACHE", str(tmp_path / "cache"))
    args = ["ablate", "data=mini", "logger=none", f"output_root={tmp_path / 'out'}",
            f"ablate.evaluate.input_gains_db={gains}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ablate.evaluate.input_gains_db=" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("k", ["0", "two"])
def test_bad_runs_per_device_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, k):
    monkeypatch.setenv("DFABLATE_CACHE", str(tmp_path / "cache"))
    args = ["ablate", "data=mini", "logger=none", f"output_root={tmp_path / 'out'}",
            f"ablate.runs_per_device={k}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"ablate.runs_per_device={k}: must be an integer" in err


@pytest.mark.parametrize(
    "setting, named",
    [("ablate.compare.primary=pesq", "ablate.compare.primary"),
     ("ablate.compare.margins.pesq=-1", "ablate.compare.margins"),
     ("ablate.compare.pairing=sometimes", "ablate.compare.pairing"),
     ("ablate.compare.contrasts=[fixed]", "ablate.compare.contrasts")],
)  # fmt: skip
def test_bad_compare_design_is_refused_before_anything_runs(
    tmp_path, monkeypatch, capsys, setting, named
):
    monkeypatch.setenv("DFABLATE_CACHE", str(tmp_path / "cache"))
    args = ["ablate", "data=mini", "logger=none", f"output_root={tmp_path / 'out'}", setting]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
