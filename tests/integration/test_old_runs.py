"""Runs written before dfablate had its own model still load, evaluate and resume.

`tests/data/old_run_dfn3` is a real run folder written by dfablate at commit 34835e6, which built
deepfilternet's own DfNet: `dfablate train` with the overrides in its `.hydra/overrides.yaml`
(a 35 k-parameter DFN3 on the mini corpus, stopped mid-epoch at step 3 by `trainer.max_steps=3`,
`last.ckpt` written every step; best.ckpt left out to keep the folder small). Its checkpoint's
identity holds the parameters deepfilternet resolved.
"""

from __future__ import annotations

import shutil

import pandas as pd
import torch
import yaml
from helpers import DATA_DIR
from upstream import build_upstream_dfnet, requires_reference

from dfablate.audio import load_audio
from dfablate.cli import main
from dfablate.enhance import enhance_waveform
from dfablate.training.checkpoints import checkpoint_identity
from dfablate.training.module import DfnSystem

OLD_RUN = DATA_DIR / "old_run_dfn3"
OLD_CKPT = OLD_RUN / "checkpoints" / "last.ckpt"


def test_old_checkpoint_loads_with_its_identity():
    identity = checkpoint_identity(OLD_CKPT)
    system = DfnSystem.load_checkpoint(OLD_CKPT)
    assert system.model_identity == identity  # the native model resolves the same parameter strings
    assert identity["model"]["params"]["conv_ch"] == "8"
    assert identity["model"]["params"]["convt_kernel"] == "1,3"  # a default deepfilternet filled in
    stored = torch.load(OLD_CKPT, weights_only=False)["state_dict"]
    for key, value in system.state_dict().items():
        assert torch.equal(value, stored[key]), key


@requires_reference
def test_old_checkpoint_enhances_as_upstream_dfnet(speech_48k):
    system = DfnSystem.load_checkpoint(OLD_CKPT)
    params = checkpoint_identity(OLD_CKPT)["model"]["params"]
    upstream = build_upstream_dfnet("dfn3", **params)
    stored = torch.load(OLD_CKPT, weights_only=False)["state_dict"]
    upstream.load_state_dict(
        {k.removeprefix("dfnet."): v for k, v in stored.items() if k.startswith("dfnet.")}
    )
    upstream.eval()
    noisy = torch.from_numpy(load_audio(speech_48k, 48_000)[: 2 * 48_000].copy())
    got = system.enhance(noisy)
    want = enhance_waveform(noisy, system.features, upstream)
    assert float((got - want).abs().max()) <= 1e-6
    assert float(want.abs().max()) > 1e-3


def test_old_run_evaluates_and_resumes(tmp_path, mini_cache, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "outputs" / "old" / "original-seed43"
    shutil.copytree(OLD_RUN, run)
    code = main(["evaluate", f"run={run}", "max_files=2", "jobs=1", "progress=false",
                 "wandb.mode=disabled", f"noisy_cache_dir={tmp_path / 'noisy'}"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(run / "eval" / "mini-2files" / "metrics.csv")
    assert len(table) == 2 and table["pesq"].notna().all()

    overrides = yaml.safe_load((OLD_RUN / ".hydra" / "overrides.yaml").read_text())
    overrides = [o for o in overrides if not o.startswith("trainer.max_steps")]
    code = main(["train", *overrides, "trainer.max_steps=4", "resume=true"])
    assert code == 0, capsys.readouterr().err
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    old = torch.load(OLD_CKPT, weights_only=False)
    assert old["global_step"] == 3 and resumed["global_step"] == 4
    assert resumed["dfablate"] == old["dfablate"]
    metrics = pd.read_csv(run / "csv" / "metrics.csv")
    assert metrics["step"].max() == 3  # the CSV log continued after the old rows (0-based)
