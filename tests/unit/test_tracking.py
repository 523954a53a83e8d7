"""W&B helpers: mode selection, persistent run ids, and reading offline runs back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from wandb_offline import OfflineRun, read_offline_run

from dfablate.errors import UserError
from dfablate.tracking import (
    init_wandb,
    run_id,
)
from dfablate.training.callbacks import log_audio_example, log_feature_std
from dfablate.wandb_settings import wandb_mode


def test_wandb_mode_is_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    assert wandb_mode("auto") == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode("auto") == "online"
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the environment wins
    assert wandb_mode("online") == "offline"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(UserError, match="logger.wandb.mode='sometimes'"):
        wandb_mode("auto")


def test_run_id_is_created_once_per_run_dir(tmp_path):
    first = run_id(tmp_path / "a")
    assert run_id(tmp_path / "a") == first
    assert run_id(tmp_path / "b") != first


OFFLINE_RUN = pytest.mark.xdist_group("tracking_offline_run")  # one process logs it once


@dataclass(frozen=True)
class LoggedRun:
    """A run logged offline (40 rows, an audio example, a feature-std table, a summary) and
    what `read_offline_run` reads back from its folder."""

    folder: Path
    run_id: str  # the id wandb gave the run
    std_table: pd.DataFrame  # the feature-std table logged
    logged: OfflineRun  # read back


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, speech_48k) -> LoggedRun:
    folder = tmp_path_factory.mktemp("offline-run")
    run = init_wandb(
        folder,
        {"norm": {"name": "fixed"}, "seed": 3},
        project="dfablate-test",
        group="sweep-x",
        tags=["norm:fixed", "seed:3"],
        job_type="train",
        mode="offline",
    )
    for step in range(40):  # enough rows to span several 32 KiB blocks with the media below
        run.log({"train/loss": 1.0 / (step + 1), "epoch": step // 10, "note": f"s{step}"})
    wave, rate = sf.read(speech_48k, dtype="float32")
    log_audio_example(run, "p232_001", {"noisy": wave[:48000], "clean": wave[:48000]}, rate, step=7)
    table = pd.DataFrame({"bin": np.arange(4), "std_real": [1.0, 2, 3, 4], "std_imag": [1.0] * 4})
    log_feature_std(run, table, "fixed")
    run.summary["best/val_loss"] = 0.25
    expected_id = run.id
    run.finish()
    return LoggedRun(folder, expected_id, table, read_offline_run(folder))


@OFFLINE_RUN
def test_offline_run_reads_back_its_id_group_tags_and_config(logged_run):
    logged = logged_run.logged
    assert logged.run["id"] == logged_run.run_id == run_id(logged_run.folder)
    assert logged.run["group"] == "sweep-x"
    assert logged.run["tags"] == ["norm:fixed", "seed:3"]
    assert logged.run["job_type"] == "train"
    assert logged.config["norm"] == {"name": "fixed"} and logged.config["seed"] == 3


@OFFLINE_RUN
def test_offline_run_reads_back_every_logged_row(logged_run):
    logged = logged_run.logged
    losses = logged.series("train/loss")
    assert [value for _, value in losses] == pytest.approx([1.0 / (s + 1) for s in range(40)])
    assert [step for step, _ in losses] == list(range(40))
    assert logged.series("note")[-1][1] == "s39"


@OFFLINE_RUN
def test_offline_run_reads_back_media_tables_and_the_summary(logged_run):
    logged, table = logged_run.logged, logged_run.std_table
    media = next(row for row in logged.history if "examples/p232_001/noisy" in row)
    assert media["examples/p232_001/noisy"]["_type"] == "audio-file"
    assert media["examples/p232_001/spectrogram"]["_type"] == "image-file"
    assert media["trainer/global_step"] == 7
    std_row = next(row for row in logged.history if "features/std_fixed" in row)
    assert std_row["features/std_fixed"]["_type"] == "table-file"
    assert logged.summary["features/std_mean"] == pytest.approx(
        table[["std_real", "std_imag"]].to_numpy().mean()
    )
    assert logged.summary["best/val_loss"] == 0.25


def test_read_offline_run_names_the_folder_without_runs(tmp_path):
    with pytest.raises(UserError, match="no offline W&B run file"):
        read_offline_run(tmp_path)
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a W&B run file"):
        read_offline_run(bad)
