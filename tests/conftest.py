"""Shared fixtures: the real speech and noise shipped in tests/data, the mini corpus, a small
Valentini-layout test set and one short training run (shared paths and constants: helpers.py)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import DATA_DIR, ROOT, SHORT_RUN, TrainedRun

from dfablate.audio import load_audio
from dfablate.cli import main
from dfablate.data.mini import ensure_mini

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
def mini_cache(tmp_path_factory) -> Path:
    """The one mini corpus (seed 0) of the session, built once into a private cache folder
    that DFABLATE_CACHE names from then on (so `data=mini` finds it in every command)."""
    cache = tmp_path_factory.mktemp("mini-cache")
    ensure_mini(cache, seed=0)
    old = os.environ.get("DFABLATE_CACHE")
    os.environ["DFABLATE_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DFABLATE_CACHE", None)
    else:
        os.environ["DFABLATE_CACHE"] = old


@pytest.fixture(scope="session")
def mini_root(mini_cache) -> Path:
    """The root folder of the `mini_cache` corpus (found there, not built again)."""
    return ensure_mini(mini_cache, seed=0)


@pytest.fixture(scope="session")
def testset_root(tmp_path_factory, speech_48k, noisy_48k) -> Path:
    """A Valentini-layout test split: four 2 s pairs of real speech in real noise, plus one
    pair whose clean side is silent (PESQ cannot score it)."""
    segment = 2 * 48_000  # one utterance: 2 s at 48 kHz
    root = tmp_path_factory.mktemp("valentini")
    clean, noisy = load_audio(speech_48k, 48_000), load_audio(noisy_48k, 48_000)
    for folder in ("clean_testset_wav", "noisy_testset_wav"):
        (root / folder).mkdir()
    for i in range(4):
        part = slice(i * segment, (i + 1) * segment)
        sf.write(root / "clean_testset_wav" / f"p232_00{i}.wav", clean[part], 48_000)
        sf.write(root / "noisy_testset_wav" / f"p232_00{i}.wav", noisy[part], 48_000)
    sf.write(root / "clean_testset_wav" / "p257_001.wav", np.zeros(segment, np.float32), 48_000)
    sf.write(root / "noisy_testset_wav" / "p257_001.wav", noisy[:segment], 48_000)
    return root


@pytest.fixture(scope="session")
def short_run(tmp_path_factory, mini_cache) -> TrainedRun:
    """One real training run (tiny DFN3, mini corpus, 2 steps) shared by the tests that only
    read it or check that commands refuse to change it."""
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
