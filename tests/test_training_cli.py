"""`dfablate train` end to end on the mini corpus: run layout, W&B offline contents, sweeps,
one-line config errors, resume after a real SIGKILL, CPU DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dfablate.cli import main
from dfablate.tracking import read_offline_run
from dfablate.training import DfnSystem, checkpoint_identity

# A tiny but complete run: real model (dfn3_tiny), real data (mini corpus), real loss.
FAST = [
    "data=mini",
    "model=dfn3_tiny",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "data.batch_size=2",
    "data.crop_seconds=1.0",
    "val_metric_utterances=1",
    "callbacks.progress_bar=null",
    "num_threads=1",  # much faster than 2 threads on a busy 2-core machine
]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mini_cache(tmp_path_factory) -> Path:
    """A private mini-corpus cache for these runs (built once)."""
    from dfablate.data import ensure_mini

    cache = tmp_path_factory.mktemp("mini-cache")
    ensure_mini(cache)
    old = os.environ.get("DFABLATE_CACHE")
    os.environ["DFABLATE_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DFABLATE_CACHE", None)
    else:
        os.environ["DFABLATE_CACHE"] = old


def _env(mini_cache: Path) -> dict[str, str]:
    # WANDB_SERVICE points at this process's W&B service (set by the in-process W&B run):
    # a child that inherits it talks to that service instead of starting its own.
    inherited = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {
        **inherited,
        "DFABLATE_CACHE": str(mini_cache),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }


def _dfablate(*args: str, cwd: Path, env: dict, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dfablate.cli", *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def test_train_writes_run_dir_checkpoints_and_wandb(tmp_path, mini_cache):
    out = tmp_path / "out"
    rc = main(
        [
            "train",
            *FAST,
            "logger=[csv,wandb]",
            f"output_root={out}",
            "callbacks.media.every_n_epochs=1",
            "callbacks.media.std_utterances=2",
        ]
    )
    assert rc == 0
    run_dir = out / "default" / "original-seed43"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["norm"]["name"] == "original" and resolved["seed"] == 43
    assert resolved["model"]["params"]["df_order"] == 5

    best, last = run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    assert checkpoint_identity(best)["norm"] == "original"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert DfnSystem.load_checkpoint(last).identity["model"]["params"]["conv_ch"] == "16"

    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    val = metrics.dropna(subset=["val/loss"])
    assert list(val["step"])[0] == 0  # validation before training: the step-0 baseline
    assert len(val) == 2 and val["val/pesq"].notna().all()
    assert metrics["train/loss"].notna().sum() == 2 and metrics["train/lr"].notna().any()

    logged = read_offline_run(run_dir / "wandb")
    assert logged.run["group"] == "default"
    assert logged.run["tags"] == ["norm:original", "seed:43"]
    assert logged.config["norm"] == {"name": "original"} and logged.config["seed"] == 43
    assert logged.config["model"]["arch"] == "dfn3" and logged.config["data"]["batch_size"] == 2
    train_loss = [v for _, v in logged.series("train/loss")]
    assert train_loss == pytest.approx(list(metrics["train/loss"].dropna()), rel=1e-6)
    assert [v for _, v in logged.series("val/loss")] == pytest.approx(list(val["val/loss"]))
    assert len(logged.series("train/lr")) == 2
    std = logged.series("features/std_original")
    assert len(std) == 1 and std[0][1]["_type"] == "table-file"
    assert 0 < logged.summary["features/std_mean"] < 1  # "original" features are far below 1
    examples = [row for row in logged.history if any(k.startswith("examples/") for k in row)]
    keys = {k for row in examples for k in row if k.startswith("examples/")}
    assert any(k.endswith("/enhanced") for k in keys) and any(k.endswith("/clean") for k in keys)
    assert any(k.endswith("/spectrogram") for k in keys)


def test_multirun_produces_one_run_per_norm_and_seed(tmp_path, mini_cache):
    out = tmp_path / "out"
    rc = main(
        ["train", "-m", "norm=original,fixed", "seed=0,1", *FAST, "logger=none",
         "validate_first=false", "val_metric_utterances=0", "trainer.limit_train_batches=1",
         "trainer.limit_val_batches=1", "name=sweep", f"output_root={out}"]
    )  # fmt: skip
    assert rc == 0
    runs = sorted(p.name for p in (out / "sweep").iterdir() if p.is_dir())
    assert runs == ["fixed-seed0", "fixed-seed1", "original-seed0", "original-seed1"]
    for run in runs:
        identity = checkpoint_identity(out / "sweep" / run / "checkpoints" / "last.ckpt")
        assert identity["norm"] == run.split("-")[0]
        assert yaml.safe_load((out / "sweep" / run / "config.yaml").read_text())["seed"] == int(
            run[-1]
        )
    assert (out / "sweep" / "multirun.yaml").is_file()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("norm=nope", "Could not find 'norm/nope'"),
        (
            "norm.name=nope",
            "unknown normalisation 'nope'; known: fixed, fixed_warm, none, original, rms",
        ),
        ("+model.params.conv_chanels=8", "unknown dfn3 model parameter(s) conv_chanels"),
        ("trainer=tpu9", "Could not find 'trainer/tpu9'"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path=/no/such.ckpt: checkpoint not found"),
    ],
)
def test_config_errors_are_one_line(tmp_path, mini_cache, capsys, override, expected):
    rc = main(["train", *FAST, "logger=none", override, f"output_root={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def _global_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


@pytest.mark.slow
def test_resume_after_sigkill_continues_steps_and_wandb_run(tmp_path, mini_cache):
    """Kill -9 a training process mid-run, then `resume=true` finishes the same run."""
    args = [
        "train", *FAST, "logger=[csv,wandb]", "callbacks.media=null", "validate_first=false",
        "trainer.max_epochs=3", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "val_metric_utterances=0", "callbacks.checkpoints.every_n_train_steps=1",
        f"output_root={tmp_path}",
    ]  # fmt: skip
    env = _env(mini_cache)
    run_dir = tmp_path / "default" / "original-seed43"
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = _dfablate(*args, cwd=tmp_path, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while _global_step(last) < 4:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _global_step(last)
    assert 4 <= killed_at < 9

    again = _dfablate(*args, cwd=tmp_path, env=env)  # without resume=true: refused
    output = again.communicate()[0]
    assert again.returncode == 2 and "pass resume=true" in output.strip().splitlines()[-1]

    resumed = _dfablate(*args, "resume=true", cwd=tmp_path, env=env)
    output = resumed.communicate()[0]
    assert resumed.returncode == 0, output[-3000:]
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == 9  # 3 epochs x 3 batches: continued, not restarted
    assert final["lr_schedulers"][0]["last_epoch"] == 9
    assert final["optimizer_states"][0]["state"]  # AdamW moments carried over

    steps = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["train/loss"])["step"]
    assert steps.max() == 8 and steps.min() == 0
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1  # same run id
    resumed_log = read_offline_run(runs[-1])
    assert min(v for _, v in resumed_log.series("trainer/global_step")) >= killed_at


SWEEP = [*FAST, "validate_first=false", "val_metric_utterances=0", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]  # fmt: skip


def test_a_failing_sweep_job_does_not_stop_the_others(tmp_path, mini_cache, capsys):
    rc = main(
        ["train", "-m", "norm.name=nope,fixed", *SWEEP, "logger=none", f"output_root={tmp_path}"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: job 0 (norm.name=nope") and "unknown normalisation" in err[-1]
    assert (tmp_path / "default" / "fixed-seed43" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_sweep_launchers(tmp_path, mini_cache, launcher):
    """Jobs in worker processes; a failing job is reported and the other one still trains."""
    proc = _dfablate(
        "train", "-m", f"hydra/launcher={launcher}", "norm.name=fixed,nope", *SWEEP,
        "logger=csv", f"output_root={tmp_path}", cwd=tmp_path, env=_env(mini_cache),
    )  # fmt: skip
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2, output[-3000:]
    assert output.strip().splitlines()[-1].startswith("error: unknown normalisation 'nope'")
    run_dir = tmp_path / "default" / "fixed-seed43"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    assert (run_dir / "csv" / "metrics.csv").is_file()


@pytest.mark.slow
def test_cpu_ddp_inside_a_sweep(tmp_path, mini_cache):
    """trainer=ddp (2 gloo processes) in a multirun: each job starts its own ranks, which train
    that job only (Lightning re-runs the command line; a re-run sweep would make extra runs)."""
    proc = _dfablate(
        "train", "-m", "norm=original,fixed", *SWEEP, "trainer.limit_train_batches=2",
        "logger=csv", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.sync_batchnorm=false", f"output_root={tmp_path}",
        cwd=tmp_path, env=_env(mini_cache),
    )  # fmt: skip
    output = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, output[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output  # rank 1 joined
    runs = sorted(p.name for p in (tmp_path / "default").iterdir() if p.is_dir())
    assert runs == ["fixed-seed43", "original-seed43"]
    for run in runs:
        checkpoint = torch.load(
            tmp_path / "default" / run / "checkpoints" / "last.ckpt", weights_only=True
        )
        # 2 batches per rank of 2 ranks: 2 optimizer steps, each on both ranks' batches
        assert checkpoint["global_step"] == 2
        assert checkpoint["dfablate"]["norm"] == run.split("-")[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]


def test_batch_size_schedule_ramps_a_real_run(tmp_path, mini_cache):
    """data.batch_size_schedule: 36 training utterances in batches of 1, then of 2 (capped at
    data.batch_size=2 from 4): 36 + 18 optimizer steps; without the ramp, 18 + 18."""
    out = tmp_path / "out"
    args = [*FAST, "logger=none", f"output_root={out}", "trainer.max_epochs=2",
            "trainer.limit_train_batches=null", "trainer.limit_val_batches=1",
            "validate_first=false", "val_metric_utterances=0", "data.crop_seconds=0.25",
            "data.gains_db=[0]"]  # fmt: skip
    assert main(["train", *args, "data.batch_size_schedule={0:1,1:4}", "name=ramp"]) == 0
    last = torch.load(out / "ramp" / "original-seed43" / "checkpoints" / "last.ckpt",
                      weights_only=False)  # fmt: skip
    assert last["global_step"] == 36 + 18
    schedule = last["lr_schedulers"][0]
    assert schedule["steps_per_epoch"] == 18 and schedule["total_steps"] == 2 * 18
    assert schedule["offset"] == 1 * 18 - 36  # epoch 1 starts at step 18 of the new schedule
