"""`dfablate ablate` end to end on the mini corpus with the tiny model: real training (one
step per run), evaluation and comparison; a failed sweep job; resuming skips finished stages."""

from __future__ import annotations

import pandas as pd
import pytest

from dfablate.cli import main


@pytest.mark.slow
def test_ablate_reports_a_failed_job_and_resumes(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("DFABLATE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "outputs"
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
        "ablate.evaluate.max_files=6",
    ]  # fmt: skip

    assert main(args) == 1  # one job failed, the others were trained, evaluated and compared
    captured = capfd.readouterr()
    printed = captured.out
    assert "missing run rms-seed0: training failed" in printed
    assert "not a readable checkpoint" in printed  # why the rms job failed
    assert printed.count("new run in ") == 2  # fresh runs start quietly: no resume warning
    assert "does not exist" not in captured.out + captured.err
    compare_dir = out / "norm_ablation" / "compare"
    report = (compare_dir / "report.md").read_text()
    assert "rms-seed0: training failed" in report
    summary = pd.read_csv(compare_dir / "summary.csv")
    assert set(summary["metric"]) == {"pesq", "stoi", "csig", "cbak", "covl", "ssnr", "sisdr"}
    assert (summary["a"] == "original").all() and (summary["b"] == "fixed").all()
    assert (summary["n_files"] == 6).all()  # a spread subset of the mini corpus test split
    finished = [out / "norm_ablation" / f"{norm}-seed0" for norm in ("original", "fixed")]
    outputs = [run / "eval" / "mini-6files" / "metrics.csv" for run in finished]
    outputs += [run / "checkpoints" / "best.ckpt" for run in finished]
    outputs += [compare_dir / "report.md"]
    stamps = {path: path.stat().st_mtime_ns for path in outputs}

    assert main(args) == 1  # resumes: only the failed job is tried again
    printed = capfd.readouterr().out
    assert "norm=rms seed=0" in printed and "norm=original" not in printed
    assert "2 runs already evaluated, skipped" in printed and "up to date, skipped" in printed
    assert "fixed (B) vs original (A)" in printed and "report:" in printed
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps
