"""`dfablate train` end to end on the mini corpus: run layout, W&B offline contents, sweeps,
one-line config errors, resume after a real SIGKILL, CPU DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import CONFIG_DIR, TESTS_DIR
from wandb_offline import read_offline_run

from dfablate.cli import main
from dfablate.training.checkpoints import checkpoint_identity
from dfablate.training.module import DfnSystem

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


def _kill_env(mini_cache: Path) -> dict[str, str]:
    """`_env` with tests/ importable, for the `sigkill_callback.SignalAt` test hook."""
    tests = str(TESTS_DIR)
    return {
        **_env(mini_cache),
        "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
    }


def _dfablate(*args: str, cwd: Path, env: dict, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dfablate", *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


TRAIN_WITH_WANDB = pytest.mark.xdist_group("train_with_wandb")  # one process trains it once


@pytest.fixture(scope="module")
def wandb_run_dir(tmp_path_factory, mini_cache) -> Path:
    """One 2-step run with the csv and W&B loggers and W&B media every epoch."""
    out = tmp_path_factory.mktemp("train-wandb")
    args = ["train", *FAST, "logger=[csv,wandb]", f"output_root={out}",
            "callbacks.media.every_n_epochs=1", "callbacks.media.std_utterances=2"]  # fmt: skip
    assert main(args) == 0
    return out / "default" / "original-seed43"


@TRAIN_WITH_WANDB
def test_train_writes_the_run_dir_and_its_resolved_config(wandb_run_dir):
    assert (wandb_run_dir / ".hydra" / "config.yaml").is_file()
    resolved = yaml.safe_load((wandb_run_dir / "config.yaml").read_text())
    assert resolved["norm"]["name"] == "original" and resolved["seed"] == 43
    assert resolved["model"]["params"]["df_order"] == 5


@TRAIN_WITH_WANDB
def test_train_writes_checkpoints_that_know_their_model(wandb_run_dir):
    best = wandb_run_dir / "checkpoints" / "best.ckpt"
    last = wandb_run_dir / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    assert checkpoint_identity(best)["norm"] == "original"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert DfnSystem.load_checkpoint(last).model_identity["model"]["params"]["conv_ch"] == "16"


def _csv_metrics(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    return metrics, metrics.dropna(subset=["val/loss"])


@TRAIN_WITH_WANDB
def test_train_logs_curves_with_a_step_0_baseline(wandb_run_dir):
    metrics, val = _csv_metrics(wandb_run_dir)
    assert list(val["step"])[0] == 0  # validation before training: the step-0 baseline
    assert len(val) == 2 and val["val/pesq"].notna().all()
    assert metrics["train/loss"].notna().sum() == 2 and metrics["train/lr"].notna().any()


@TRAIN_WITH_WANDB
def test_train_logs_to_wandb_what_the_csv_logger_has(wandb_run_dir):
    metrics, val = _csv_metrics(wandb_run_dir)
    logged = read_offline_run(wandb_run_dir / "wandb")
    assert logged.run["group"] == "default"
    assert logged.run["tags"] == ["norm:original", "seed:43"]
    assert logged.config["norm"] == {"name": "original"} and logged.config["seed"] == 43
    assert logged.config["model"]["arch"] == "dfn3" and logged.config["data"]["batch_size"] == 2
    train_loss = [v for _, v in logged.series("train/loss")]
    assert train_loss == pytest.approx(list(metrics["train/loss"].dropna()), rel=1e-6)
    assert [v for _, v in logged.series("val/loss")] == pytest.approx(list(val["val/loss"]))
    assert len(logged.series("train/lr")) == 2


@TRAIN_WITH_WANDB
def test_train_logs_feature_std_and_audio_examples_to_wandb(wandb_run_dir):
    logged = read_offline_run(wandb_run_dir / "wandb")
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
            "unknown normalisation 'nope'; known: "
            + ", ".join(sorted(p.stem for p in (CONFIG_DIR / "norm").glob("*.yaml"))),
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


def _early_stopping(checkpoint: dict) -> dict:
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("EarlyStopping")]
    return state


def _patience_from_log(val_losses: list[float]) -> tuple[float, int]:
    """(best, wait count) that EarlyStopping (mode min, min_delta 0) reaches on these losses."""
    best, wait = float("inf"), 0
    for loss in val_losses:
        if loss < best:
            best, wait = loss, 0
        else:
            wait += 1
    return best, wait


# 3 epochs of 3 steps, a validation after each (one utterance), nothing else.
KILL_RUN = [
    "train", *FAST, "callbacks.media=null", "validate_first=false",
    "trainer.max_epochs=3", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
    "val_metric_utterances=0",
]  # fmt: skip
KILL_HOOK = "+callbacks.kill._target_=sigkill_callback.SignalAt"


def _check_resumed_run(run_dir: Path, output: str) -> None:
    """The resumed run ends like an uninterrupted one: 9 steps, one validation per epoch,
    early stopping's best score and patience count over all three validations."""
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 9 and final["lr_schedulers"][0]["last_epoch"] == 9
    assert final["optimizer_states"][0]["state"]  # AdamW moments carried over
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    val = metrics.dropna(subset=["val/loss"])
    assert list(val["step"]) == [2, 5, 8]  # neither repeated nor lost around the kill
    steps = metrics.dropna(subset=["train/loss"])["step"]
    assert sorted(steps) == list(range(9))
    best, wait = _patience_from_log(list(val["val/loss"]))
    stopping = _early_stopping(final)
    assert float(stopping["best_score"]) == pytest.approx(best, rel=1e-6)
    assert stopping["wait_count"] == wait
    assert (
        f"best checkpoint: {run_dir / 'checkpoints' / 'best.ckpt'} (val/loss {best:.4f})" in output
    )
    best_ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert best_ckpt["global_step"] == int(val["step"][val["val/loss"].idxmin()]) + 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "killed_at"),
    [("+callbacks.kill.epoch=0", 3), ("+callbacks.kill.step=4", 4)],
    ids=["after-epoch-end-checkpoint", "mid-epoch"],
)
def test_resume_after_sigkill(tmp_path, mini_cache, where, killed_at):
    """Kill -9 right after the epoch-end (validation) checkpoint, or mid-epoch with a
    checkpoint every step; `resume=true` then finishes the same run."""
    mid_epoch = "step" in where
    every = 1 if mid_epoch else 1000  # epoch-end: only the validation checkpoint
    logger = "logger=[csv,wandb]" if mid_epoch else "logger=csv"
    args = [
        *KILL_RUN,
        logger,
        f"callbacks.checkpoints.every_n_train_steps={every}",
        f"output_root={tmp_path}",
    ]
    env, run_dir = _kill_env(mini_cache), tmp_path / "default" / "original-seed43"
    killed = _dfablate(*args, KILL_HOOK, where, cwd=tmp_path, env=env)
    output = killed.communicate(timeout=300)[0]
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    assert _global_step(run_dir / "checkpoints" / "last.ckpt") == killed_at

    resumed = _dfablate(*args, "resume=true", cwd=tmp_path, env=env)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"resuming {run_dir} from step {killed_at}" in output
    _check_resumed_run(run_dir, output)
    if mid_epoch:  # the same W&B run continues, from the checkpoint's step
        runs = sorted((run_dir / "wandb").glob("offline-run-*"))
        assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1
        resumed_log = read_offline_run(runs[-1])
        assert min(v for _, v in resumed_log.series("trainer/global_step")) >= killed_at


def test_a_run_shorter_than_an_epoch_ends_with_a_checkpoint_and_a_summary(short_run):
    last = short_run.run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 2
    assert checkpoint["epoch"] == 0  # saved mid-epoch: a resume continues this epoch
    assert DfnSystem.load_checkpoint(last).norm == "original"
    assert "`Trainer.fit` stopped: `max_steps=2` reached" in short_run.output  # Lightning's own
    for noise in ("litlogger", "`weights_only`", "GPU available", "LeafSpec"):
        assert noise not in short_run.output  # start-up chatter, a line per checkpoint load
    assert short_run.output.splitlines()[-3:] == [
        f"run: {short_run.run_dir} (finished at step 2)",
        f"best checkpoint: none (no validation during training); last: {last}",
        f"next: dfablate evaluate run={short_run.run_dir}",
    ]


def _hashes(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "already holds a training run (checkpoints/last.ckpt): pass resume=true"),
        (["resume=true", "norm=fixed", "hydra.run.dir={run_dir}"],
         "norm: checkpoint original, this run's config fixed"),
        (["resume=true", "model=dfn3"], "model.params.conv_ch: checkpoint 16, this run's config 64"),
        (["ckpt_path={truncated}"], "truncated.ckpt: not a readable checkpoint"),
        (["seed=abc"], "seed=abc: must be an integer"),
        (["trainer.max_steps=0"], "trainer.max_steps=0: nothing to train"),
    ],
    ids=["again", "other-norm", "other-arch", "truncated-ckpt", "seed", "max-steps-0"],
)  # fmt: skip
def test_refused_train_changes_nothing(short_run, tmp_path, capsys, extra, expected):
    """Every file of the existing run, and the output root, are byte-identical afterwards."""
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((short_run.run_dir / "checkpoints" / "last.ckpt").read_bytes()[:4096])
    root = short_run.run_dir.parent.parent
    before = _hashes(root)
    extra = [e.format(run_dir=short_run.run_dir, truncated=truncated) for e in extra]
    rc = main(["train", *short_run.args, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert _hashes(root) == before


def test_a_refused_sweep_job_changes_nothing_in_its_run(short_run, capsys):
    """In a sweep (-m) the job's checks also run before its `.hydra/` records are written."""
    before = _hashes(short_run.run_dir)
    assert main(["train", "-m", *short_run.args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: job 0 (") and "already holds a training run" in err[-1]
    assert _hashes(short_run.run_dir) == before


@pytest.mark.slow
def test_ctrl_c_in_train_says_how_to_resume(tmp_path, mini_cache):
    args = [*KILL_RUN, "logger=csv", "trainer.max_epochs=1", f"output_root={tmp_path}"]
    interrupted = _dfablate(
        *args, KILL_HOOK, "+callbacks.kill.step=1", "+callbacks.kill.sig=SIGINT",
        cwd=tmp_path, env=_kill_env(mini_cache),
    )  # fmt: skip
    output = interrupted.communicate(timeout=300)[0]
    assert interrupted.returncode == 130, output[-3000:]
    last_line = output.strip().splitlines()[-1]
    prefix = "interrupted: training stopped at step 1; continue with: dfablate train "
    assert last_line.startswith(prefix) and last_line.endswith(" resume=true"), last_line
    hinted = last_line[len(prefix) :].split()  # the command, as printed: run it
    assert "+callbacks.kill.sig=SIGINT" in hinted
    hinted = [a for a in hinted if not a.startswith("+callbacks.kill")]
    resumed = _dfablate("train", *hinted, cwd=tmp_path, env=_env(mini_cache))
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert "from step 1" in output
    last = tmp_path / "default" / "original-seed43" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3


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
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "norm.name=fixed" in overrides  # the job's Hydra records, written by the worker


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
