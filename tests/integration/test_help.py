"""`train --help`, `evaluate --help` and `ablate --help` list every config group with its
choices and every key with its default, as composed; unknown config names are one line."""

from __future__ import annotations

import json

import pytest
from helpers import CONFIG_DIR
from omegaconf import OmegaConf

from dfablate.cli import main
from dfablate.config import compose_config


def help_lines(capsys, *args: str) -> list[str]:
    assert main([*args, "--help"]) == 0
    return capsys.readouterr().out.splitlines()


def settings(lines: list[str]) -> dict[str, str]:
    """KEY -> VALUE of the listing's `  KEY=VALUE  comment` lines."""
    start = lines.index("keys (KEY=VALUE; defaults as composed, before ${...} interpolation):")
    listed = {}
    for line in lines[start + 1 :]:
        key, value = line.strip().split("=", 1)
        listed[key] = value.split("  ")[0].strip()
    return listed


def groups(lines: list[str]) -> dict[str, list[str]]:
    """GROUP -> choices (the default keeps its *) of the listing's group lines."""
    start = lines.index("config groups (GROUP=CHOICE; * marks the default):")
    listed = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        name, choices = line.split(None, 1)
        listed[name] = choices.split(" | ")
    return listed


def flatten(tree, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def as_written(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def shipped_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("command", "overrides"),
    [("train", []), ("train", ["experiment=demo"]), ("evaluate", ["data=mini"])],
)
def test_the_listing_is_the_composed_config(command, overrides, capsys):
    lines = help_lines(capsys, command, *overrides)
    cfg = OmegaConf.to_container(compose_config(command, overrides), resolve=False)
    cfg.pop("hydra")
    expected = {key: as_written(value) for key, value in flatten(cfg).items()}
    assert settings(lines) == expected
    listed = groups(lines)
    choices = compose_config(command, overrides).hydra.runtime.choices
    for group, choice in choices.items():
        if group.startswith("hydra/"):
            continue
        marked = [c.rstrip("*") for c in listed[group]]
        assert marked == shipped_choices(group), group
        assert [c for c in listed[group] if c.endswith("*")] == (
            [f"{choice}*"] if choice is not None else []
        )
    assert set(listed) - {"hydra/launcher"} == {g for g in choices if not g.startswith("hydra/")}


def test_evaluate_help_lists_its_keys_and_defaults(capsys):
    listed = settings(help_lines(capsys, "evaluate"))
    for key, default in {
        "max_files": "null",
        "num_threads": "null",
        "noisy_cache_dir": "null",
        "input_gain_db": "0",
        "save_enhanced": "false",
        "data.root": "${oc.env:VALENTINI_ROOT,data/valentini}",
    }.items():
        assert listed[key] == default, key


def test_train_help_lists_data_and_trainer_keys_and_the_groups(capsys):
    lines = help_lines(capsys, "train")
    listed = settings(lines)
    assert listed["data.gains_db"] == "[-6, 0, 6]"
    assert listed["data.crop_seconds"] == "3.0"
    assert listed["trainer.max_epochs"] == "120"
    assert "input_gain_db" not in listed
    listed_groups = groups(lines)
    norms = sorted(path.stem for path in (CONFIG_DIR / "norm").glob("*.yaml"))
    assert listed_groups["norm"] == [n + "*" if n == "original" else n for n in norms]
    assert "joblib" in listed_groups["hydra/launcher"]
    comment = next(line for line in lines if line.strip().startswith("seed=43"))
    assert comment.split("seed=43", 1)[1].strip() == "the DFN3 recipe's seed"


def test_ablate_help_lists_the_demo_and_its_ablate_settings(capsys):
    lines = help_lines(capsys, "ablate")
    listed = settings(lines)
    demo = OmegaConf.load(CONFIG_DIR / "experiment" / "demo.yaml")
    assert listed["ablate.evaluate.input_gains_db"] == json.dumps(
        OmegaConf.to_container(demo.ablate.evaluate.input_gains_db)
    )
    ablate_yaml = flatten(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "ablate.yaml")))
    assert {k for k in listed if k.startswith("ablate.")} == {f"ablate.{k}" for k in ablate_yaml}
    assert listed["name"] == "demo" and listed["trainer.max_epochs"] == str(demo.trainer.max_epochs)
    assert "demo*" in groups(lines)["experiment"]


def test_unknown_config_names_leave_out_the_search_path(capsys):
    assert main(["evaluate", "data=nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: In 'evaluate': Could not find 'data/nosuch' "
        "Available options in 'data': mini valentini"
    )
    # -v: the same exit code, plus the traceback with Hydra's whole message
    assert main(["-v", "evaluate", "data=nosuch"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "Config search path" in err
    assert "pkg://dfablate.configs" in err
