"""Comparison math against hand-computed values, grouping by seed, bad inputs, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import FILES, SEED_FILES, seed_study, write_csv, write_run
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from dfablate.cli import main
from dfablate.comparison.design import parse_design
from dfablate.comparison.loading import load_runs
from dfablate.comparison.stats import compare_runs, relative_difference_pct, wilcoxon_p
from dfablate.errors import UserError


def compare(paths, **kwargs):
    return compare_runs(*load_runs(paths, **kwargs))


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
    assert wilcoxon_p(a, b) == pytest.approx(stats.wilcoxon(b - a).pvalue)


def test_scoring_errors_are_left_out_per_metric(tmp_path):
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5], "stoi": [0.9] * 4})
    b = tmp_path / "b.csv"
    write_csv(
        b,
        {"pesq": [3.0, math.nan, 3.0, 2.5], "stoi": [0.8] * 4},
        errors=["", "NoUtterancesError", "", ""],
    )
    comparison = compare([a, b])
    summary = comparison.summary.set_index("metric")
    assert summary.loc["pesq", "n_files"] == 3 and summary.loc["stoi", "n_files"] == 4
    assert comparison.failed == {"b: f2.wav": ["pesq"]}


def test_three_variants_add_variant_column(tmp_path):
    paths = [
        write_csv(tmp_path / f"{name}.csv", {"pesq": [v, v, v, v + 1]})
        for name, v in (("original", 2.0), ("fixed", 2.5), ("rms", 1.0))
    ]
    comparison = compare(paths)
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


def per_run_means(runs: list[Path], metric: str) -> np.ndarray:
    return np.array([pd.read_csv(r / "eval/mini/metrics.csv")[metric].mean() for r in runs])


SEED_STUDY = pytest.mark.xdist_group("compare_seed_study")  # one process builds it once


@dataclass(frozen=True)
class SeedComparison:
    """`dfablate compare` run once on `seed_study`: its runs, output folder and summary."""

    paired: bool
    runs: list[Path]  # original seeds first (A), then fixed (B)
    out: Path
    summary: pd.DataFrame  # summary.csv indexed by metric


@pytest.fixture(scope="module", params=[True, False], ids=["paired", "unpaired"])
def seed_comparison(request, tmp_path_factory) -> SeedComparison:
    paired = request.param
    root = tmp_path_factory.mktemp("seed-study")
    runs = seed_study(root, b_seeds=(0, 1, 2) if paired else (5, 6, 7))
    out = root / "out"
    shuffled = [*runs[:3], runs[5], runs[3], runs[4]]  # pairing goes by seed, not by order
    assert main(["compare", *map(str, shuffled), "--out", str(out), "--wandb", "disabled"]) == 0
    summary = pd.read_csv(out / "summary.csv").set_index("metric")
    return SeedComparison(paired, runs, out, summary)


def seed_t_test(comparison: SeedComparison, metric: str):
    """scipy's t test of B's seed means against A's, as the comparison's design asks."""
    a = per_run_means(comparison.runs[:3], metric)
    b = per_run_means(comparison.runs[3:], metric)
    return stats.ttest_rel(b, a) if comparison.paired else stats.ttest_ind(b, a, equal_var=True)


def file_means(runs: list[Path], metric: str) -> np.ndarray:
    """Per-file values averaged over the runs (seeds) of one variant."""
    return np.mean([pd.read_csv(r / "eval/mini/metrics.csv")[metric] for r in runs], 0)


@SEED_STUDY
@pytest.mark.parametrize("metric", ["pesq", "sisdr"])
def test_summary_means_and_t_test_against_scipy(seed_comparison, metric):
    paired, runs = seed_comparison.paired, seed_comparison.runs
    a, b = per_run_means(runs[:3], metric), per_run_means(runs[3:], metric)
    row = seed_comparison.summary.loc[metric]
    ref = seed_t_test(seed_comparison, metric)
    interval = ref.confidence_interval()
    assert row["a_mean"] == pytest.approx(a.mean()) and row["b_mean"] == pytest.approx(b.mean())
    assert row["mean_diff"] == pytest.approx(b.mean() - a.mean())
    assert row["ci95_low"] == pytest.approx(interval.low)
    assert row["ci95_high"] == pytest.approx(interval.high)
    assert row["p_value"] == pytest.approx(ref.pvalue)
    assert row["test"] == ("paired t" if paired else "Student t")
    assert bool(row["paired"]) is paired and row["seed_spread"] == "known"
    assert row["a_seeds"] == 3 and row["b_seeds"] == 3 and row["n_files"] == 5
    assert row["a_seed_std"] == pytest.approx(np.std(a, ddof=1))
    assert row["b_seed_std"] == pytest.approx(np.std(b, ddof=1))
    margin = {"pesq": 0.05, "sisdr": 0.3}[metric]  # the default margins
    assert row["margin"] == margin and bool(row["primary"]) is (metric == "pesq")


@SEED_STUDY
@pytest.mark.parametrize("metric", ["pesq", "sisdr"])
def test_power_and_equivalence_against_statsmodels(seed_comparison, metric):
    runs, row = seed_comparison.runs, seed_comparison.summary.loc[metric]
    a, b = per_run_means(runs[:3], metric), per_run_means(runs[3:], metric)
    margin = row["margin"]
    if seed_comparison.paired:
        sd = np.std(b - a, ddof=1)
        mde = TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8) * sd
        needed = TTestPower().solve_power(effect_size=margin / sd, alpha=0.05, power=0.8)
        lower = stats.ttest_1samp(b - a, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(b - a, margin, alternative="less").pvalue
        assert row["seed_corr"] == pytest.approx(np.corrcoef(a, b)[0, 1])
        assert row["sd_df"] == 2
    else:
        sd = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
        mde = TTestIndPower().solve_power(nobs1=3, ratio=1, alpha=0.05, power=0.8) * sd
        needed = TTestIndPower().solve_power(
            effect_size=margin / sd, nobs1=None, alpha=0.05, power=0.8, ratio=1
        )
        lower = stats.ttest_ind(b + margin, a, alternative="greater").pvalue
        upper = stats.ttest_ind(b - margin, a, alternative="less").pvalue
        assert np.isnan(row["seed_corr"]) and row["sd_df"] == 4
    assert row["mde"] == pytest.approx(mde, rel=1e-5)
    # seeds for 80 % power at the margin (not at the observed difference)
    assert row["seeds_needed"] == min(1000, max(2, math.ceil(needed)))
    assert row["tost_p"] == pytest.approx(max(lower, upper), rel=1e-9)
    ci90 = seed_t_test(seed_comparison, metric).confidence_interval(0.90)
    assert row["ci90_low"] == pytest.approx(ci90.low)
    assert row["ci90_high"] == pytest.approx(ci90.high)


@SEED_STUDY
@pytest.mark.parametrize("metric", ["pesq", "sisdr"])
def test_file_level_columns_use_seed_means_per_file(seed_comparison, metric):
    """Per-file values are seed means; the Wilcoxon test runs over files."""
    runs, row = seed_comparison.runs, seed_comparison.summary.loc[metric]
    a_file, b_file = file_means(runs[:3], metric), file_means(runs[3:], metric)
    assert row["wilcoxon_p_files"] == pytest.approx(stats.wilcoxon(b_file - a_file).pvalue)
    assert row["b_better_share"] == pytest.approx(np.mean(b_file > a_file))


@SEED_STUDY
def test_holm_families_of_one_contrast_and_verdicts(seed_comparison):
    summary = seed_comparison.summary
    p_values = {metric: seed_t_test(seed_comparison, metric).pvalue for metric in ("pesq", "sisdr")}
    # one contrast: the primary row is a family of one, sisdr the contrast's other family
    assert summary.loc["pesq", "p_holm"] == pytest.approx(p_values["pesq"])
    assert summary.loc["sisdr", "p_holm"] == pytest.approx(p_values["sisdr"])
    for metric, row in summary.iterrows():
        inside = -row["margin"] < row["ci90_low"] and row["ci90_high"] < row["margin"]
        better = "B better" if row["mean_diff"] > 0 else "A better"
        want = "equivalent" if inside else better if row["p_holm"] < 0.05 else "inconclusive"
        assert row["verdict"] == want, metric
    assert list(summary.index) == ["pesq", "sisdr"]  # the primary row first


@SEED_STUDY
def test_relative_figures_only_off_the_db_scale(seed_comparison):
    runs, summary = seed_comparison.runs, seed_comparison.summary
    a, b = per_run_means(runs[:3], "pesq").mean(), per_run_means(runs[3:], "pesq").mean()
    assert summary.loc["pesq", "rel_diff_of_means_pct"] == pytest.approx(100 * (b - a) / a)
    # dB metric: no relative figure anywhere in the summary, and the report says why
    sisdr = summary.loc["sisdr"]
    assert np.isnan(sisdr[["rel_diff_of_means_pct", "rel_diff_mean_pct", "rel_diff_median_pct"]]
                    .astype(float)).all()  # fmt: skip
    report = (seed_comparison.out / "report.md").read_text()
    assert "SSNR and SI-SDR: no relative figure on a dB scale (no meaningful zero)" in report
    assert report.splitlines()[2].startswith("- fixed vs original at 0 dB: ")


@SEED_STUDY
def test_per_file_tables_long_with_diff_and_wide_with_every_metric(seed_comparison):
    runs, out = seed_comparison.runs, seed_comparison.out
    a_file, b_file = file_means(runs[:3], "pesq"), file_means(runs[3:], "pesq")
    long = pd.read_csv(out / "relative_diff.csv")
    assert {"file", "metric", "a", "b", "rel_diff_pct", "diff"} <= set(long.columns)
    pesq = long[long["metric"] == "pesq"].set_index("file").loc[SEED_FILES]
    np.testing.assert_allclose(pesq["diff"], b_file - a_file)
    np.testing.assert_allclose(pesq["rel_diff_pct"], 100 * (b_file - a_file) / np.abs(a_file))
    wide = pd.read_csv(out / "per_file.csv").set_index("file").loc[SEED_FILES]
    np.testing.assert_allclose(wide["pesq_a"], a_file)
    np.testing.assert_allclose(wide["pesq_b"], b_file)
    np.testing.assert_allclose(wide["pesq_diff"], b_file - a_file)
    np.testing.assert_allclose(wide["pesq_rel_diff_pct"], 100 * (b_file - a_file) / a_file)
    assert {"sisdr_a", "sisdr_b", "sisdr_diff", "sisdr_rel_diff_pct"} <= set(wide.columns)
    summary = seed_comparison.summary
    assert "wilcoxon_p" not in summary.columns and "seed_verdict" not in summary.columns


@SEED_STUDY
def test_seed_means_csv_has_one_row_per_run(seed_comparison):
    """seed_means.csv: one row per run, its mean over the compared files."""
    runs = seed_comparison.runs
    seeds = pd.read_csv(seed_comparison.out / "seed_means.csv")
    assert len(seeds) == len(runs) and set(seeds["gain_db"]) == {0.0}
    for variant, group in (("original", runs[:3]), ("fixed", runs[3:])):
        rows = seeds[seeds["variant"] == variant].sort_values("seed")
        np.testing.assert_allclose(rows["pesq"], per_run_means(group, "pesq"))
        np.testing.assert_allclose(rows["sisdr"], per_run_means(group, "sisdr"))


def test_welch_option_against_scipy(tmp_path):
    runs = seed_study(tmp_path, b_seeds=(5, 6, 7))
    comparison = compare_runs(load_runs(runs)[0], unpaired="welch")
    row = comparison.summary.set_index("metric").loc["pesq"]
    ref = stats.ttest_ind(per_run_means(runs[3:], "pesq"), per_run_means(runs[:3], "pesq"),
                          equal_var=False)  # fmt: skip
    assert row["test"] == "Welch t" and row["p_value"] == pytest.approx(ref.pvalue)
    assert row["ci95_low"] == pytest.approx(ref.confidence_interval().low)


def test_one_seed_gives_nan_and_says_so(tmp_path, capsys):
    a = write_run(tmp_path, "original", 0, {"pesq": [2.0, 1.0, 4.0, 2.5]})
    b = write_run(tmp_path, "fixed", 0, {"pesq": [3.0, 1.5, 3.0, 2.5]})
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--wandb", "disabled"]) == 0
    printed = capsys.readouterr().out
    assert "seed spread UNKNOWN" in printed and "seed spread unknown: 1 + 1 seeds" in printed
    row = pd.read_csv(out / "summary.csv").iloc[0]
    assert row["mean_diff"] == pytest.approx(0.125)  # (10 - 9.5) / 4
    for column in ("ci95_low", "ci95_high", "p_value", "p_holm", "mde", "seeds_needed"):
        assert np.isnan(row[column]), column
    assert row["rel_diff_median_pct"] == pytest.approx(25.0)  # median of 50, 50, -25, 0
    assert row["wilcoxon_p_files"] == pytest.approx(stats.wilcoxon([1.0, 0.5, -1.0]).pvalue)
    report = (out / "report.md").read_text()
    assert "**Seed spread unknown: 1 + 1 seeds" in report
    assert {p.name for p in out.glob("*.png")} == {
        "per_file_diff.png",
        "per_file_diff_distribution.png",
        "seed_means.png",
    }


def test_demo_like_cli_headline(tmp_path, capsys):
    runs = seed_study(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "--wandb", "disabled"]) == 0
    printed = capsys.readouterr().out
    assert "3+3 seeds, seed spread known" in printed and "95% interval" in printed
    row = pd.read_csv(out / "summary.csv").set_index("metric").loc["pesq"]
    assert f"[{row['ci95_low']:.3f}, {row['ci95_high']:.3f}]" in printed
    assert "pesq *" in printed and "verdict" in printed and "B better" in printed
    assert "rel %" not in printed and "Wilcoxon" not in printed  # not in the headline
    assert "fixed vs original at 0 dB: " in printed  # the answer sentence


def test_variants_named_by_what_differs(tmp_path):
    runs = [
        write_run(tmp_path / "x", "original", s, {"pesq": [2.0 + s, 2, 2, 2]},
                  extra="model:\n  arch: dfn3\n")
        for s in (0, 1)
    ] + [
        write_run(tmp_path / "y", "fixed", s, {"pesq": [2.5 + s, 2, 2, 2]},
                  extra="model:\n  arch: dfn2\n")
        for s in (0, 1)
    ]  # fmt: skip
    comparison = compare(runs)
    assert comparison.variants == ["original/dfn3", "fixed/dfn2"]
    assert comparison.definitions["fixed/dfn2"] == {
        "norm": "fixed", "model": "dfn2", "training gains": "0 dB", "eval dataset": "mini"
    }  # fmt: skip
    first = comparison.summary.iloc[0]
    assert first["a_seeds"] == 2 and first["paired"]
    # same norm, different training gains: separate variants; a missing gains_db means [0]
    plain = write_run(tmp_path / "g", "fixed", 0, {"pesq": [2.0] * 4})
    zero = write_run(tmp_path / "g", "fixed", 1, {"pesq": [2.1] * 4},
                     extra="data:\n  gains_db: [0]\n")  # fmt: skip
    augmented = write_run(tmp_path / "h", "fixed", 0, {"pesq": [2.2] * 4},
                          extra="data:\n  gains_db: [-6, 0, 6]\n")  # fmt: skip
    comparison = compare([plain, zero, augmented])
    assert comparison.variants == ["train gains 0 dB", "train gains -6,0,6 dB"]
    assert comparison.summary.iloc[0]["a_seeds"] == 2


def test_labels_name_variants_and_upstream_summary(tmp_path):
    runs = seed_study(tmp_path)
    labels = ["base"] * 3 + ["new"] * 3
    comparison = compare(runs, labels=labels)
    assert comparison.variants == ["base", "new"]
    assert [r.label for r in comparison.runs][:2] == ["base-seed0", "base-seed1"]
    with pytest.raises(UserError, match="differ in more than the seed"):
        load_runs(runs, labels=["same"] * 6)
    # an upstream evaluation: no Hydra config, norm and label in summary.json
    upstream = write_csv(tmp_path / "DeepFilterNet3" / "eval" / "mini" / "metrics.csv",
                         {"pesq": [2.0] * 5}, SEED_FILES)  # fmt: skip
    (upstream.parent / "summary.json").write_text(
        json.dumps({"norm": "original", "label": "upstream-DeepFilterNet3"})
    )
    comparison = compare([upstream.parent.parent.parent, *runs[3:]])
    assert comparison.variants == ["upstream-DeepFilterNet3", "fixed"]
    assert comparison.baseline == "upstream-DeepFilterNet3"


def write_gains(root: Path, gains: dict[str, float], norm: str, seed: int, shift: float) -> Path:
    for folder, gain in gains.items():
        scores = {"pesq": [2.0 + shift + gain / 100 + 0.01 * seed * k for k in range(4)]}
        run = write_run(root, norm, seed, scores, folder=folder, gain=gain)
    return run


def test_input_gains_are_conditions(tmp_path, capsys):
    gains = {"mini": 0.0, "mini@-20dB": -20.0, "mini@+10dB": 10.0}
    runs = [write_gains(tmp_path, gains, n, s, 0.1 * (n == "fixed")) for n in ("original", "fixed")
            for s in (0, 1)]  # fmt: skip
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "--wandb", "disabled"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["gain_db"]) == [-20.0, 0.0, 10.0]
    for gain in (-20.0, 0.0, 10.0):
        row = summary[summary["gain_db"] == gain].iloc[0]
        assert row["a_mean"] == pytest.approx(2.0 + gain / 100 + 0.01 * 0.5 * 1.5)
        assert row["mean_diff"] == pytest.approx(0.1)
    assert (out / "robustness.png").is_file() and (out / "per_file_diff@-20dB.png").is_file()
    assert set(pd.read_csv(out / "per_file.csv")["gain_db"]) == {-20.0, 0.0, 10.0}
    # one gain picked; a gain one run lacks is refused in one line, nothing written
    assert main(["compare", *map(str, runs), "--gain-db", "-20", "--out", str(tmp_path / "one"),
                 "--wandb", "disabled"]) == 0  # fmt: skip
    assert set(pd.read_csv(tmp_path / "one" / "summary.csv")["gain_db"]) == {-20.0}
    capsys.readouterr()
    assert main(["compare", *map(str, runs), "--gain-db", "6", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not evaluated at input gain 6 dB" in err
    assert not (tmp_path / "no").exists()
    # a gain evaluated for some runs only is left out and listed
    write_gains(tmp_path, {"mini@+20dB": 20.0}, "original", 0, 0.0)
    comparison = compare(runs)
    assert comparison.gains == [-20.0, 0.0, 10.0]
    assert comparison.left_out_gains == {str(runs[0]): [20.0]}


def test_csvs_at_different_gains_are_refused(tmp_path, capsys):
    a = write_csv(tmp_path / "a" / "metrics.csv", {"pesq": [1.0] * 4})
    b = write_csv(tmp_path / "b" / "metrics.csv", {"pesq": [1.2] * 4})
    (a.parent / "summary.json").write_text(json.dumps({"input_gain_db": 0.0}))
    (b.parent / "summary.json").write_text(json.dumps({"input_gain_db": -20.0}))
    out = tmp_path / "out"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different input gains" in err and str(b) in err
    assert not out.exists()


def test_comparison_is_logged_to_wandb_offline(tmp_path):
    from wandb_offline import read_offline_run

    runs = seed_study(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0  # WANDB_MODE=offline
    summary = pd.read_csv(out / "summary.csv").set_index("metric")
    logged = read_offline_run(out / "wandb")
    assert logged.run["job_type"] == "compare"
    for key in ("mean_diff", "ci95_low", "ci95_high", "p_value", "mde", "tost_p", "ci90_low"):
        logged_value = logged.summary[f"compare/fixed_vs_original/pesq/{key}"]
        assert logged_value == pytest.approx(summary.loc["pesq", key])
    assert logged.summary["compare/fixed_vs_original/pesq/seed_spread_known"] is True
    assert (
        logged.summary["compare/fixed_vs_original/pesq/verdict"] == summary.loc["pesq", "verdict"]
    )
    assert logged.summary["compare/fixed_vs_original/pesq/primary"] is True
    assert logged.summary["compare/per_file"]["nrows"] == 5
    assert logged.summary["compare/per_file_diff"]["_type"] == "image-file"


def test_two_folders_at_one_gain_are_refused(tmp_path):
    run = write_run(tmp_path, "fixed", 0, {"pesq": [1.0] * 4}, gain=0.0)
    write_run(tmp_path, "fixed", 0, {"pesq": [1.0] * 4}, folder="mini@+5dB", gain=0.0)
    other = write_run(tmp_path, "original", 0, {"pesq": [1.0] * 4})
    with pytest.raises(
        UserError, match=r"two evaluations at input gain 0 dB \(mini and mini@\+5dB\)"
    ):
        load_runs([other, run])


def test_same_named_csvs_stay_apart(tmp_path):
    a = write_csv(tmp_path / "x" / "run" / "metrics.csv", {"pesq": [1.0] * 4})
    b = write_csv(tmp_path / "y" / "run" / "metrics.csv", {"pesq": [1.5] * 4})
    comparison = compare([a, b])
    assert comparison.variants == ["run", "run#2"]
    assert comparison.summary.iloc[0]["mean_diff"] == pytest.approx(0.5)


def _tree_hashes(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([0, 0, 3, 4], "{0}: given twice"),  # R1 R1 R2 R3: not two seeds
        ([0, 0], "{0}: given twice"),  # a run against itself
        ([0, "{0}/eval/mini/metrics.csv", 3], "{0}/eval/mini/metrics.csv: the same run as {0}"),
        ([0, "copy", 3, 4], "two runs of variant original with seed 0"),  # a copy: same seed
    ],
    ids=["twice", "itself", "dir-and-its-csv", "same-variant-and-seed"],
)
def test_a_run_counted_twice_is_refused(tmp_path, capsys, given, expected):
    runs = seed_study(tmp_path / "runs")
    copy = tmp_path / "copies" / "original-seed0"
    copy.parent.mkdir()
    import shutil

    shutil.copytree(runs[0], copy)
    argv = [str(copy) if g == "copy" else str(runs[g]) if isinstance(g, int) else g.format(runs[0])
            for g in given]  # fmt: skip
    before = _tree_hashes(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", *argv, "--out", str(out), "--wandb", "disabled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected.format(runs[0]) in err[0]
    assert not out.exists() and _tree_hashes(tmp_path) == before


def test_header_counts_the_files_compared(tmp_path, capsys):
    """A file that failed in one run is not compared for that metric: the header says so."""
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5], "stoi": [0.9] * 4})
    b = write_csv(tmp_path / "b.csv", {"pesq": [3.0, math.nan, 3.0, 2.5], "stoi": [0.8] * 4},
                  errors=["", "NoUtterancesError", "", ""])  # fmt: skip
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--wandb", "disabled"]) == 0
    assert "3-4 files (per metric)" in capsys.readouterr().out


def test_a_file_failed_in_one_run_leaves_every_runs_mean(tmp_path):
    """The failed file is left out of A's mean too, not only B's (mutant: 0.167 -> 0.383)."""
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5]})
    b = write_csv(tmp_path / "b.csv", {"pesq": [3.0, math.nan, 3.0, 3.0]},
                  errors=["", "failed", "", ""])  # fmt: skip
    comparison = compare([a, b])
    row = comparison.summary.iloc[0]
    assert row["a_mean"] == pytest.approx((2.0 + 4.0 + 2.5) / 3)
    assert row["mean_diff"] == pytest.approx((3.0 + 3.0 + 3.0) / 3 - (2.0 + 4.0 + 2.5) / 3)
    means = comparison.run_means.set_index("label")["pesq"]
    assert means["a"] == pytest.approx(8.5 / 3) and means["b"] == pytest.approx(3.0)


def test_a_run_with_an_extra_file_compares_the_shared_ones(tmp_path):
    """The first run has a file the second lacks: n_files counts the shared files, only_in
    lists the extra one (no KeyError)."""
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5, 9.0]},
                  files=[*FILES, "f5.wav"])  # fmt: skip
    b = write_csv(tmp_path / "b.csv", {"pesq": [3.0, 1.0, 3.0, 2.5]})
    comparison = compare([a, b])
    assert comparison.summary.iloc[0]["n_files"] == 4
    assert comparison.only_in == {"f5.wav": ["a"]}
    assert comparison.summary.iloc[0]["a_mean"] == pytest.approx(9.5 / 4)


def test_one_seed_each_is_student_and_unpaired(tmp_path):
    a = write_run(tmp_path, "original", 0, {"pesq": [2.0, 1.0, 4.0, 2.5]})
    b = write_run(tmp_path, "fixed", 0, {"pesq": [3.0, 1.5, 3.0, 2.5]})
    row = compare([a, b]).summary.iloc[0]
    assert row["test"] == "Student t" and not row["paired"]


def test_b_better_share_counts_ties_as_not_better_and_db_metrics_have_no_relative(tmp_path):
    a = write_csv(tmp_path / "a.csv", {"pesq": [1.0, 2.0, 3.0, 4.0], "ssnr": [1.0, 2.0, 3.0, 4.0]})
    b = write_csv(tmp_path / "b.csv", {"pesq": [1.0, 3.0, 2.0, 4.0], "ssnr": [2.0, 3.0, 4.0, 5.0]})
    summary = compare([a, b]).summary.set_index("metric")
    assert summary.loc["pesq", "b_better_share"] == 0.25  # one better, one worse, two ties
    assert summary.loc["ssnr", "b_better_share"] == 1.0
    for column in ("rel_diff_of_means_pct", "rel_diff_mean_pct", "rel_diff_median_pct"):
        assert np.isnan(summary.loc["ssnr", column]), column
        assert np.isfinite(summary.loc["pesq", column]), column


def test_keys_outside_the_variant_key_and_their_children_form_one_variant(tmp_path):
    """logger.*, hydra.*, callbacks.media.* differ between seeds: still one variant."""
    runs = [
        write_run(tmp_path / "a", "original", seed, {"pesq": [2.0 + seed, 2, 2, 2]},
                  extra=f"logger:\n  wandb:\n    project: p{seed}\nhydra:\n  run:\n    dir: d{seed}\n"
                        f"callbacks:\n  media:\n    every: {seed + 1}\n")
        for seed in (0, 1)
    ] + [write_run(tmp_path / "b", "fixed", seed, {"pesq": [2.5 + seed, 2, 2, 2]}) for seed in (0, 1)]  # fmt: skip
    comparison = compare(runs)
    assert comparison.variants == ["original", "fixed"]
    assert comparison.summary.iloc[0]["a_seeds"] == 2


def test_robustness_band_uses_count_minus_one_degrees_of_freedom():
    from dfablate.comparison.report import _t_half_width

    half = _t_half_width(np.array([1.0, 2.0, 1.0]), np.array([3, 2, 1]))
    assert half[0] == pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3))
    assert half[1] == pytest.approx(stats.t.ppf(0.975, 1) * 2.0 / np.sqrt(2))
    assert np.isnan(half[2])


def test_a_word_in_a_metrics_csv_is_named_not_taken_for_a_scoring_error(tmp_path, capsys):
    a = write_csv(tmp_path / "a.csv", {"pesq": [2.0, 1.0, 4.0, 2.5]})
    b = tmp_path / "b.csv"
    b.write_text("file,pesq,error\nf1.wav,3.0,\nf2.wav,abc,\nf3.wav,nan,failed\nf4.wav,2.0,\n")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {b}: pesq of f2.wav is 'abc', not a number"]
    assert not (tmp_path / "o").exists()


def _holm_by_hand(p: list[float]) -> list[float]:
    """Holm's step-down adjustment written out: sort, multiply by (m - rank), running max."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def gain_study(root: Path) -> list[Path]:
    """original, fixed and fixed_debiased, seeds 0-2, at 0 and -20 dB, pesq and sisdr."""
    rng = np.random.default_rng(7)
    runs = []
    for k, norm in enumerate(("original", "fixed", "fixed_debiased")):
        for seed in range(3):
            run = None
            for folder, gain in (("mini", 0.0), ("mini@-20dB", -20.0)):
                noise = rng.normal(0, 0.03, 2)
                scores = {
                    "pesq": list(2.0 + 0.04 * k * (1 + (gain < 0)) + noise[0] + 0.01 * seed
                                 + np.arange(4) * 0.1),
                    "sisdr": list(5.0 + 0.3 * k + 10 * noise[1] + np.arange(4)),
                }  # fmt: skip
                run = write_run(root, norm, seed, scores, folder=folder, gain=gain)
            runs.append(run)
    return runs


GAIN_STUDY = pytest.mark.xdist_group("compare_gain_study")  # one process builds it once


@dataclass(frozen=True)
class GainComparison:
    """`dfablate compare` run once on `gain_study` with two contrasts, a sisdr margin and a
    primary metric at 0 dB."""

    out: Path
    summary: pd.DataFrame  # summary.csv as written
    means: pd.DataFrame  # seed_means.csv


@pytest.fixture(scope="module")
def gain_comparison(tmp_path_factory) -> GainComparison:
    root = tmp_path_factory.mktemp("gain-study")
    runs = gain_study(root)
    out = root / "cmp"
    args = ["compare", *map(str, runs), "--out", str(out), "--wandb", "disabled",
            "--contrast", "fixed:original", "--contrast", "fixed_debiased:fixed",
            "--margin", "sisdr=0.5", "--primary", "pesq@0"]  # fmt: skip
    assert main(args) == 0
    return GainComparison(
        out, pd.read_csv(out / "summary.csv"), pd.read_csv(out / "seed_means.csv")
    )


@GAIN_STUDY
def test_contrasts_in_the_order_given_each_led_by_its_primary_row(gain_comparison):
    summary = gain_comparison.summary
    assert list(dict.fromkeys(zip(summary["b"], summary["a"], strict=True))) == [
        ("fixed", "original"), ("fixed_debiased", "fixed")
    ]  # fmt: skip
    primary = summary[summary["primary"]]
    assert len(primary) == 2 and set(primary["metric"]) == {"pesq"}
    assert set(primary["gain_db"]) == {0.0}
    # the primary row is the first of its contrast
    for (_, _), group in summary.groupby(["b", "a"], sort=False):
        assert bool(group.iloc[0]["primary"]) and not group.iloc[1:]["primary"].any()
    assert (summary.loc[summary["metric"] == "sisdr", "margin"] == 0.5).all()


@GAIN_STUDY
def test_two_holm_families(gain_comparison):
    summary = gain_comparison.summary
    primary = summary[summary["primary"]]
    # family 1: the primary rows across contrasts
    np.testing.assert_allclose(primary["p_holm"], _holm_by_hand(list(primary["p_value"])))
    # family 2: every other row of one contrast
    for _, group in summary[~summary["primary"]].groupby(["b", "a"]):
        assert len(group) == 3
        np.testing.assert_allclose(group["p_holm"], _holm_by_hand(list(group["p_value"])))


@GAIN_STUDY
def test_power_pools_the_seed_difference_sd_over_gains(gain_comparison):
    """mde and seeds needed from the per-seed difference SD pooled over both gains."""
    summary, means = gain_comparison.summary, gain_comparison.means
    diffs = []
    for gain in (0.0, -20.0):
        by = {v: means[(means["variant"] == v) & (means["gain_db"] == gain)].sort_values("seed")
              for v in ("original", "fixed")}  # fmt: skip
        diffs.append(by["fixed"]["pesq"].to_numpy() - by["original"]["pesq"].to_numpy())
    pooled = np.sqrt(np.mean([np.var(d, ddof=1) for d in diffs]))
    row = summary[(summary["b"] == "fixed") & (summary["metric"] == "pesq")].iloc[0]
    assert row["sd_df"] == 4
    assert row["mde"] == pytest.approx(
        TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8) * pooled, rel=1e-5
    )
    needed = TTestPower().solve_power(effect_size=0.05 / pooled, alpha=0.05, power=0.8)
    assert row["seeds_needed"] == min(1000, max(2, math.ceil(needed)))


@GAIN_STUDY
def test_interaction_is_a_paired_t_of_the_deltas_against_0db(gain_comparison):
    """interaction.csv: per-run deltas against 0 dB, B's mean delta - A's, paired t."""
    inter = pd.read_csv(gain_comparison.out / "interaction.csv")
    assert list(inter.columns[:11]) == ["variant", "metric", "gain_db", "ref_gain_db", "a_delta",
                                        "b_delta", "diff", "ci95_low", "ci95_high", "p_value",
                                        "test"]  # fmt: skip
    got = inter[(inter["variant"] == "fixed") & (inter["metric"] == "pesq")].iloc[0]
    means, delta = gain_comparison.means, {}
    for v in ("original", "fixed"):
        rows = means[means["variant"] == v]
        at = {g: rows[rows["gain_db"] == g].sort_values("seed")["pesq"].to_numpy()
              for g in (0.0, -20.0)}  # fmt: skip
        delta[v] = at[-20.0] - at[0.0]
    ref = stats.ttest_rel(delta["fixed"], delta["original"])
    assert got["ref_gain_db"] == 0.0 and got["gain_db"] == -20.0 and got["test"] == "paired t"
    assert got["diff"] == pytest.approx(delta["fixed"].mean() - delta["original"].mean())
    assert got["p_value"] == pytest.approx(ref.pvalue)
    assert got["ci95_low"] == pytest.approx(ref.confidence_interval().low)


@GAIN_STUDY
def test_robustness_figures_and_a_report_line_per_contrast(gain_comparison):
    out = gain_comparison.out
    figures = {p.name for p in out.glob("robustness*.png")}
    assert figures == {"robustness.png", "robustness_means.png"}
    assert (out / "per_file_diff_fixed_debiased_vs_fixed@-20dB.png").is_file()
    report = (out / "report.md").read_text()
    assert "- fixed vs original at 0 dB: " in report
    assert "- fixed_debiased vs fixed at 0 dB: " in report
    assert "## Per file (appendix)" in report


def test_design_options_are_checked_in_one_line(tmp_path, capsys):
    runs = seed_study(tmp_path, b_seeds=(5, 6, 7))
    for bad, word in ((["--primary", "pesq"], "--primary"), (["--margin", "pesq=-1"], "--margin"),
                      (["--contrast", "fixed"], "--contrast"),
                      (["--contrast", "nope:original"], "no variant nope"),
                      (["--pairing", "paired"], "same seeds")):  # fmt: skip
        out = tmp_path / "o"
        assert main(["compare", *map(str, runs), "--out", str(out), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and word in err, err
        assert not out.exists()
    # no primary in the comparison: one warning, no row primary
    with pytest.warns(UserWarning, match="primary endpoint stoi@0"):
        comparison = compare_runs(load_runs(runs)[0], design=parse_design("stoi@0"))
    assert not comparison.summary["primary"].any()
    # unpaired on request even with the same seeds
    same = seed_study(tmp_path / "same")
    unpaired = compare_runs(load_runs(same)[0], design=parse_design(pairing="unpaired"))
    assert set(unpaired.summary["test"]) == {"Student t"}


def test_old_convention_gains_are_refused_in_one_line(tmp_path, capsys):
    runs = [write_gains(tmp_path, {"mini": 0.0, "mini@-20dB": -20.0}, n, s, 0.0)
            for n in ("original", "fixed") for s in (0, 1)]  # fmt: skip
    old = runs[1] / "eval" / "mini@-20dB" / "summary.json"
    old.write_text(json.dumps({"input_gain_db": -20.0}))  # before pipeline version 3
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "original-seed1@-20dB" in err
    assert f"dfablate evaluate run={runs[1]} input_gain_db=-20" in err
    assert not out.exists()
    # at 0 dB both conventions coincide; a bare CSV is never refused for its convention
    assert main(["compare", *map(str, runs), "--gain-db", "0", "--out", str(out),
                 "--wandb", "disabled"]) == 0  # fmt: skip


def test_inconclusive_answer_gives_the_seeds_and_the_extend_command(tmp_path, capsys):
    means = {("original", 0): 2.0, ("original", 1): 2.1, ("fixed", 0): 2.05, ("fixed", 1): 2.1}
    runs = [
        write_run(tmp_path, norm, seed, {"pesq": [m - 0.1, m, m + 0.1, m]},
                  extra="name: norm_ablation\n")
        for (norm, seed), m in means.items()
    ]  # fmt: skip
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out), "--wandb", "disabled"]) == 0
    row = pd.read_csv(out / "summary.csv").iloc[0]
    assert row["verdict"] == "inconclusive" and bool(row["primary"])
    needed = int(row["seeds_needed"])
    sd = np.std([0.05, 0.0], ddof=1)  # per-seed differences
    assert needed == math.ceil(
        TTestPower().solve_power(effect_size=0.05 / sd, alpha=0.05, power=0.8)
    )
    sentence = (out / "report.md").read_text().splitlines()[2]
    assert sentence.startswith("- fixed vs original at 0 dB: inconclusive at ±0.05 PESQ")
    assert f"`dfablate ablate experiment=norm_ablation 'seed=range(0,{needed})'`" in sentence
    assert f"{needed} seeds per variant" in " ".join(capsys.readouterr().out.split())
