"""Pairing, verification and the data module, on the mini corpus (real speech + real noise)."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import CONFIG_DIR
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dfablate.cli import main
from dfablate.data.datamodule import ValentiniDataModule
from dfablate.data.valentini import SPLIT_DIRS, find_clean_noisy_pairs, speaker_of
from dfablate.errors import UserError

CONFIGS = CONFIG_DIR / "data"


@pytest.fixture()
def small(mini_root, tmp_path) -> Path:
    """A writable copy of a few speakers of the mini corpus (train p226 p287 p903, test p912)."""
    keep = {"p226", "p287", "p903", "p912"}
    for folders in SPLIT_DIRS.values():
        for folder in folders:
            (tmp_path / "small" / folder).mkdir(parents=True)
            for wav in (mini_root / folder).glob("*.wav"):
                if speaker_of(wav.stem) in keep:
                    shutil.copy(wav, tmp_path / "small" / folder / wav.name)
    return tmp_path / "small"


def _first_batch(loader) -> dict:
    return next(iter(loader))


# --- pairing and splits ------------------------------------------------------------------------


def test_split_by_speaker(mini_root):
    dm = ValentiniDataModule(mini_root)
    dm.setup("fit")
    dm.setup("test")
    train = {p.name for p in dm.train_set.pairs}
    val = {p.name for p in dm.val_set.pairs}
    everything = {p.name for p in find_clean_noisy_pairs(mini_root, "train")}
    assert train | val == everything and not train & val
    assert {speaker_of(n) for n in val} == {"p226", "p287"}
    assert {speaker_of(n) for n in train}.isdisjoint({"p226", "p287"})
    test = {p.name for p in dm.test_set.pairs}
    assert test == {p.stem for p in (mini_root / "clean_testset_wav").glob("*.wav")}

    other = ValentiniDataModule(mini_root, val_speakers=["p903"], val_max_files=2)
    other.setup("fit")
    assert [speaker_of(p.name) for p in other.val_set.pairs] == ["p903", "p903"]


# --- batches -----------------------------------------------------------------------------------


def test_train_crops_val_whole_utterances(mini_root):
    dm = ValentiniDataModule(mini_root, crop_seconds=1.0, batch_size=4)
    dm.setup("fit")
    batch = _first_batch(dm.train_dataloader())
    assert batch["noisy"].shape == batch["clean"].shape == (4, 48000)
    assert batch["noisy"].dtype == batch["clean"].dtype == torch.float32
    assert len(batch["name"]) == 4
    for row, name in enumerate(batch["name"]):  # each crop is a slice of its own file
        noisy, _ = sf.read(mini_root / "noisy_trainset_28spk_wav" / f"{name}.wav", dtype="float32")
        crop = batch["noisy"][row].numpy()
        starts = [s for s in range(len(noisy) - 48000 + 1) if noisy[s] == crop[0]]
        assert any(np.array_equal(noisy[s : s + 48000], crop) for s in starts)

    val = _first_batch(dm.val_dataloader())
    clean, _ = sf.read(dm.val_set.pairs[0].clean, dtype="float32")
    assert val["name"] == [dm.val_set.pairs[0].name]
    assert np.array_equal(val["clean"].numpy(), clean[None])


def test_short_files_are_zero_padded(mini_root):
    dm = ValentiniDataModule(mini_root, crop_seconds=5.0, batch_size=2)  # files are <= 4 s
    dm.setup("fit")
    batch = _first_batch(dm.train_dataloader())
    assert batch["clean"].shape == (2, 5 * 48000)
    for row, name in enumerate(batch["name"]):
        clean, _ = sf.read(mini_root / "clean_trainset_28spk_wav" / f"{name}.wav", dtype="float32")
        assert np.array_equal(batch["clean"][row, : len(clean)].numpy(), clean)
        assert not batch["clean"][row, len(clean) :].any()
        assert not batch["noisy"][row, len(clean) :].any()


def _epoch(dm: ValentiniDataModule, epoch: int) -> list[tuple[str, float]]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [
        (name, float(noisy[:100].sum()))
        for batch in loader
        for name, noisy in zip(batch["name"], batch["noisy"], strict=True)
    ]


def test_crops_are_seeded_new_each_epoch_and_worker_independent(mini_root):
    def module(**kwargs) -> ValentiniDataModule:
        dm = ValentiniDataModule(mini_root, crop_seconds=1.0, batch_size=8, **kwargs)
        dm.setup("fit")
        return dm

    first = _epoch(module(seed=3), 0)
    assert first == _epoch(module(seed=3, num_workers=2), 0)  # same seed: same names and crops
    assert sorted(first) != sorted(_epoch(module(seed=3), 1))  # next epoch: new crops
    assert sorted(n for n, _ in first) == sorted(n for n, _ in _epoch(module(seed=3), 1))
    assert first != _epoch(module(seed=4), 0)


def _items(dm: ValentiniDataModule, epoch: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return {
        name: (noisy.numpy(), clean.numpy())
        for batch in loader
        for name, noisy, clean in zip(batch["name"], batch["noisy"], batch["clean"], strict=True)
    }


def _fitted_gain_db(scaled: np.ndarray, plain: np.ndarray) -> float:
    return 20 * np.log10(np.dot(scaled, plain) / np.dot(plain, plain))


def test_gain_augmentation_is_seeded_per_example_and_scales_noisy_and_clean(mini_root):
    def module(gains, **kwargs) -> ValentiniDataModule:
        dm = ValentiniDataModule(mini_root, crop_seconds=1.0, batch_size=8, seed=3,
                                 gains_db=gains, **kwargs)  # fmt: skip
        dm.setup("fit")
        return dm

    augmented = module([-6, 0, 6])
    plain = _items(module([0]), epoch=1)
    items = _items(augmented, epoch=1)
    drawn = {}
    for name, (noisy, clean) in items.items():
        gain = _fitted_gain_db(noisy, plain[name][0])
        assert _fitted_gain_db(clean, plain[name][1]) == pytest.approx(gain, abs=1e-4)
        np.testing.assert_allclose(noisy, plain[name][0] * 10 ** (gain / 20), atol=1e-6)
        drawn[name] = round(gain, 3)
    assert set(drawn.values()) == {-6.0, 0.0, 6.0}  # 36 examples: every gain is drawn
    # each draw is the dataset's seeded one: (seed, epoch, index), whatever the worker count
    index = {pair.name: i for i, pair in enumerate(augmented.train_set.pairs)}
    assert drawn == {n: augmented.train_set.gain_db(index[n], 1) for n in drawn}
    workers = _items(module([-6, 0, 6], num_workers=2), epoch=1)
    assert all(np.array_equal(workers[n][0], items[n][0]) for n in items)
    assert {n: round(_fitted_gain_db(v[0], plain[n][0]), 3) for n, v in items.items()} == drawn
    other_epoch = _items(augmented, epoch=2)
    other = module([-6, 0, 6])
    other.train_set.seed = 4
    assert (
        [augmented.train_set.gain_db(i, 2) for i in range(36)]
        != [augmented.train_set.gain_db(i, 1) for i in range(36)]
        != [other.train_set.gain_db(i, 1) for i in range(36)]
    )
    assert set(other_epoch) == set(items)
    # validation is never augmented: the files as they are
    val = _first_batch(augmented.val_dataloader())
    clean, _ = sf.read(augmented.val_set.pairs[0].clean, dtype="float32")
    assert np.array_equal(val["clean"].numpy(), clean[None])
    assert augmented.val_set.gains_db == (0.0,)


@pytest.mark.parametrize("gains", [[], "loud", [0, float("nan")], [0, 500], [True]])
def test_bad_gains_are_one_line_errors(mini_root, gains):
    with pytest.raises(UserError, match="data option gains_db="):
        ValentiniDataModule(mini_root, gains_db=gains)


class _RecordBatchSizes(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.sizes: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        self.sizes.setdefault(self.current_epoch, []).append(len(batch["name"]))
        return self.weight * batch["noisy"].mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no")
def test_batch_size_schedule_ramps_per_epoch_capped_at_batch_size(mini_root):
    schedule = {0: 4, 2: 12, 3: 64}  # 64 is capped at batch_size 16
    dm = ValentiniDataModule(mini_root, crop_seconds=0.1, batch_size=16,
                             batch_size_schedule=schedule)  # fmt: skip
    assert [dm.train_batch_size(e) for e in range(5)] == [4, 4, 12, 16, 16]
    model = _RecordBatchSizes()
    trainer = L.Trainer(
        max_epochs=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        reload_dataloaders_every_n_epochs=1,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    n = len(dm.train_set)  # 36 training utterances
    assert {e: len(sizes) for e, sizes in model.sizes.items()} == {
        0: -(-n // 4), 1: -(-n // 4), 2: -(-n // 12), 3: -(-n // 16)
    }  # fmt: skip
    assert [max(model.sizes[e]) for e in range(4)] == [4, 4, 12, 16]
    assert ValentiniDataModule(mini_root).train_batch_size(7) == 8  # off by default
    with pytest.raises(UserError, match="starting at epoch 0"):
        ValentiniDataModule(mini_root, batch_size_schedule={2: 24})


class _RecordCrops(L.LightningModule):
    """Trains nothing useful; records which crop it saw for every utterance in every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, str, float]] = []

    def training_step(self, batch, batch_idx):
        for name, noisy in zip(batch["name"], batch["noisy"], strict=True):
            self.seen.append((self.current_epoch, name, float(noisy[:100].sum())))
        return self.weight * batch["noisy"].mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(root: Path) -> list[tuple[int, str, float]]:
    model = _RecordCrops()
    trainer = L.Trainer(
        max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, datamodule=ValentiniDataModule(root, crop_seconds=0.5, batch_size=16))
    return model.seen


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no")
def test_lightning_gets_new_reproducible_crops_every_epoch(mini_root):
    seen = _fit(mini_root)
    epochs = [{(name, crop) for e, name, crop in seen if e == epoch} for epoch in (0, 1)]
    assert {n for n, _ in epochs[0]} == {n for n, _ in epochs[1]}  # every utterance, each epoch
    assert len(epochs[0] & epochs[1]) < len(epochs[0]) / 2  # mostly other crops in epoch 1
    assert _fit(mini_root) == seen


def test_other_rates_are_resampled_with_a_warning(small, tmp_path):
    for folder in SPLIT_DIRS["test"]:
        for wav in (small / folder).glob("*.wav"):
            audio, rate = sf.read(wav, dtype="float32")
            sf.write(wav, audio[::3], 16000, subtype="PCM_16")  # a "down-sampled" copy
    dm = ValentiniDataModule(small)
    with pytest.warns(UserWarning, match="files at 16000 Hz, not 48000 Hz"):
        dm.setup("test")
    batch = _first_batch(dm.test_dataloader())
    frames = sf.info(dm.test_set.pairs[0].clean).frames
    assert batch["clean"].shape == (1, 3 * frames)


# --- bad input fails early, naming files -------------------------------------------------------


def _setup_error(root: Path, stage: str = "fit", **kwargs) -> str:
    with pytest.raises(UserError) as info:
        ValentiniDataModule(root, **kwargs).setup(stage)
    return str(info.value)


def test_unpaired_files_are_named_with_a_count(small):
    noisy = small / "noisy_trainset_28spk_wav"
    removed = sorted(noisy.glob("*.wav"))[:7]
    for wav in removed:
        wav.unlink()
    message = _setup_error(small)
    assert f"7 only in {small / 'clean_trainset_28spk_wav'}" in message
    assert ", ".join(w.stem for w in removed[:5]) + " and 2 more" in message


def test_unreadable_and_nan_files_are_named(small):
    bad = small / "noisy_trainset_28spk_wav" / "p903_002.wav"
    bad.write_bytes(b"not a wav file at all")
    nan = small / "clean_trainset_28spk_wav" / "p226_001.wav"
    length = sf.info(nan).frames
    samples = np.zeros(length, np.float32)
    samples[100] = np.nan
    sf.write(nan, samples, 48000, subtype="FLOAT")
    message = _setup_error(small)
    assert message.startswith(f"{small} (train split): 2 unusable audio files")
    assert f"{bad}: cannot read audio" in message
    assert f"{nan}: audio contains NaN or Inf samples" in message


def test_length_mismatch_and_empty_file_are_named(small):
    clean = small / "clean_trainset_28spk_wav" / "p903_001.wav"
    audio, _ = sf.read(clean, dtype="float32")
    sf.write(clean, audio[:-10], 48000, subtype="PCM_16")
    sf.write(small / "noisy_trainset_28spk_wav" / "p903_003.wav", np.zeros(0), 48000)
    message = _setup_error(small)
    assert "p903_003.wav: file holds no audio samples" in message
    assert "1 pairs with different clean/noisy lengths: p903_001" in message


def test_empty_split_missing_folder_and_bad_speakers(small):
    for wav in (small / "clean_testset_wav").glob("*.wav"):
        wav.unlink()
    for wav in (small / "noisy_testset_wav").glob("*.wav"):
        wav.unlink()
    assert "the test split is empty" in _setup_error(small, "test")
    assert "val_speakers p999 not found" in _setup_error(small, val_speakers=["p999"])
    assert "leave no training speakers" in _setup_error(
        small, val_speakers=["p226", "p287", "p903"]
    )
    shutil.rmtree(small / "noisy_trainset_28spk_wav")
    assert "missing noisy_trainset_28spk_wav" in _setup_error(small)
    with pytest.raises(UserError, match="batch_size=0"):
        ValentiniDataModule(small, batch_size=0)


# --- verify ------------------------------------------------------------------------------------


def test_verify_reports_ok_and_problems(small, capsys):
    assert main(["data", "verify", "--root", str(small)]) == 0
    out = capsys.readouterr().out
    assert "train: " in out and "test: " in out and "48000 Hz; mono" in out
    assert out.strip().endswith("result: OK")

    for wav in (small / "noisy_testset_wav").glob("*.wav"):
        audio, _ = sf.read(wav, dtype="float32")
        sf.write(wav, audio[::3], 16000, subtype="PCM_16")
    (small / "clean_trainset_28spk_wav" / "p287_002.wav").write_bytes(b"RIFF broken")
    assert main(["data", "verify", "--root", str(small)]) == 1
    out = capsys.readouterr().out
    assert "1 unusable audio files" in out and "p287_002.wav: cannot read audio" in out
    assert "pairs with different clean/noisy sample rates" in out
    assert "files at 16000 Hz, not 48000 Hz: dfablate resamples" in out


def test_verify_explains_a_16k_copy(small, capsys):
    for folder in SPLIT_DIRS["test"]:
        for wav in (small / folder).glob("*.wav"):
            audio, _ = sf.read(wav, dtype="float32")
            sf.write(wav, audio[::3], 16000, subtype="PCM_16")
    assert main(["data", "verify", "--root", str(small), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "files at 16000 Hz, not 48000 Hz" in out and "band above 8000 Hz stays empty" in out
    assert main(["data", "verify", "--root", str(small / "nowhere")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


# --- configs -----------------------------------------------------------------------------------


def test_hydra_configs_instantiate(mini_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DFABLATE_CACHE", str(mini_root.parent))
    dm = instantiate(OmegaConf.load(CONFIGS / "mini.yaml"))
    assert isinstance(dm, ValentiniDataModule) and dm.root == mini_root
    assert (dm.sample_rate, dm.val_speakers) == (48000, ("p226", "p287"))

    monkeypatch.setenv("VALENTINI_ROOT", str(tmp_path / "valentini"))
    dm = instantiate(OmegaConf.load(CONFIGS / "valentini.yaml"))
    assert dm.root == tmp_path / "valentini" and dm.crop_samples == 3 * 48000


def test_crop_and_gain_draws_are_independent_golden_values():
    """Seed 0, epochs 0 and 1: pinned crop offsets and gains. The gain has its own random
    stream: drawn from the crop's stream it would follow the crop offsets."""
    from dfablate.data.datamodule import PairedWaveDataset

    data = PairedWaveDataset([None] * 8, 16000, crop_samples=1000, seed=0, gains_db=(-6, 0, 6))
    assert [data.crop_offset(10000, i, 0) for i in range(8)] == [
        7656, 8008, 1995, 6526, 2242, 7779, 4947, 8962]  # fmt: skip
    assert [data.gain_db(i, 0) for i in range(8)] == [0, 6, 6, -6, -6, -6, 0, 0]
    assert [data.crop_offset(10000, i, 1) for i in range(8)] == [
        4699, 6069, 4996, 1103, 1750, 7447, 3449, 6329]  # fmt: skip
    assert [data.gain_db(i, 1) for i in range(8)] == [0, -6, 0, -6, 6, 0, 6, -6]


def test_a_truncated_file_is_refused_in_training_data_and_verify(small, capsys):
    """A WAV whose header promises more frames than it holds: a one-line refusal at setup, a
    problem in `data verify` (libsndfile would read it as if complete)."""
    wav = small / "noisy_trainset_28spk_wav" / "p903_002.wav"
    frames = sf.info(wav).frames
    data = wav.read_bytes()
    wav.write_bytes(data[: 44 + 2 * (frames // 2)])  # PCM_16 mono: half the frames
    reason = f"{wav}: truncated: {frames // 2} of {frames} frames"
    assert reason in _setup_error(small)
    assert main(["data", "verify", "--root", str(small), "--split", "train"]) == 1
    assert reason in capsys.readouterr().out
