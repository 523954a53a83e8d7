"""`dfablate ablate`'s arguments as a config: the experiment's training config, its `ablate.*`
settings (configs/ablate.yaml + the experiment's `ablate:` section + `ablate.*` overrides),
checked before anything runs. Apart from the stages (`dfablate.ablate`), so that
`dfablate ablate --help` composes the config without importing torch, Lightning or W&B."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dfablate.config import compose_config, config_file, override_key
from dfablate.cores import check_core_count
from dfablate.errors import UserError
from dfablate.paths import check_output_dir

SWEEP_KEYS = ("norm", "seed")
ABLATE_PREFIX = "ablate."


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(ablate.* overrides, plain training overrides, sweeps over norm/seed given on the line)."""
    ablate, train, sweeps = [], [], {}
    parser = OverridesParser.create()
    for text in overrides:
        if text in ("-m", "--multirun"):
            continue
        if text.startswith(ABLATE_PREFIX):
            ablate.append(text[len(ABLATE_PREFIX) :])
            continue
        override = parser.parse_override(text)
        key = override.get_key_element()
        if override.is_sweep_override():
            if key not in SWEEP_KEYS:
                raise UserError(f"{text}: ablate sweeps only {' and '.join(SWEEP_KEYS)}")
            sweeps[key] = [str(v) for v in override.sweep_string_iterator()]
        elif key in SWEEP_KEYS:  # one value replaces the experiment's sweep over that key
            sweeps[key] = [str(override.value())]
        else:
            train.append(text)
    return ablate, train, sweeps


def sweep_values(cfg, key: str, sweeps: dict[str, list[str]]) -> list[str]:
    """The values of `key` (norm or seed) the ablation sweeps: given on the line, else the
    experiment's sweep, else its one value."""
    if key in sweeps:
        return sweeps[key]

    params = cfg.hydra.sweeper.get("params") or {}
    if key not in params:
        return [str(cfg.norm.name if key == "norm" else cfg.seed)]
    override = OverridesParser.create().parse_override(f"{key}={params[key]}")
    if not override.is_sweep_override():
        return [str(override.value())]
    return [str(v) for v in override.sweep_string_iterator()]


def ablation_config(overrides: list[str]) -> tuple[Any, Any, list[str], dict[str, list[str]]]:
    """(the experiment's training config, its `ablate.*` settings, the training overrides, the
    norm/seed sweeps given on the line) for `dfablate ablate` arguments (default experiment:
    demo). The settings are configs/ablate.yaml merged with the experiment's `ablate:` section
    and the ablate.* overrides."""
    ablate_overrides, train_overrides, sweeps = _split_overrides(overrides)
    if not any(override_key(o) == "experiment" for o in train_overrides):
        train_overrides.insert(0, "experiment=demo")
    cfg = compose_config("train", train_overrides)
    settings = OmegaConf.load(config_file("ablate.yaml"))
    if cfg.get("ablate") is not None:
        section = OmegaConf.to_container(cfg.ablate)
        check_ablate_keys(settings, section, "the experiment's ablate: section")
        settings = OmegaConf.merge(settings, cfg.ablate)
    for override in ablate_overrides:
        key = override_key(override)
        check_ablate_keys(settings, _nested(key.split(".")), f"{ABLATE_PREFIX}{override}")
    if ablate_overrides:
        settings = OmegaConf.merge(settings, OmegaConf.from_dotlist(ablate_overrides))
    check_ablate_settings(settings)
    return cfg, settings, train_overrides, sweeps


def _nested(keys: list[str]) -> dict:
    """`["evaluate", "jobs"]` as `{"evaluate": {"jobs": None}}`."""
    tree: dict = {}
    for key in reversed(keys):
        tree = {key: tree or None}
    return tree


def check_ablate_keys(schema, given, where: str, prefix: str = "") -> None:
    """Refuse any key of `given` that configs/ablate.yaml (`schema`) does not declare: a typo
    would otherwise be ignored silently. A key declared as `{}` is an open mapping whose
    children are free (e.g. metric names)."""
    if not isinstance(given, dict):
        return
    for key, value in given.items():
        name = f"{prefix}{key}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise UserError(
                f"{where}: {ABLATE_PREFIX}{name} is not an ablate setting "
                f"(configs/ablate.yaml declares them){hint}"
            )
        declared = schema[key]
        if isinstance(declared, DictConfig) and len(declared) > 0:
            check_ablate_keys(declared, value, where, f"{name}.")


def check_ablate_settings(settings) -> None:
    """Values the evaluate and compare stages would fail on only after training."""
    runs_per_device = settings.get("runs_per_device", 1)
    if (
        isinstance(runs_per_device, bool)
        or not isinstance(runs_per_device, int)
        or runs_per_device < 1
    ):
        raise UserError(
            f"{ABLATE_PREFIX}runs_per_device={runs_per_device}: must be an integer of at least 1"
        )
    options = settings.evaluate
    max_files = options.get("max_files")
    if max_files is not None and (
        isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1
    ):
        raise UserError(
            f"{ABLATE_PREFIX}evaluate.max_files={max_files}: must be a whole number, 1 or more"
        )
    check_core_count(options.get("jobs"), f"{ABLATE_PREFIX}evaluate.jobs")
    if not isinstance(options.get("save_enhanced"), bool):
        raise UserError(
            f"{ABLATE_PREFIX}evaluate.save_enhanced={options.save_enhanced}: must be true or false"
        )
    if settings.get("compare_dir"):
        check_output_dir(Path(str(settings.compare_dir)), f"{ABLATE_PREFIX}compare_dir")
    mode = settings.wandb.get("mode")
    if mode not in (None, "auto", "online", "offline", "disabled"):
        raise UserError(f"{ABLATE_PREFIX}wandb.mode={mode}: use auto, online, offline or disabled")
