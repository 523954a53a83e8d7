"""`train` writes run.json, and RunRecord.from_dir reads a current run folder from it: the same
record as Hydra's `.hydra/` gives, from the run folder or from an evaluation folder inside it."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from dfablate.records import RUN_FILE, RunRecord, variant_key_of


def test_train_writes_run_json_and_from_dir_reads_it(short_run, tmp_path):
    run_dir = short_run.run_dir
    written = json.loads((run_dir / RUN_FILE).read_text())
    record = RunRecord.from_dir(run_dir)
    assert record == RunRecord.from_hydra(run_dir)  # run.json says what .hydra/ says
    assert (record.seed, record.norm, record.arch) == (43, "original", "dfn3")
    assert written["variant_key"] == record.variant_key
    config = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    assert record.variant_key == variant_key_of(config)
    assert written["config"] == config and written["choices"] == record.choices
    assert (written["seed"], written["norm"], written["arch"]) == (43, "original", "dfn3")
    assert (
        written["variant_key"]["norm.name"] == "original" and "seed" not in written["variant_key"]
    )
    assert "system" in config and not any(k.startswith("system") for k in record.variant_key)
    assert record.choices["model"] == "dfn3_tiny"
    assert record.checkpoints.keys() >= {"last"}
    assert RunRecord.from_dir(run_dir / "eval" / "anything") == record  # from inside the run
