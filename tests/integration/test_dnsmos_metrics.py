"""DNSMOS through the commands: `score --metrics pesq,dnsmos`, `evaluate metrics=[...]`, `compare`,
and the refusal to resume a CSV written with another metric list."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pesq import pesq

from dfablate.audio import read_audio, resample
from dfablate.cli import main

pytest.importorskip("onnxruntime", reason="the dnsmos extra is not installed")
DNSMOS = ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"]


def test_score_pesq_and_dnsmos_equal_their_references(speech_48k, noisy_48k, tmp_path, capsys):
    pytest.importorskip("librosa", reason="the DNSMOS reference needs librosa (test extra)")
    reference = pytest.importorskip("speechmos.dnsmos", reason="speechmos (test extra) missing")
    out = tmp_path / "scores.csv"
    args = ["score", str(speech_48k), str(noisy_48k), "--out", str(out), "--jobs", "1"]
    assert main([*args, "--metrics", "pesq,dnsmos"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["file", "pesq", *DNSMOS, "error"]
    clean, rate = read_audio(speech_48k)
    noisy, _ = read_audio(noisy_48k)
    clean16, noisy16 = resample(clean, rate, 16000), resample(noisy, rate, 16000)
    row = table.iloc[0]
    assert row["pesq"] == pytest.approx(pesq(16000, clean16, noisy16, "wb"), abs=1e-6)
    expected = reference.run(noisy16, 16000)  # non-intrusive: the scored signal alone
    for metric, key in zip(DNSMOS, ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos"), strict=True):
        assert row[metric] == pytest.approx(float(expected[key]), abs=1e-4)
    assert "dnsmos_ovrl" in capsys.readouterr().out  # the printed means

    written = out.read_bytes()
    assert main(args) == 2  # the default metrics: another list than the CSV's
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and "pesq,dnsmos_sig" in err
    assert out.read_bytes() == written


def test_unknown_metric_is_one_line_and_writes_nothing(speech_48k, noisy_48k, tmp_path, capsys):
    out = tmp_path / "sub" / "scores.csv"
    code = main(["score", str(speech_48k), str(noisy_48k), "--out", str(out), "--metrics", "mos"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--metrics mos" in err and "unknown metric" in err
    assert not out.parent.exists()


@pytest.mark.slow
def test_evaluate_and_compare_carry_dnsmos(short_run, tmp_path, capsys):
    """evaluate metrics=[pesq,dnsmos] scores the enhanced output and the noisy input; a second
    evaluation with the seven default metrics is refused; compare treats DNSMOS like PESQ."""
    out = tmp_path / "eval"
    common = ["max_files=2", "jobs=1", "progress=false", f"noisy_cache_dir={tmp_path / 'cache'}"]
    rc = main(["evaluate", f"run={short_run.run_dir}", f"out_dir={out}", "metrics=[pesq,dnsmos]",
               *common])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    table = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    assert list(table.columns) == ["file", "pesq", *DNSMOS, "error"] and len(table) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ["pesq", *DNSMOS]
    assert summary["mean"]["dnsmos_ovrl"] == pytest.approx(table["dnsmos_ovrl"].mean())
    noisy = pd.read_csv(summary["noisy_metrics_csv"])
    assert list(noisy.columns) == list(table.columns)  # the unprocessed input is scored too
    assert 1 < summary["noisy"]["dnsmos_ovrl"] < 5

    written = (out / "metrics.csv").read_bytes()
    rc = main(["evaluate", f"run={short_run.run_dir}", f"out_dir={out}", *common])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "metrics.csv was scored with the metrics pesq,dnsmos_sig" in err
    assert (out / "metrics.csv").read_bytes() == written

    other = tmp_path / "other.csv"  # a second "run": the same scores shifted
    table.assign(**{m: table[m] + 0.1 for m in ["pesq", *DNSMOS]}).to_csv(other, index=False)
    cmp = tmp_path / "cmp"
    rc = main(["compare", str(out / "metrics.csv"), str(other), "--label", "A", "--label", "B",
               "--out", str(cmp), "--wandb", "disabled"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    compared = pd.read_csv(cmp / "summary.csv").set_index("metric")
    assert list(compared.index) == ["pesq", *DNSMOS]
    assert compared.loc["dnsmos_ovrl", "mean_diff"] == pytest.approx(0.1)  # higher is better
