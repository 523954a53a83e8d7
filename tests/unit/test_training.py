"""DfnSystem: recipe schedules, non-finite skipping, checkpoint identity (in-process, real model)."""

from __future__ import annotations

import math
import os
import sys

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from upstream import import_df_module, requires_reference

from dfablate.audio import load_audio
from dfablate.errors import UserError
from dfablate.training.checkpoints import (
    CheckpointMismatchError,
    NonFiniteTrainingError,
    RunCheckpoints,
    checkpoint_identity,
)
from dfablate.training.module import RECIPE_KEYS, DfnSystem, check_recipe
from dfablate.training.schedule import RecipeSchedule
from dfablate.training.task import Launch, _build_system, _command_line, compose_train_config

SR = 48000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model_config(name: str) -> dict:
    """model, loss and optim of the train config composed with model=<name>."""
    cfg = compose_train_config([f"model={name}"])
    return OmegaConf.to_container(cfg, resolve=True)


def _tiny(norm: str = "original") -> DfnSystem:
    cfg = _model_config("dfn3_tiny")
    return DfnSystem(norm=norm, model=cfg["model"], loss=cfg["loss"], optim=cfg["optim"])


@pytest.fixture(scope="module")
def batches(speech_48k, noisy_48k) -> list[dict]:
    """Real 1 s clean/noisy crops, batch size 2."""
    clean = load_audio(speech_48k, SR)
    noisy = load_audio(noisy_48k, SR)
    crops = [(clean[i : i + SR], noisy[i : i + SR]) for i in range(SR, 5 * SR, SR)]
    out = []
    for start in range(0, len(crops), 2):
        part = crops[start : start + 2]
        out.append(
            {
                "clean": torch.from_numpy(np.stack([c for c, _ in part])),
                "noisy": torch.from_numpy(np.stack([n for _, n in part])),
                "name": [f"crop{start + i}" for i in range(len(part))],
            }
        )
    return out


def _loader(batches: list[dict]) -> DataLoader:
    return DataLoader(batches, batch_size=None)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    args = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    args.update(kwargs)
    return L.Trainer(**args)


def test_model_configs_build_the_published_sizes():
    """Released DFN3 has 2.1 M parameters, DFN2 2.3 M (papers); the tiny one is ~20x smaller."""
    sizes = {}
    for name in ("dfn3", "dfn2", "dfn3_tiny"):
        cfg = _model_config(name)
        system = DfnSystem(norm="original", model=cfg["model"], loss=cfg["loss"])
        sizes[name] = sum(p.numel() for p in system.parameters())
    assert 2.0e6 < sizes["dfn3"] < 2.2e6
    assert 2.25e6 < sizes["dfn2"] < 2.35e6
    assert sizes["dfn3_tiny"] < sizes["dfn3"] / 10


@requires_reference
@pytest.mark.parametrize("warmup_epochs", [3, 0])
def test_recipe_schedule_equals_deepfilternet_cosine_scheduler(warmup_epochs):
    steps_per_epoch, epochs = 7, 10
    cosine = import_df_module("lr").cosine_scheduler
    lr_ref = cosine(1e-3, 1e-6, epochs, steps_per_epoch, warmup_epochs, start_warmup_value=1e-4)
    wd_ref = cosine(1e-12, 0.01, epochs, steps_per_epoch)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-3, weight_decay=1e-12)
    schedule = RecipeSchedule(
        opt,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=warmup_epochs * steps_per_epoch,
        lr=1e-3,
        lr_warmup=1e-4,
        lr_min=1e-6,
        weight_decay=1e-12,
        weight_decay_end=0.01,
    )
    lrs, wds = [], []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        wds.append(opt.param_groups[0]["weight_decay"])
        opt.step()
        schedule.step()
    np.testing.assert_allclose(lrs, lr_ref, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(wds[1:], wd_ref[1:], rtol=1e-9, atol=1e-15)
    assert wds[0] == 1e-12 or math.isclose(wds[0], wd_ref[0])


def test_nonfinite_batches_are_skipped_then_stop_the_run(tmp_path, batches):
    """NaN input: no parameter changes, counted; the limit raises and keeps last.ckpt."""
    system = _tiny()
    system.optim_cfg["max_consecutive_nonfinite"] = 3
    good = batches[:1]
    bad = [{**b, "noisy": torch.full_like(b["noisy"], float("nan"))} for b in batches[:1]]
    checkpoints = RunCheckpoints(every_n_train_steps=1)
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[checkpoints], limit_val_batches=0)
    trainer.fit(system, _loader(good))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    good_state = torch.load(last, weights_only=False)
    before = {k: v.clone() for k, v in system.state_dict().items()}

    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[RunCheckpoints(every_n_train_steps=1)])
    with pytest.warns(UserWarning, match="non-finite"):
        with pytest.raises(NonFiniteTrainingError, match="3 non-finite batches in a row"):
            trainer.fit(system, _loader(bad * 5), ckpt_path=str(last))
    assert system.nonfinite_total == 3
    for key, value in system.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed by a skipped batch"
    kept = torch.load(last, weights_only=False)
    assert kept["global_step"] == good_state["global_step"]  # not overwritten by the failure


def test_checkpoint_identity_rebuilds_the_same_model(tmp_path, batches):
    system = _tiny("fixed")
    trainer = _trainer(tmp_path, callbacks=[RunCheckpoints()], max_epochs=1)
    trainer.fit(system, _loader(batches), _loader(batches[:1]))
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert best.is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()

    identity = checkpoint_identity(best)
    assert identity["norm"] == "fixed"
    assert identity["model"]["arch"] == "dfn3"
    assert identity["model"]["params"]["conv_ch"] == "16"
    assert identity["model"]["params"]["df_gru_skip"] == "groupedlinear"
    assert identity["features"]["nb_df"] == 96 and identity["features"]["norm_tau"] == 1.0

    loaded = DfnSystem.load_checkpoint(best, expect_norm="fixed")
    assert loaded.norm == "fixed" and not loaded.training
    system.eval()
    noisy = batches[0]["noisy"]
    torch.testing.assert_close(loaded.enhance(noisy), system.enhance(noisy), rtol=0, atol=0)

    with pytest.raises(CheckpointMismatchError, match="norm=fixed.*norm=original"):
        DfnSystem.load_checkpoint(best, expect_norm="original")
    with pytest.raises(CheckpointMismatchError, match="model.arch=dfn3"):
        DfnSystem.load_checkpoint(best, expect_arch="dfn2")


def test_resuming_with_another_norm_is_refused(tmp_path, batches):
    trainer = _trainer(tmp_path, callbacks=[RunCheckpoints(every_n_train_steps=1)])
    trainer.fit(_tiny("fixed"), _loader(batches[:1]))
    last = tmp_path / "checkpoints" / "last.ckpt"
    other = _tiny("original")
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[RunCheckpoints()])
    with pytest.raises(CheckpointMismatchError, match="norm: checkpoint fixed"):
        trainer.fit(other, _loader(batches[:1]), ckpt_path=str(last))


def test_load_checkpoint_rejects_files_that_are_not_dfablate_checkpoints(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(UserError, match="nope.ckpt: checkpoint not found"):
        DfnSystem.load_checkpoint(missing)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="foreign.ckpt: not a dfablate training checkpoint"):
        DfnSystem.load_checkpoint(foreign)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.ckpt: not a readable checkpoint"):
        DfnSystem.load_checkpoint(garbage)


def test_ctrl_c_saves_last_checkpoint(tmp_path, batches):
    """KeyboardInterrupt mid-epoch: Lightning's graceful shutdown, and last.ckpt at that step."""

    class Interrupt(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                raise KeyboardInterrupt

    trainer = _trainer(tmp_path, callbacks=[RunCheckpoints(every_n_train_steps=100), Interrupt()])
    with pytest.raises(SystemExit):
        trainer.fit(_tiny(), _loader(batches))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2


class _RampedBatches(L.LightningDataModule):
    """Real 0.25 s crops; the number of batches per epoch follows `lengths` (a batch-size ramp
    seen from the optimizer: fewer, larger batches later)."""

    def __init__(self, batches: list[dict], lengths: list[int]):
        super().__init__()
        crop = {k: (v[:1, : SR // 4] if k != "name" else v[:1]) for k, v in batches[0].items()}
        self.crop, self.lengths = crop, lengths

    def train_dataloader(self) -> DataLoader:
        return _loader([self.crop] * self.lengths[self.trainer.current_epoch])


class _RecordSchedule(L.Callback):
    def __init__(self):
        self.seen: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        group = trainer.optimizers[0].param_groups[0]
        self.seen.append((group["lr"], group["weight_decay"]))


@requires_reference
def test_schedules_are_rebuilt_when_the_steps_per_epoch_change(tmp_path, batches):
    """As DeepFilterNet's trainer: at an epoch whose loader has another length, LR and WD
    schedules are set up anew for that length and indexed by epoch * len(loader) + i."""
    lengths, epochs = [4, 4, 2, 1], 4
    system = _tiny()
    system.optim_cfg["warmup_epochs"] = 1
    record = _RecordSchedule()
    trainer = _trainer(tmp_path, max_epochs=epochs, limit_val_batches=0, callbacks=[record],
                       reload_dataloaders_every_n_epochs=1)  # fmt: skip
    trainer.fit(system, datamodule=_RampedBatches(batches, lengths))
    cosine = import_df_module("lr").cosine_scheduler
    want = []
    for epoch, steps in enumerate(lengths):
        lrs = cosine(1e-3, 1e-6, epochs, steps, 1, start_warmup_value=1e-4)
        wds = cosine(1e-12, 0.01, epochs, steps)
        assert len(lrs) == len(wds) == epochs * steps  # the recomputed schedule lengths
        want += [(lrs[epoch * steps + i], wds[epoch * steps + i]) for i in range(steps)]
    assert len(record.seen) == sum(lengths)
    np.testing.assert_allclose(record.seen, want, rtol=1e-9, atol=1e-15)
    schedule = trainer.lr_scheduler_configs[0].scheduler
    assert (schedule.steps_per_epoch, schedule.total_steps, schedule.warmup_steps) == (1, 4, 1)


class _LearningRates(L.Callback):
    def __init__(self):
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@requires_reference
def test_training_follows_the_recipe_schedule_per_epoch(tmp_path, batches):
    """configure_optimizers turns warmup_epochs into steps with the real epoch length: the
    learning rate of every step equals DeepFilterNet's cosine_scheduler for that epoch length."""
    short = [{**b, "clean": b["clean"][:, :12000], "noisy": b["noisy"][:, :12000]} for b in batches]
    epochs, steps_per_epoch = 4, len(short)
    lrs = _LearningRates()
    trainer = _trainer(tmp_path, max_epochs=epochs, limit_val_batches=0, callbacks=[lrs])
    trainer.fit(_tiny(), train_dataloaders=_loader(short))
    cosine = import_df_module("lr").cosine_scheduler
    expected = cosine(1e-3, 1e-6, epochs, steps_per_epoch, 3, start_warmup_value=1e-4)
    assert steps_per_epoch == 2 and len(lrs.lrs) == epochs * steps_per_epoch
    np.testing.assert_allclose(lrs.lrs, expected, rtol=1e-9)


def test_df_alpha_head_trains_only_where_the_forward_uses_it():
    """DFN3 never uses df_dec.df_fc_a (frozen); DFN2 with dfop_method=real_unfold does."""
    cfg = _model_config("dfn2")
    dfn3 = _tiny()
    dfn2 = DfnSystem(norm="original", model=cfg["model"], loss=cfg["loss"])
    alpha_params = {**cfg["model"]["params"], "dfop_method": "real_unfold"}
    dfn2_alpha = DfnSystem(
        norm="original", model={"arch": "dfn2", "params": alpha_params}, loss=cfg["loss"]
    )
    trainable = [
        any(p.requires_grad for p in s.dfnet.df_dec.df_fc_a.parameters())
        for s in (dfn3, dfn2, dfn2_alpha)
    ]
    assert trainable == [False, False, True]


# --- resume, fast: the checkpoint callback's state, check_run's choice, the best score ---------


def test_run_checkpoints_state_round_trip():
    saved = RunCheckpoints()
    saved.best_score = 0.42
    restored = RunCheckpoints()
    restored.load_state_dict(saved.state_dict())
    assert restored.best_score == 0.42
    restored.load_state_dict({})  # a checkpoint from before the best score was kept
    assert restored.best_score == math.inf


def test_resume_restores_the_best_score(tmp_path, batches):
    """A resumed fit starts with the best validation loss of the run so far: a worse first
    validation after the resume must not replace best.ckpt."""
    first = RunCheckpoints(every_n_train_steps=100)
    trainer = _trainer(tmp_path, callbacks=[first], limit_val_batches=1)
    trainer.fit(_tiny(), _loader(batches), _loader(batches[:1]))
    assert math.isfinite(first.best_score)

    class Seen(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.best = resumed.best_score

    resumed, seen = RunCheckpoints(every_n_train_steps=100), Seen()
    trainer = _trainer(tmp_path, callbacks=[resumed, seen], limit_val_batches=1, max_epochs=2)
    trainer.fit(_tiny(), _loader(batches), _loader(batches[:1]),
                ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))  # fmt: skip
    assert seen.best == pytest.approx(first.best_score)


def test_check_run_resumes_from_last_ckpt(short_run, tmp_path):
    from dfablate.training.task import RunStart, check_run

    last = short_run.run_dir / "checkpoints" / "last.ckpt"
    step = int(torch.load(last, weights_only=True)["global_step"])
    resume = compose_train_config([*short_run.args, "resume=true"])
    assert check_run(resume, short_run.run_dir) == RunStart(str(last), step)
    with pytest.raises(UserError, match="already holds a training run"):
        check_run(compose_train_config(short_run.args), short_run.run_dir)
    assert check_run(resume, tmp_path / "new-run") == RunStart()  # nothing to resume yet
    other = tmp_path / "other.ckpt"
    other.write_bytes(last.read_bytes())
    explicit = compose_train_config([*short_run.args, "resume=true", f"ckpt_path={other}"])
    assert check_run(explicit, short_run.run_dir).ckpt_path == str(other)


def test_the_data_module_gets_the_runs_seed(mini_cache):
    """seed=0 and seed=1: different crop orders (the run's seed reaches the data module)."""
    from dfablate.training.task import build_datamodule

    orders = []
    for seed in (0, 1):
        datamodule = build_datamodule(compose_train_config(["data=mini", f"seed={seed}"]))
        assert datamodule.seed == seed
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(0)
        orders.append(list(loader.sampler))
    assert orders[0] != orders[1]


# --- the system: from the config's system: node, the recipe from the composed config ---------


def test_the_system_is_built_from_the_composed_config():
    """`system:` instantiates DfnSystem with the run's norm, model, loss and optim: an
    experiment's optim overrides and the recipe file's other settings, nothing read at run time."""
    cfg = compose_train_config(["experiment=demo", "norm=fixed", "val_metric_utterances=2"])
    system = _build_system(cfg)
    assert isinstance(system, DfnSystem)
    assert system.norm == "fixed" and system.val_metric_utterances == 2
    assert system.model_identity["model"]["params"]["conv_ch"] == "16"  # model=dfn3_tiny
    assert system.optim_cfg == OmegaConf.to_container(cfg.optim, resolve=True)
    assert system.optim_cfg["lr"] == 0.003 and system.optim_cfg["warmup_epochs"] == 0  # demo's
    assert system.optim_cfg["grad_clip"] == 1.0  # optim/dfn3.yaml's, composed
    assert set(system.optim_cfg) == set(RECIPE_KEYS)


def test_training_needs_the_whole_recipe_in_the_config():
    cfg = _model_config("dfn3_tiny")
    check_recipe(cfg["optim"])
    partial = {k: v for k, v in cfg["optim"].items() if k != "grad_clip"}
    with pytest.raises(UserError, match="optim.grad_clip: missing"):
        check_recipe(partial)
    with pytest.raises(UserError, match="optim.lr: missing"):
        check_recipe(None)


# --- DDP re-launch: what Launch decides, without starting DDP ----------------------------------

JOB = ["norm=fixed", "seed=1", "hydra.searchpath=[file:///my/configs]"]


@pytest.fixture
def no_cluster(monkeypatch):
    """No SLURM or torchrun environment, and not a rank started by Lightning."""
    for key in ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)


def test_ddp_from_the_cli_process_reruns_only_this_job(no_cluster, monkeypatch):
    """The `dfablate train` process (a sweep's too): ranks > 0 re-run `dfablate train <this
    job's overrides>`, not the command that started the sweep; deciding leaves sys.argv alone."""
    monkeypatch.setattr(sys, "argv", ["/venv/bin/dfablate", "-m", "norm=original,fixed"])
    launch = Launch.of_this_process()
    assert launch == Launch(os.getpid(), "/venv/bin/dfablate", relaunched=False)
    assert launch.strategy("ddp", JOB) == ("ddp", ["/venv/bin/dfablate", "train", *JOB])
    assert sys.argv == ["/venv/bin/dfablate", "-m", "norm=original,fixed"]


def test_a_ddp_child_started_by_lightning_keeps_its_command_line(no_cluster, monkeypatch):
    """A rank > 0 (Lightning sets LOCAL_RANK before re-running the command) runs `ddp` with
    the command line it was started with."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    launch = Launch.of_this_process()
    assert launch.relaunched
    assert launch.strategy("ddp", JOB) == ("ddp", None)


def test_strategies_that_rerun_nothing_are_kept(no_cluster, monkeypatch):
    """A non-DDP strategy is used as configured; DDP in a launcher worker (another process than
    the CLI's) becomes ddp_spawn; under torchrun or SLURM the cluster starts the ranks."""
    launch = Launch(os.getpid(), "dfablate", relaunched=False)
    for requested in ("auto", "ddp_spawn", "single_device", "fsdp"):
        assert launch.strategy(requested, JOB) == (requested, None)
    assert launch.strategy("ddp", JOB, pid=os.getpid() + 1) == ("ddp_spawn", None)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run")  # what torchrun sets
    assert launch.strategy("ddp", JOB) == ("ddp", None)


def test_the_rerun_command_line_holds_only_while_training(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dfablate", "-m", "seed=0,1"])
    with _command_line(["dfablate", "train", "seed=1"]):
        assert sys.argv == ["dfablate", "train", "seed=1"]
    assert sys.argv == ["dfablate", "-m", "seed=0,1"]
    with _command_line(None):
        assert sys.argv == ["dfablate", "-m", "seed=0,1"]
