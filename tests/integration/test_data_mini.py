"""The mini corpus: Valentini layout and SNRs, real speech, determinism, atomic building."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfablate.cli import main
from dfablate.data import mini
from dfablate.data.valentini import SPLIT_DIRS, find_clean_noisy_pairs, speaker_of
from dfablate.errors import UserError


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _snr_db(clean: np.ndarray, noisy: np.ndarray, rate: int) -> float:
    """Valentini-style SNR: speech power over its active 20 ms frames (within 40 dB of the
    loudest) against the power of the added noise."""
    frame = rate // 50
    frames = clean[: len(clean) // frame * frame].reshape(-1, frame)
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    speech = power[power > power.max() * 1e-4].mean()
    return float(10 * np.log10(speech / np.mean((noisy - clean) ** 2)))


def test_mini_has_the_valentini_layout_snrs_and_speaker_split(mini_root):
    speakers = {}
    for split, snrs in (("train", {0.0, 5.0, 10.0, 15.0}), ("test", {2.5, 7.5, 12.5, 17.5})):
        pairs = find_clean_noisy_pairs(mini_root, split)
        assert {p.name for p in pairs} == {p.stem for p in pairs[0].noisy.parent.glob("*.wav")}
        speakers[split] = {speaker_of(p.name) for p in pairs}
        measured = set()
        for pair in pairs:
            assert re.fullmatch(r"p\d{3}_\d{3}", pair.name)
            clean, rate = sf.read(pair.clean, dtype="float32")
            noisy, noisy_rate = sf.read(pair.noisy, dtype="float32")
            info = sf.info(pair.noisy)
            assert (rate, noisy_rate, info.channels, info.subtype) == (48000, 48000, 1, "PCM_16")
            assert clean.shape == noisy.shape and 1.5 <= len(clean) / rate <= 4.0
            measured.add(round(_snr_db(clean, noisy, rate) * 2) / 2)  # 16-bit rounding: ~0.01 dB
        assert measured == snrs
    assert len(find_clean_noisy_pairs(mini_root, "train")) >= 30
    assert {"p226", "p287"} <= speakers["train"] and len(speakers["train"]) >= 5
    assert len(speakers["test"]) >= 2 and not speakers["train"] & speakers["test"]
    manifest = json.loads((mini_root / mini.MARKER).read_text())
    assert {f["noise"] for f in manifest["files"]} == {"recording", "babble", "pink", "brown"}
    assert not (set(mini_root.iterdir()) - {mini_root / d for p in SPLIT_DIRS.values() for d in p}
                - {mini_root / mini.MARKER})  # fmt: skip


def test_mini_clean_files_are_the_bundled_speech(mini_root):
    """The clean utterances are the shipped real recordings (resampled), not synthetic signals."""
    manifest = json.loads((mini_root / mini.MARKER).read_text())
    entry = next(f for f in manifest["files"] if f["speaker"] == "p912")  # arctic_a0009, one clip
    clean, rate = sf.read(mini_root / "clean_testset_wav" / f"{entry['name']}.wav")
    source, source_rate = sf.read(mini.CLIPS_DIR / f"{entry['source']}.flac")
    assert (source_rate, rate) == (16000, 48000)
    decimated = clean[::3][: len(source)]
    # the clip appears inside the source at some offset (trimmed), up to gain and resampling
    corr = np.correlate(source, decimated[:16000], mode="valid")
    best = int(np.argmax(np.abs(corr)))
    a, b = source[best : best + 16000], decimated[:16000]
    assert abs(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99


def test_another_seed_gives_another_corpus(mini_root, tmp_path, capsys):
    assert main(["data", "make-mini", "--out", str(tmp_path / "seed1"), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train pairs" in printed
    clean = Path(re.search(r"clean: (\S+)", printed)[1])
    noisy = Path(re.search(r"noisy: (\S+)", printed)[1])
    assert (clean.parent.name, noisy.parent.name) == SPLIT_DIRS["test"]
    assert clean.name == noisy.name and sf.info(clean).frames == sf.info(noisy).frames
    assert f"data=mini data.root={tmp_path / 'seed1'}" in printed
    other, reference = _files(tmp_path / "seed1"), _files(mini_root)
    assert other.keys() == reference.keys()
    assert all(other[k] != reference[k] for k in other if k.startswith("noisy"))


def test_make_mini_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists and is not empty"):
        mini.make_mini(tmp_path / "out")
    assert main(["data", "make-mini", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'out'}")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_ensure_mini_builds_atomically_once_and_reproducibly(tmp_path, monkeypatch, mini_root):
    cache = tmp_path / "cache"
    calls = {"n": 0}
    real_mix = mini._mix

    def failing_mix(*args, **kwargs):  # a crash halfway through writing the corpus
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("crash while building")
        return real_mix(*args, **kwargs)

    monkeypatch.setattr(mini, "_mix", failing_mix)
    with pytest.raises(RuntimeError, match="crash while building"):
        mini.ensure_mini(cache, seed=0)
    assert list(cache.iterdir()) == []  # neither a half corpus nor a temporary folder is left
    monkeypatch.setattr(mini, "_mix", real_mix)

    root = mini.ensure_mini(cache, seed=0)
    assert _files(root) == _files(mini_root)  # same seed: byte-identical, marker included
    marker_time = (root / mini.MARKER).stat().st_mtime_ns
    assert mini.ensure_mini(cache, seed=0) == root  # second call: found, not rebuilt
    assert (root / mini.MARKER).stat().st_mtime_ns == marker_time
    assert [p.name for p in cache.iterdir()] == [root.name]


def test_data_root_of_mini_is_a_corpus_built_by_make_mini(mini_root, tmp_path, capsys):
    from hydra.utils import instantiate

    from dfablate.config import compose_config

    cfg = compose_config("train", ["data=mini", f"data.root={mini_root}"])
    assert instantiate(cfg.data).root == mini_root
    out = tmp_path / "runs"
    not_built = tmp_path / "not-built"
    args = ["train", "data=mini", f"data.root={not_built}", f"output_root={out}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: data.root={not_built}: not a mini corpus"), err
    assert not out.exists() and not not_built.exists()
