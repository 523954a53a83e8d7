"""Shared fixtures: the real speech and noise shipped in tests/data, the mini corpus and one
short training run."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).parent  # helper modules (upstream, wandb_offline, ...) live here
DATA_DIR = TESTS_DIR / "data"
ROOT = TESTS_DIR.parent
CONFIG_DIR = ROOT / "dfablate" / "configs"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def speech_48k() -> Path:
    return DATA_DIR / "clean_freesound_33711.wav"


@pytest.fixture(scope="session")
def noisy_48k() -> Path:
    return DATA_DIR / "noisy_snr0.wav"


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that changes torch's thread count (training does) leaves it as it found it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def one_torch_thread():
    """One torch thread: several times faster than two on a busy 2-core machine (GRU loops)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory) -> Path:
    """The mini corpus (seed 0) in a session cache, without changing DFABLATE_CACHE."""
    from dfablate.data.mini import ensure_mini

    return ensure_mini(tmp_path_factory.getbasetemp() / "dfablate-cache", seed=0)


@pytest.fixture(scope="session")
def mini_cache(tmp_path_factory) -> Path:
    """A private mini-corpus cache (built once per session), in DFABLATE_CACHE from then on."""
    from dfablate.data.mini import ensure_mini

    cache = tmp_path_factory.mktemp("mini-cache")
    ensure_mini(cache)
    old = os.environ.get("DFABLATE_CACHE")
    os.environ["DFABLATE_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DFABLATE_CACHE", None)
    else:
        os.environ["DFABLATE_CACHE"] = old


# The lean run the subprocess-heavy tests share: shorter than one epoch of the mini corpus
# (18 batches of 2), so it also shows that such a run ends with a checkpoint.
SHORT_RUN = [
    "data=mini",
    "model=dfn3_tiny",
    "trainer=cpu",
    "logger=csv",
    "num_threads=1",
    "trainer.max_steps=2",
    "trainer.limit_val_batches=1",
    "data.batch_size=2",
    "data.crop_seconds=1.0",
    "val_metric_utterances=0",
    "callbacks.progress_bar=null",
]


@dataclass(frozen=True)
class TrainedRun:
    args: list[str]  # the `dfablate train` arguments that made it
    run_dir: Path
    output: str  # what `train` printed on stdout


@pytest.fixture(scope="session")
def short_run(tmp_path_factory, mini_cache) -> TrainedRun:
    """One real training run (tiny DFN3, mini corpus, 2 steps) shared by the tests that only
    read it or check that commands refuse to change it."""
    from dfablate.cli import main

    threads = torch.get_num_threads()
    args = [*SHORT_RUN, f"output_root={tmp_path_factory.mktemp('short-run')}"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", *args]) == 0
    torch.set_num_threads(threads)
    run_dir = Path(args[-1].split("=", 1)[1]) / "default" / "original-seed43"
    return TrainedRun(args, run_dir, printed.getvalue())


@pytest.fixture(scope="session")
def installed_package(tmp_path_factory) -> Path:
    """A wheel built from (a copy of) the checkout, installed into a folder of its own (put it
    on PYTHONPATH to use it): dfablate as `pip install .` gives it, without the checkout.

    The build runs isolated (pip fetches setuptools>=77 as for `make install`: the reference
    extra pins packaging<24, too old for it); installing the wheel downloads nothing."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"  # a clean copy: the build writes build/ and *.egg-info there
    shutil.copytree(
        ROOT / "dfablate", source / "dfablate", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        cwd=base,
    )
    (wheel,) = wheels.glob("dfablate-*.whl")
    target = base / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, cwd=base,
    )  # fmt: skip
    return target
