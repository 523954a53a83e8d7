"""The settings that change speed, not results (data.preload, model.compile, runs_per_device):
declared in the shipped configs, validated in one line, and not part of a run's variant key."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from dfablate.config import compose_config, config_file
from dfablate.errors import UserError
from dfablate.records import variant_key_of
from dfablate.training.module import DfnSystem, check_compile_mode, compile_model
from dfablate.training.task import compose_train_config


def test_declared_defaults():
    for data in ("mini", "valentini"):
        cfg = compose_train_config([f"data={data}"])
        assert cfg.data.preload == "none"
        assert cfg.runs_per_device == 1
    for model in ("dfn3", "dfn3_tiny", "dfn2"):
        assert compose_train_config([f"model={model}"]).model.compile == "none"
    assert OmegaConf.load(config_file("ablate.yaml")).runs_per_device == 1


def _variant_key(overrides: list[str]) -> dict:
    """The variant key of a run trained with `overrides` (its config, unresolved)."""
    config = OmegaConf.to_container(compose_config("train", overrides), resolve=False)
    return variant_key_of(config)


def test_speed_settings_are_not_part_of_a_runs_variant_key():
    base = _variant_key(["data=mini"])
    speed = ["data.preload=device", "model.compile=reduce-overhead", "runs_per_device=4"]
    assert _variant_key(["data=mini", *speed]) == base
    assert _variant_key(["data=mini", "norm=fixed"]) != base


def test_compile_keeps_the_checkpoint_keys_and_refuses_unknown_modes():
    cfg = OmegaConf.to_container(compose_train_config(["model=dfn3_tiny"]), resolve=True)
    system = DfnSystem("original", cfg["model"], cfg["loss"], cfg["optim"])
    keys = list(system.state_dict())
    compile_model(system, "default")  # compiles lazily, at the first call
    assert list(system.state_dict()) == keys
    assert system.dfnet._compiled_call_impl is not None
    compile_model(system, "none")
    with pytest.raises(
        UserError, match="model.compile=max: must be one of none, default, reduce-overhead"
    ):
        check_compile_mode("max")
    assert isinstance(system.dfnet, torch.nn.Module)
