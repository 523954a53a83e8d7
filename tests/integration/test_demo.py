"""The demo's recipe (configs/experiment/demo.yaml) trains models that enhance: one of its runs,
with the recipe unchanged, beats the unprocessed input on fewer test files."""

from __future__ import annotations

import json

import pytest

from dfablate.cli import main
from dfablate.config import compose_config

EVALUATED_FILES = 10


def test_the_demo_keeps_its_comparison_machinery():
    """Two variants, two or more seeds, several input gains among them 0 dB."""
    cfg = compose_config("train", ["experiment=demo"])
    params = cfg.hydra.sweeper.params
    assert len(params.norm.split(",")) == 2 and len(params.seed.split(",")) >= 2
    gains = list(cfg.ablate.evaluate.input_gains_db)
    assert 0 in gains and len(gains) >= 2


@pytest.mark.slow
def test_the_demo_recipe_learns(tmp_path, mini_cache, one_torch_thread):
    """A run of the demo recipe (about 270 CPU steps; a few minutes on one core) lifts the
    mean SI-SDR at 0 dB above the noisy input's on an evenly spread subset of the test set."""
    out = tmp_path / "runs"
    train = ["train", "experiment=demo", "norm=original", "seed=0", "logger=csv",
             "callbacks.progress_bar=null", f"output_root={out}"]  # fmt: skip
    assert main(train) == 0
    run_dir = out / "demo" / "original-seed0"
    evaluate = ["evaluate", f"run={run_dir}", f"max_files={EVALUATED_FILES}", "num_threads=1",
                "progress=false", f"noisy_cache_dir={tmp_path / 'noisy'}"]  # fmt: skip
    assert main(evaluate) == 0
    summary_path = run_dir / "eval" / f"mini-{EVALUATED_FILES}files" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["n_files"] == EVALUATED_FILES and summary["n_failed"] == 0
    assert summary["mean"]["sisdr"] > summary["noisy"]["sisdr"], summary
