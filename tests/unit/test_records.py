"""The records between stages: RunRecord read from every kind of run folder (run.json, an old
folder with only Hydra's record, a folder with only summary.json, a `<norm>-seed<N>` name),
EvalRecord's summary.json keys, the variant-key rule and W&B's `follow_run`."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest
from helpers import DATA_DIR
from omegaconf import OmegaConf

from dfablate.errors import UserError
from dfablate.records import (
    NOT_VARIANT_KEYS,
    RUN_FILE,
    EvalRecord,
    RunRecord,
    variant_key_of,
)
from dfablate.runs import run_checkpoint
from dfablate.wandb_settings import follow_run

OLD_RUN = DATA_DIR / "old_run_dfn3"
SUMMARY_KEYS = {"norm", "seed", "checkpoint", "checkpoint_sha1", "experiment", "arch", "dataset",
                "input_gain_db", "pipeline_version", "scored_at", "mean", "noisy", "complete"}  # fmt: skip


def test_an_old_run_folder_without_run_json_reads_from_its_hydra_record():
    assert not (OLD_RUN / RUN_FILE).exists()
    record = RunRecord.from_dir(OLD_RUN)
    assert record.has_config and record.run_dir == OLD_RUN
    assert (record.seed, record.norm, record.arch, record.experiment) == (
        43,
        "original",
        "dfn3",
        "old",
    )
    assert record.choices["model"] == "dfn3_tiny" and record.choices["data"] == "mini"
    config = OmegaConf.to_container(OmegaConf.load(OLD_RUN / ".hydra" / "config.yaml"))
    assert record.variant_key == variant_key_of(config)
    assert record.variant_key["norm.name"] == "original"
    assert "seed" not in record.variant_key and "output_root" not in record.variant_key
    assert record.checkpoints == {"last": OLD_RUN / "checkpoints" / "last.ckpt"}
    assert run_checkpoint(record.run_dir, "best") == OLD_RUN / "checkpoints" / "last.ckpt"


def test_an_evaluation_folder_inside_a_run_reads_the_runs_record(tmp_path):
    run = tmp_path / "anything"
    shutil.copytree(OLD_RUN / ".hydra", run / ".hydra")
    (run / "eval" / "mini").mkdir(parents=True)
    record = RunRecord.from_dir(run / "eval" / "mini")
    assert record.run_dir == run and record.seed == 43 and record.has_config


def test_run_json_is_read_first_and_round_trips(tmp_path):
    run = tmp_path / "fixed-seed7"
    shutil.copytree(OLD_RUN / ".hydra", run / ".hydra")
    config = OmegaConf.to_container(OmegaConf.load(OLD_RUN / ".hydra" / "config.yaml"))
    config["norm"]["name"], config["seed"] = "fixed", 7  # differs from .hydra: run.json wins
    written = RunRecord.of_config(run, config, {"model": "dfn3_tiny"})
    assert written.write() == run / RUN_FILE
    read = RunRecord.from_dir(run)
    assert read == written
    assert (read.norm, read.seed) == ("fixed", 7)
    on_disk = json.loads((run / RUN_FILE).read_text())
    assert on_disk["variant_key"] == read.variant_key and on_disk["config"] == config


def test_a_folder_with_only_summary_json(tmp_path):
    folder = tmp_path / "copied-eval"
    folder.mkdir()
    summary = {"norm": "fixed", "seed": 3, "arch": "dfn2", "experiment": "study", "mean": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    record = RunRecord.from_dir(folder)
    assert not record.has_config and record.run_dir == folder
    assert (record.norm, record.seed, record.arch, record.experiment) == (
        "fixed",
        3,
        "dfn2",
        "study",
    )
    assert record.variant_key == {"norm.name": "fixed", "model.arch": "dfn2", "name": "study"}
    summary["label"] = "upstream-DeepFilterNet3"  # an upstream evaluation: known by its label
    (folder / "summary.json").write_text(json.dumps(summary))
    assert RunRecord.from_dir(folder).variant_key == {"label": "upstream-DeepFilterNet3"}


def test_a_folder_known_only_by_its_name(tmp_path):
    eval_dir = tmp_path / "fixed-seed3" / "eval" / "valentini"
    eval_dir.mkdir(parents=True)
    record = RunRecord.from_dir(eval_dir)
    assert record.run_dir == tmp_path / "fixed-seed3"
    assert (record.norm, record.seed) == ("fixed", 3)
    assert record.variant_key == {"norm.name": "fixed"}
    assert RunRecord.from_dir(tmp_path).variant_key == {}  # nothing known: an empty key


def test_unknown_keys_split_variants_and_listed_keys_with_their_children_do_not():
    base = {"norm": {"name": "fixed"}, "seed": 1, "callbacks": {"media": {"every": 5}}}
    key = variant_key_of(base)
    assert "seed" in NOT_VARIANT_KEYS and "system" in NOT_VARIANT_KEYS
    assert key == variant_key_of({**base, "seed": 2, "system": {"_target_": "x"}})
    assert key == variant_key_of({**base, "callbacks": {"media": {"every": 9, "new": 1}}})
    assert key != variant_key_of({**base, "brand_new_key": 1})  # unknown: splits, never merges
    assert key["data.gains_db"] == "[0.0]"  # no gains written out as the default
    assert key == variant_key_of({**base, "data": {"gains_db": [0]}})


def test_eval_record_writes_summary_json_with_its_top_level_keys(tmp_path):
    eval_dir = tmp_path / "fixed-seed1" / "eval" / "mini"
    eval_dir.mkdir(parents=True)
    record = EvalRecord(
        run=RunRecord.from_dir(eval_dir),
        metrics_csv=eval_dir / "metrics.csv",
        provenance={
            "checkpoint": "c.ckpt",
            "checkpoint_sha1": "ab",
            "run_dir": "r",
            "experiment": None,
            "norm": "fixed",
            "seed": 1,
            "arch": "dfn3",
        },  # fmt: skip
        dataset={"name": "mini", "fingerprint": "f"},
        input_gain_db=-20.0,
        pipeline_version=3,
        scored_at="reference",
        results={
            "n_files": 2,
            "n_failed": 0,
            "metrics": ["pesq"],
            "mean": {"pesq": 2.0},
            "noisy": {"pesq": 1.5},
        },  # fmt: skip
        complete=True,
        has_summary=True,
    )
    record.write()
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert "provenance" not in summary and summary["norm"] == "fixed"
    read = EvalRecord.from_dir(eval_dir)
    assert dataclasses.replace(read, run=record.run) == record
    assert read.run.arch == "dfn3"  # the summary tells the run what its folder name did not
    assert read.noisy == {"pesq": 1.5}


@pytest.mark.parametrize(
    ("given", "logger", "expected"),
    [
        ({}, None, {"mode": "auto", "project": "dfablate", "entity": None}),  # run unknown
        ({}, {"csv": {}}, None),  # trained without W&B: none here
        ({"mode": "offline"}, {"csv": {}}, {"mode": "offline", "project": "dfablate", "entity": None}),
        ({}, {"wandb": {"mode": "offline", "project": "p", "entity": "e"}},
         {"mode": "offline", "project": "p", "entity": "e"}),
        ({"project": "mine", "mode": "online"}, {"wandb": {"mode": "offline", "project": "p"}},
         {"mode": "online", "project": "mine", "entity": None}),
    ],
)  # fmt: skip
def test_follow_run(given, logger, expected):
    assert follow_run(given, logger) == expected


def test_a_broken_run_json_is_one_line_naming_the_file(tmp_path):
    run = tmp_path / "fixed-seed1"
    run.mkdir()
    for text, why in (("{", "cannot read run record"), ("[1]", "not a run record"),
                      ('{"seed": 1}', "not a run record (no config)")):  # fmt: skip
        (run / RUN_FILE).write_text(text)
        with pytest.raises(UserError, match=re.escape(why)) as caught:
            RunRecord.from_dir(run)
        assert str(caught.value).startswith(f"{run / RUN_FILE}: ") and "\n" not in str(caught.value)
