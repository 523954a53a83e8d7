"""The 2x2 normalisation study end to end on CPU (tiny model, mini corpus, 2 steps a run):
`norm_ablation` and `norm_ablation_widegain` compose and run, and a pilot is extended with
more seeds without touching the runs it already has."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from dfablate.cli import main

NORMS = ("original", "fixed", "original_debiased", "fixed_debiased")
CONTRASTS = [
    ("fixed", "original"),
    ("fixed_debiased", "original_debiased"),
    ("original_debiased", "original"),
    ("fixed_debiased", "fixed"),
]
pytestmark = pytest.mark.xdist_group("norm_ablation")  # one process builds the pilot once

SMOKE = ["data=mini", "model=dfn3_tiny", "trainer=cpu", "trainer.max_steps=2",
         "data.batch_size=8", "data.num_workers=0", "ablate.evaluate.max_files=2",
         "logger=none", "num_threads=1", "validate_first=false", "val_metric_utterances=0",
         "callbacks.media=null", "callbacks.progress_bar=null"]  # fmt: skip


@dataclass(frozen=True)
class Pilot:
    args: list[str]  # the ablate command without its seeds
    experiment_dir: Path


@pytest.fixture(scope="module")
def pilot(tmp_path_factory) -> Pilot:
    """`experiment=norm_ablation` with seeds 0-1, run once for the tests of this module."""
    root = tmp_path_factory.mktemp("norm-ablation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DFABLATE_CACHE", str(root / "cache"))
        patch.setenv("WANDB_MODE", "disabled")  # no W&B run per evaluation: faster
        args = ["ablate", "experiment=norm_ablation", *SMOKE, f"output_root={root / 'out'}"]
        assert main([*args, "seed=range(0,2)"]) == 0
    return Pilot(args, root / "out" / "norm_ablation")


def _run_files(experiment_dir: Path) -> dict[str, str]:
    """sha1 of every file in every run folder (the compare folder and Hydra's sweep file are
    not runs)."""
    return {
        str(path.relative_to(experiment_dir)): hashlib.sha1(path.read_bytes()).hexdigest()
        for run in experiment_dir.glob("*-seed*")
        for path in sorted(run.rglob("*"))
        if path.is_file()
    }


def _check_study(compare_dir: Path, seeds: int) -> pd.DataFrame:
    summary = pd.read_csv(compare_dir / "summary.csv")
    assert list(dict.fromkeys(zip(summary["b"], summary["a"], strict=True))) == CONTRASTS
    assert sorted(summary["gain_db"].unique()) == [-20.0, -10.0, 0.0, 10.0]
    primary = summary[summary["primary"]]
    assert len(primary) == 4 and set(primary["metric"]) == {"pesq"}
    assert (primary["gain_db"] == 0.0).all()
    assert (summary["a_seeds"] == seeds).all() and (summary["b_seeds"] == seeds).all()
    assert set(summary["verdict"]) <= {"equivalent", "B better", "A better", "inconclusive"}
    interaction = pd.read_csv(compare_dir / "interaction.csv")
    assert set(interaction["gain_db"]) == {-20.0, -10.0, 10.0}
    assert (interaction["ref_gain_db"] == 0.0).all()
    assert (compare_dir / "robustness.png").is_file()
    assert (compare_dir / "robustness_means.png").is_file()
    report = (compare_dir / "report.md").read_text().splitlines()
    assert [line.split(":")[0] for line in report[2:6]] == [
        f"- {b} vs {a} at 0 dB" for b, a in CONTRASTS
    ]
    return summary


@pytest.mark.slow
def test_norm_ablation_end_to_end(pilot):
    _check_study(pilot.experiment_dir / "compare", seeds=2)
    assert len(list(pilot.experiment_dir.glob("*-seed*"))) == 8


@pytest.mark.slow
def test_norm_ablation_pilot_extended_with_a_seed(pilot, monkeypatch, capfd):
    monkeypatch.setenv("DFABLATE_CACHE", str(pilot.experiment_dir.parent.parent / "cache"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    before = _run_files(pilot.experiment_dir)
    assert len({p.split("/")[0] for p in before}) == 8
    capfd.readouterr()
    assert main([*pilot.args, "seed=range(0,3)"]) == 0  # extend the pilot by one seed
    captured = capfd.readouterr()
    printed, words = captured.out, " ".join((captured.out + captured.err).split())
    assert f"norm={','.join(NORMS)} seed=2 resume=true" in words  # only the new seed trains
    assert "seed=0" not in words and "seed=1" not in words
    assert "32 evaluations (run x gain) already done, skipped" in printed
    after = _run_files(pilot.experiment_dir)
    assert {k: after[k] for k in before} == before  # the pilot's runs are byte-for-byte untouched
    assert len({p.split("/")[0] for p in after}) == 12
    _check_study(pilot.experiment_dir / "compare", seeds=3)  # compared again


@pytest.mark.slow
def test_norm_ablation_widegain_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DFABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "outputs"
    args = ["ablate", "experiment=norm_ablation_widegain", *SMOKE, "seed=range(0,2)",
            f"output_root={out}"]  # fmt: skip
    assert main(args) == 0
    experiment_dir = out / "norm_ablation_widegain"
    config = (experiment_dir / "fixed_debiased-seed1" / ".hydra" / "config.yaml").read_text()
    assert "gains_db:\n  - -25\n  - -20\n  - -15\n  - -10\n  - -5\n  - 0\n  - 5\n  - 10" in config
    summary = _check_study(experiment_dir / "compare", seeds=2)
    assert (summary["margin"][summary["metric"] == "pesq"] == 0.05).all()
