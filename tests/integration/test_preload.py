"""`data.preload` (none / host / device): the same batches and the same training as the file loader,
and a one-line refusal, before anything is written, when the audio does not fit."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
import torch

from dfablate.data.datamodule import PreloadedPairDataset, ValentiniDataModule
from dfablate.data.preload import estimate_bytes
from dfablate.errors import UserError
from dfablate.training.checkpoints import read_checkpoint

RAMP = {0: 2, 1: 3, 2: 5}


class _EpochTrainer(SimpleNamespace):
    """What the data module reads from Lightning's trainer: the epoch and the device."""


def _epoch_batches(dm: ValentiniDataModule, epoch: int) -> list[dict]:
    dm.trainer = _EpochTrainer(
        current_epoch=epoch, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch start
    return list(loader)


def _module(root: Path, preload: str, workers: int = 0) -> ValentiniDataModule:
    dm = ValentiniDataModule(
        root,
        crop_seconds=1.0,
        batch_size=4,
        batch_size_schedule=RAMP,
        gains_db=[-6, 0, 6],
        seed=5,
        num_workers=workers,
        preload=preload,
    )
    dm.setup("fit")
    return dm


@pytest.mark.parametrize(("preload", "workers"), [("host", 1), ("device", 0)])
def test_preloaded_batches_equal_the_file_loaders(mini_root, preload, workers):
    """Three epochs of a batch-size ramp (2, 3, 4 capped): every batch, crop and gain equal
    bit for bit; validation utterances too."""
    files = _module(mini_root, "none")
    held = _module(mini_root, preload, workers)
    assert isinstance(held.train_set, PreloadedPairDataset)
    audio = held.train_set.audio
    assert audio.clean.dtype == torch.int16  # the mini corpus is 16-bit PCM: kept as int16
    assert audio.nbytes == estimate_bytes(held.train_set.pairs, 48000)
    if preload == "host":
        assert audio.clean.is_shared() and audio.noisy.is_shared()  # one copy for the workers
    sizes = []
    for epoch in range(3):
        expected, got = _epoch_batches(files, epoch), _epoch_batches(held, epoch)
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            assert a["name"] == b["name"]
            assert torch.equal(a["noisy"], b["noisy"]) and torch.equal(a["clean"], b["clean"])
        sizes.append(len(got[0]["name"]))
    assert sizes == [2, 3, 4]
    for a, b in zip(files.val_dataloader(), held.val_dataloader(), strict=True):
        assert a["name"] == b["name"] and torch.equal(a["noisy"], b["noisy"])


def _train(args: list[str]) -> Path:
    from dfablate.cli import main

    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", *args]) == 0
    torch.set_num_threads(threads)
    return Path(args[-1].split("=", 1)[1]) / "default" / "original-seed43"


RUN = [
    "data=mini",
    "model=dfn3_tiny",
    "trainer=cpu",
    "logger=none",
    "num_threads=1",
    "trainer.max_steps=5",
    "trainer.limit_val_batches=1",
    "data.batch_size=2",
    "data.crop_seconds=0.5",
    "val_metric_utterances=0",
    "validate_first=false",
    "callbacks.progress_bar=null",
]


@pytest.mark.slow
def test_five_step_runs_give_identical_weights(tmp_path, mini_cache):
    weights = {}
    for preload in ("none", "host", "device"):
        run = _train([*RUN, f"data.preload={preload}", f"output_root={tmp_path / preload}"])
        weights[preload] = read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
        assert (run / "config.yaml").read_text().count(f"preload: {preload}") == 1
    for preload in ("host", "device"):
        assert weights[preload].keys() == weights["none"].keys()
        for key, value in weights["none"].items():
            assert torch.equal(weights[preload][key], value), key


def test_refuses_audio_that_does_not_fit_before_writing(tmp_path, mini_cache, monkeypatch):
    """A host with 1 kB free: one line naming the size and a setting that fits; no run folder."""
    from dfablate.data import preload

    monkeypatch.setattr(preload, "free_bytes", lambda device: 1000)
    from dfablate.cli import main

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = main(["train", *RUN, "data.preload=host", f"output_root={tmp_path / 'out'}"])
    assert code == 2
    message = errors.getvalue().strip()
    assert len(message.splitlines()) == 1
    assert "data.preload=host" in message and "use data.preload=none" in message
    assert not (tmp_path / "out").exists()


def test_estimate_counts_int16_files_at_two_bytes(mini_root):
    dm = ValentiniDataModule(mini_root, preload="none")
    dm.setup("fit")
    pairs = dm.train_set.pairs
    frames = sum(sf.info(str(p.clean)).frames + sf.info(str(p.noisy)).frames for p in pairs)
    assert estimate_bytes(pairs, 48000) == 2 * frames
    assert estimate_bytes(pairs, 16000) == 4 * sum(
        -(-sf.info(str(p)).frames // 3) for pair in pairs for p in (pair.clean, pair.noisy)
    )
    with pytest.raises(UserError, match="data.preload=disk: must be one of none, host, device"):
        ValentiniDataModule(mini_root, preload="disk")
