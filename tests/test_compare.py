"""Comparison math against hand-computed values, grouping by seed, bad inputs, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from dfablate.cli import main
from dfablate.compare import (
    VERDICT_EXCEEDS,
    VERDICT_UNKNOWN,
    VERDICT_WITHIN,
    bootstrap_ci,
    compare_runs,
    load_runs,
    relative_difference_pct,
    seed_verdict,
    wilcoxon_p,
    write_outputs,
)
from dfablate.errors import UserError

FILES = ["f1.wav", "f2.wav", "f3.wav", "f4.wav"]


def write_csv(path: Path, scores: dict[str, list[float]], files=FILES, errors=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"file": files, **scores, "error": errors or [""] * len(files)})
    table.to_csv(path, index=False)
    return path


def write_run(
    root: Path, norm: str, seed: int, scores: dict[str, list[float]], files=FILES
) -> Path:
    run_dir = root / f"{norm}-seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nnorm:\n  name: {norm}\n")
    write_csv(run_dir / "eval" / "mini" / "metrics.csv", scores, files)
    return run_dir


def test_relative_difference_by_hand():
    a = np.array([2.0, -2.0, 0.0, 0.0, 4.0])
    b = np.array([3.0, -1.0, 0.0, 1.0, 3.0])
    rel = relative_difference_pct(a, b)
    # 100*(3-2)/2 = 50; 100*(-1+2)/|-2| = 50 (less negative is better); 0/0 -> 0;
    # 1/0 undefined -> NaN; 100*(3-4)/4 = -25
    assert rel[0] == 50.0 and rel[1] == 50.0 and rel[2] == 0.0 and math.isnan(rel[3])
    assert rel[4] == -25.0


def test_wilcoxon_exact_small_cases_by_hand():
    # diffs 1,2,3,-4: ranks 1,2,3,4; W- = 4. Of the 16 equally likely sign patterns, 7 have a
    # positive-rank sum <= 4 ({}, {1}, {2}, {3}, {4}, {1,2}, {1,3}) -> two-sided p = 2 * 7/16
    assert wilcoxon_p(np.zeros(4), np.array([1.0, 2.0, 3.0, -4.0])) == pytest.approx(0.875)
    # five positive differences: only the all-positive pattern is as extreme -> p = 2 / 32
    assert wilcoxon_p(np.zeros(5), np.arange(1.0, 6.0)) == pytest.approx(0.0625)
    assert wilcoxon_p(np.ones(3), np.ones(3)) == 1.0
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=60), rng.normal(0.3, size=60)
    assert wilcoxon_p(a, b) == pytest.approx(wilcoxon(b - a).pvalue)


def test_bootstrap_ci_by_hand():
    # two files with differences 1 and 3: resampled means are 1, 2 or 3 with probabilities
    # 1/4, 1/2, 1/4, so the 2.5 % and 97.5 % percentiles are 1 and 3
    assert bootstrap_ci(np.array([1.0, 3.0]), seed=0) == (1.0, 3.0)
    assert bootstrap_ci(np.full(7, 0.25), seed=0) == (0.25, 0.25)
    rng = np.random.default_rng(2)
    diff = rng.normal(1.0, 1.0, size=200)
    low, high = bootstrap_ci(diff, seed=5)
    assert bootstrap_ci(diff, seed=5) == (low, high)  # seeded: reproducible
    assert low < diff.mean() < high
    # the CI half-width is close to 1.96 standard errors of the mean
    assert (high - low) / 2 == pytest.approx(1.96 * diff.std() / np.sqrt(200), rel=0.15)


def test_seed_verdict_definition():
    assert seed_verdict([2.0, 2.2], [2.3, 2.5]) == VERDICT_EXCEEDS
    assert seed_verdict([2.0, 2.4], [2.3, 2.5]) == VERDICT_WITHIN
    assert seed_verdict([2.5, 2.6], [2.0, 2.1]) == VERDICT_EXCEEDS  # worse also counts
    assert seed_verdict([2.0], [2.5, 2.6]) == VERDICT_UNKNOWN


def test_two_runs_four_files_by_hand(tmp_path):
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5], "sisdr": [-2.0, 4, 8, 10]})
    b = write_csv(tmp_path / "b.csv", {"pesq": [3.0, 1.5, 3.0, 2.5], "sisdr": [-1.0, 5, 6, 10]})
    comparison = compare_runs(load_runs([a, b]))
    table = comparison.relative_diff
    assert list(table.columns) == ["file", "metric", "a", "b", "rel_diff_pct"]
    pesq = table[table["metric"] == "pesq"]
    assert pesq["rel_diff_pct"].tolist() == [50.0, 50.0, -25.0, 0.0]
    summary = comparison.summary.set_index("metric")
    row = summary.loc["pesq"]
    assert row["a_mean"] == pytest.approx(9.5 / 4) and row["b_mean"] == pytest.approx(10.0 / 4)
    assert row["a_median"] == pytest.approx(2.25) and row["b_median"] == pytest.approx(2.75)
    assert row["rel_diff_mean_pct"] == pytest.approx(75.0 / 4)  # (50 + 50 - 25 + 0) / 4
    assert row["rel_diff_median_pct"] == pytest.approx(25.0)  # median of -25, 0, 50, 50
    assert row["b_better_share"] == pytest.approx(0.5)  # files 1 and 2
    assert row["mean_diff"] == pytest.approx(0.125)
    assert row["n_files"] == 4
    assert row["ci95_low"] <= 0.125 <= row["ci95_high"]
    sisdr = summary.loc["sisdr"]
    # 100*(1)/2 = 50, 100*1/4 = 25, 100*(-2)/8 = -25, 0
    assert sisdr["rel_diff_mean_pct"] == pytest.approx(12.5)
    assert sisdr["rel_diff_median_pct"] == pytest.approx(12.5)
    assert sisdr["b_better_share"] == pytest.approx(0.5)
    assert row["seed_verdict"] == VERDICT_UNKNOWN


def test_seeds_grouped_by_norm_and_missing_files(tmp_path):
    root = tmp_path / "exp"
    runs = [
        write_run(root, "original", 0, {"pesq": [2.0, 2.0, 2.0, 2.0]}),
        write_run(root, "original", 1, {"pesq": [2.2, 2.2, 2.2, 2.2]}),
        write_run(root, "fixed", 0, {"pesq": [2.6, 2.6, 2.6, 2.6]}),
        # the second fixed seed lacks f4: it is listed and left out everywhere
        write_run(root, "fixed", 1, {"pesq": [2.4, 2.4, 2.4]}, files=FILES[:3]),
    ]
    comparison = compare_runs(load_runs(runs))
    assert comparison.variants == ["original", "fixed"]
    assert comparison.files == FILES[:3]
    assert comparison.only_in == {"f4.wav": ["original-seed0", "original-seed1", "fixed-seed0"]}
    row = comparison.summary.set_index("metric").loc["pesq"]
    assert row["a_mean"] == pytest.approx(2.1) and row["b_mean"] == pytest.approx(2.5)
    assert row["a_seeds"] == 2 and row["b_seeds"] == 2
    # sample std of (2.0, 2.2) and of (2.6, 2.4): 0.2 / sqrt(2)
    assert row["a_seed_std"] == pytest.approx(0.2 / math.sqrt(2))
    assert row["b_seed_std"] == pytest.approx(0.2 / math.sqrt(2))
    assert row["diff_over_seed_std"] == pytest.approx(0.4 / (0.2 / math.sqrt(2)))
    assert row["seed_verdict"] == VERDICT_EXCEEDS
    # per-file values are seed means: (2.0 + 2.2) / 2 -> (2.6 + 2.4) / 2, i.e. +19.047... %
    rel = comparison.relative_diff["rel_diff_pct"].to_numpy()
    np.testing.assert_allclose(rel, 100 * 0.4 / 2.1)

    paths = write_outputs(comparison, tmp_path / "out")
    for name in ("relative_diff", "summary", "report"):
        assert paths[name].is_file()
    assert (tmp_path / "out" / "seed_means.png").is_file()
    report = paths["report"].read_text()
    assert "f4.wav" in report and "exceeds seed spread" in report


def test_scoring_errors_are_left_out_per_metric(tmp_path):
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5], "stoi": [0.9] * 4})
    b = tmp_path / "b.csv"
    write_csv(
        b,
        {"pesq": [3.0, math.nan, 3.0, 2.5], "stoi": [0.8] * 4},
        errors=["", "NoUtterancesError", "", ""],
    )
    comparison = compare_runs(load_runs([a, b]))
    summary = comparison.summary.set_index("metric")
    assert summary.loc["pesq", "n_files"] == 3 and summary.loc["stoi", "n_files"] == 4
    assert comparison.failed == {"b: f2.wav": ["pesq"]}


def test_three_variants_add_variant_column(tmp_path):
    paths = [
        write_csv(tmp_path / f"{name}.csv", {"pesq": [v, v, v, v + 1]})
        for name, v in (("original", 2.0), ("fixed", 2.5), ("rms", 1.0))
    ]
    comparison = compare_runs(load_runs(paths))
    assert comparison.variants == ["original", "fixed", "rms"]
    assert set(comparison.relative_diff["variant"]) == {"fixed", "rms"}
    assert comparison.summary.set_index("variant").loc["rms", "a_mean"] == pytest.approx(2.25)


def test_different_test_sets_are_refused(tmp_path):
    a = write_csv(tmp_path / "a" / "metrics.csv", {"pesq": [1.0] * 4})
    b = write_csv(tmp_path / "b" / "metrics.csv", {"pesq": [1.0] * 4})
    for path, fingerprint in ((a, "aaa"), (b, "bbb")):
        summary = {
            "dataset": {"name": "valentini", "root": str(path.parent), "fingerprint": fingerprint}
        }
        (path.parent / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UserError, match="different test sets"):
        load_runs([a, b])
    c = write_csv(tmp_path / "c.csv", {"pesq": [1.0] * 4}, files=["x1", "x2", "x3", "x4"])
    with pytest.raises(UserError, match="no file in common"):
        load_runs([a, c])


def test_run_dir_without_evaluation_is_one_line_error(tmp_path, capsys):
    run_dir = tmp_path / "fixed-seed0"
    run_dir.mkdir()
    other = write_csv(tmp_path / "b.csv", {"pesq": [1.0] * 4})
    assert main(["compare", str(run_dir), str(other), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(run_dir) in err and "dfablate evaluate" in err


def test_cli_writes_outputs_and_prints_table(tmp_path, capsys):
    a = write_run(tmp_path, "original", 0, {"pesq": [2.0, 1.0, 4.0, 2.5]})
    b = write_run(tmp_path, "fixed", 0, {"pesq": [3.0, 1.5, 3.0, 2.5]})
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--wandb", "disabled"]) == 0
    printed = capsys.readouterr().out
    assert "fixed (B) vs original (A)" in printed and str(out / "report.md") in printed
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "rel_diff_median_pct"] == pytest.approx(25.0)
    assert {p.name for p in out.glob("*.png")} == {
        "relative_diff_by_file.png",
        "relative_diff_distribution.png",
    }


def test_comparison_is_logged_to_wandb_offline(tmp_path):
    from dfablate.tracking import read_offline_run

    a = write_run(tmp_path, "original", 0, {"pesq": [2.0, 1.0, 4.0, 2.5]})
    b = write_run(tmp_path, "fixed", 0, {"pesq": [3.0, 1.5, 3.0, 2.5]})
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0  # WANDB_MODE=offline
    logged = read_offline_run(out / "wandb")
    assert logged.run["job_type"] == "compare"
    assert logged.summary["compare/fixed_vs_original/pesq/rel_diff_median_pct"] == 25.0
    assert logged.summary["compare/relative_diff"]["nrows"] == 4
    assert logged.summary["compare/relative_diff_by_file"]["_type"] == "image-file"
