"""`dfablate evaluate upstream=DIR`: a released-format DeepFilterNet folder, scored natively.

The folder is written as deepfilternet writes one: its own config (the parser behind
`df.config.config.save`) with `[train] model`, and `checkpoints/model_<epoch>.ckpt.best` holding
a randomly initialised upstream DfNet's state dict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from upstream import build_upstream_dfnet, import_df_module, requires_reference

from dfablate.audio import load_audio
from dfablate.cli import main
from dfablate.enhance import enhance_waveform
from dfablate.features import DfFeatures
from dfablate.models.build import build_model

SMALL = {"conv_ch": 8, "emb_hidden_dim": 32, "df_hidden_dim": 32, "enc_linear_groups": 8,
         "linear_groups": 8, "conv_lookahead": 2, "df_lookahead": 2, "pad_mode": "output",
         "df_gru_skip": "groupedlinear", "df_pathway_kernel_size_t": 5}  # fmt: skip


def _write_config(folder: Path, model: str = "deepfilternet3") -> None:
    """config.ini as deepfilternet saves it: its parser after building the model, plus [train]."""
    parser = import_df_module("config").config.parser
    if not parser.has_section("train"):
        parser.add_section("train")
    parser.set("train", "model", model)
    parser.set("deepfilternet", "gru_type", "squeeze")  # an old key released files still hold
    folder.mkdir(parents=True)
    with open(folder / "config.ini", "w") as f:
        parser.write(f)


def _args(folder: Path, root: Path, tmp_path: Path, *more: str) -> list[str]:
    return ["evaluate", f"upstream={folder}", "data=valentini", f"data.root={root}", "jobs=1",
            "wandb.mode=disabled", f"noisy_cache_dir={tmp_path / 'noisy'}", "progress=false",
            *more]  # fmt: skip


@requires_reference
def test_released_folder_is_scored_as_upstream_enhances(testset_root, tmp_path, capsys):
    folder = tmp_path / "DeepFilterNet3"
    torch.manual_seed(1)
    older = build_upstream_dfnet("dfn3", **SMALL)
    torch.manual_seed(2)
    released = build_upstream_dfnet("dfn3", **SMALL).eval()
    _write_config(folder)
    (folder / "checkpoints").mkdir()
    torch.save(older.state_dict(), folder / "checkpoints" / "model_2.ckpt.best")
    torch.save(released.state_dict(), folder / "checkpoints" / "model_10.ckpt.best")

    code = main(_args(folder, testset_root, tmp_path, "save_enhanced=true"))
    assert code == 0, capsys.readouterr().err
    out = folder / "eval" / "valentini"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["norm"] == "original" and summary["label"] == "upstream-DeepFilterNet3"
    assert summary["arch"] == "dfn3" and summary["checkpoint"].endswith("model_10.ckpt.best")
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == 5 and table["pesq"].notna().sum() == 4  # the silent pair: no PESQ
    # the enhanced audio is what upstream's own DfNet (epoch 10) gives with libDF's features
    noisy = torch.from_numpy(
        load_audio(testset_root / "noisy_testset_wav" / "p232_001.wav", 48_000)
    )
    want = enhance_waveform(noisy, DfFeatures(norm="original"), released).numpy()
    saved, _ = sf.read(out / "enhanced" / "p232_001.wav", dtype="float32")
    np.testing.assert_allclose(saved, want, atol=1e-6)
    assert np.abs(want).max() > 1e-3


def _native_folder(folder: Path, params: dict, model: str = "deepfilternet3") -> None:
    """A folder in deepfilternet's layout written without deepfilternet (for the error cases)."""
    folder.mkdir(parents=True)
    lines = ["[train]", f"model = {model}", "", "[deepfilternet]"]
    lines += [f"{k} = {v}" for k, v in params.items()]
    (folder / "config.ini").write_text("\n".join(lines) + "\n")
    (folder / "checkpoints").mkdir()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "folder not found"),
        ("no_config", "no config.ini"),
        ("dfn1", "[train] model = deepfilternet; supported: deepfilternet2, deepfilternet3"),
        ("no_checkpoint", "no checkpoints/model_<epoch>.ckpt.best"),
        ("wrong_weights", "does not fit the dfn3 model of config.ini"),
        ("bad_value", "conv_ch"),
        ("with_run", "give upstream=DIR alone"),
    ],
)
def test_bad_folders_are_one_line_errors_that_write_nothing(
    case, message, testset_root, tmp_path, capsys
):
    folder = tmp_path / "released"
    more: list[str] = []
    if case == "no_config":
        folder.mkdir()
    elif case == "dfn1":
        _native_folder(folder, {}, model="deepfilternet")
    elif case in ("no_checkpoint", "wrong_weights", "with_run", "bad_value"):
        params = dict(SMALL, conv_ch="eight" if case == "bad_value" else 8)
        _native_folder(folder, params)
        if case != "no_checkpoint":
            other = build_model("dfn3", **dict(SMALL, conv_ch=16))  # other shapes
            torch.save(other.state_dict(), folder / "checkpoints" / "model_5.ckpt.best")
        if case == "with_run":
            more = [f"run={tmp_path}"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(_args(folder, testset_root, tmp_path, *more)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
