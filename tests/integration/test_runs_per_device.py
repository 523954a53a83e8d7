"""`runs_per_device=k`: runs spread over (faked) devices, k at a time; two concurrent CPU runs
overlap in time and equal the same runs made one after the other; a killed sweep completes on
a rerun."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from dfablate.parallel import device_slots, run_spread, sweep_jobs
from dfablate.training.checkpoints import read_checkpoint

RECORD = (
    "import os, sys, time; start = time.time(); time.sleep(0.6); "
    "open(sys.argv[1], 'w').write(f\"{os.environ.get('CUDA_VISIBLE_DEVICES')} {start} {time.time()}\")"
)


def test_runs_spread_over_faked_devices_k_at_a_time(tmp_path):
    """3 faked GPUs, k = 2: 6 runs at once, each seeing one device, 2 per device, spread
    over the devices before any gets a second run."""
    assert device_slots(2, 3) == ["0", "1", "2", "0", "1", "2"]
    assert device_slots(3, 0) == [None, None, None]
    outs = [tmp_path / f"{i}.txt" for i in range(9)]
    codes = run_spread([[sys.executable, "-c", RECORD, str(o)] for o in outs], 2, 3)
    assert codes == [0] * 9
    records = [o.read_text().split() for o in outs]
    devices = [r[0] for r in records]
    assert devices[:3] == ["0", "1", "2"] and set(devices) == {"0", "1", "2"}
    spans = [(float(r[1]), float(r[2]), r[0]) for r in records]
    for start, _, _ in spans:  # at any start, at most 2 runs per device and 6 in all
        live = [d for s, e, d in spans if s <= start < e]
        assert len(live) <= 6 and all(live.count(d) <= 2 for d in set(live))
    first_six = spans[:6]
    assert max(s for s, _, _ in first_six) < min(e for _, e, _ in first_six)  # all at once


def test_sweep_jobs_expand_like_hydra():
    jobs = sweep_jobs(["data=mini", "norm=original,fixed", "seed=1,2"])
    assert jobs == [
        ["data=mini", "norm=original", "seed=1"],
        ["data=mini", "norm=original", "seed=2"],
        ["data=mini", "norm=fixed", "seed=1"],
        ["data=mini", "norm=fixed", "seed=2"],
    ]


RUN = [
    "data=mini",
    "model=dfn3_tiny",
    "trainer=cpu",
    "logger=csv",
    "num_threads=1",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=1",
    "data.batch_size=2",
    "data.crop_seconds=0.5",
    "val_metric_utterances=0",
    "callbacks.progress_bar=null",
]


def _log_span(run_dir: Path) -> tuple[datetime, datetime]:
    """First and last time stamps of a run's train.log ([YYYY-mm-dd HH:MM:SS,mmm][...])."""
    stamps = [
        datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
        for line in (run_dir / "train.log").read_text().splitlines()
        if line.startswith("[20")
    ]
    return stamps[0], stamps[-1]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow
def test_two_concurrent_runs_overlap_and_equal_sequential_runs(tmp_path, mini_cache):
    from dfablate.cli import main

    threads = torch.get_num_threads()
    together, alone = tmp_path / "together", tmp_path / "alone"
    with contextlib.redirect_stdout(io.StringIO()):
        for k, out in ((2, together), (1, alone)):  # k = 1: the basic launcher, one by one
            # 30 steps: long enough that the two runs' training overlaps however the load
            # staggers their start-up (3 steps were over in about a second)
            sweep = ["train", "-m", *RUN, "trainer.max_steps=30", "seed=1,2",
                     f"runs_per_device={k}", f"output_root={out}"]  # fmt: skip
            assert main(sweep) == 0
    torch.set_num_threads(threads)
    listing = [sorted(p.name for p in (out / "default").iterdir()) for out in (together, alone)]
    assert listing[0] == listing[1]  # the runs and the sweep's multirun.yaml
    names = ["original-seed1", "original-seed2"]
    for name in names:
        files = [
            sorted(p.relative_to(out).as_posix() for p in (out / "default" / name).rglob("*"))
            for out in (together, alone)
        ]
        assert files[0] == files[1], name
    spans = [_log_span(together / "default" / name) for name in names]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the two ran at once
    for name in names:
        a, b = _weights(together / "default" / name), _weights(alone / "default" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert (
            read_checkpoint(together / "default" / name / "checkpoints" / "last.ckpt")[
                "global_step"
            ]
            == 30
        )


@pytest.mark.slow
def test_ablate_runs_per_device_trains_two_at_once_as_one_by_one(tmp_path, mini_cache, monkeypatch):
    """`ablate ablate.runs_per_device=2`: the demo's two norms train at the same time, in the
    folders and with the weights of the same runs trained one after the other."""
    from dfablate.cli import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    together, alone = tmp_path / "together", tmp_path / "alone"
    # the demo's joblib launcher one job at a time: only runs_per_device can run two at once
    grid = ["experiment=demo", *RUN, "norm=original,fixed", "seed=1", "hydra.launcher.n_jobs=1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["ablate", *grid, "ablate.runs_per_device=2", "ablate.evaluate.max_files=1",
                     "ablate.evaluate.input_gains_db=[0]", f"output_root={together}"]) == 0  # fmt: skip
        assert main(["train", "-m", *grid, f"output_root={alone}"]) == 0  # one after the other
    torch.set_num_threads(threads)
    names = ["original-seed1", "fixed-seed1"]
    # each run's span: its recorded config written at the start, its last checkpoint at the end
    # (the demo's joblib workers leave train.log without time stamps)
    spans = [
        tuple((together / "demo" / name / path).stat().st_mtime
              for path in (".hydra/config.yaml", "checkpoints/last.ckpt"))
        for name in names
    ]  # fmt: skip
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the two ran at once
    for name in names:
        a, b = _weights(together / "demo" / name), _weights(alone / "demo" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        assert (together / "demo" / name / "eval" / "mini-1files" / "summary.json").is_file()
    assert (together / "demo" / "compare" / "summary.csv").is_file()


@pytest.mark.slow
def test_killed_sweep_completes_on_rerun(tmp_path, mini_cache):
    """The sweep is killed (SIGKILL to its whole process group) as soon as a run has written its
    first checkpoint, long before its 40 steps are done; the same command then completes every
    run (resume=true picks each up where it stopped)."""
    steps = 40
    command = [
        sys.executable, "-m", "dfablate", "train", "-m", *RUN, f"trainer.max_steps={steps}",
        "callbacks.checkpoints.every_n_train_steps=1", "seed=1,2", "runs_per_device=2",
        "resume=true", f"output_root={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "DFABLATE_CACHE": str(mini_cache)}
    sweep = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = [
        tmp_path / "default" / f"original-seed{seed}" / "checkpoints" / "last.ckpt"
        for seed in (1, 2)
    ]
    deadline = time.time() + 240
    while not any(c.is_file() for c in checkpoints) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    done = [c.is_file() and read_checkpoint(c)["global_step"] == steps for c in checkpoints]
    assert any(c.is_file() for c in checkpoints) and not all(done)  # killed mid-way
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    for checkpoint in checkpoints:
        assert read_checkpoint(checkpoint)["global_step"] == steps


def test_bad_runs_per_device_is_refused_before_anything_is_written(tmp_path, capsys):
    from dfablate.cli import main

    assert (
        main(["train", "-m", *RUN, "seed=1,2", "runs_per_device=0", f"output_root={tmp_path}"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "runs_per_device=0: must be an integer of at least 1" in err
    assert not any(tmp_path.iterdir())
