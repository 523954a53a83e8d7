"""`dfablate train|evaluate|ablate --help`: every config group with its choices and every key
with its default, read from the composed config (and the YAML comments of the files it was
composed from), so that the listing cannot drift from what the command accepts.

Overrides given with `--help` are applied first: `dfablate train model=dfn3_tiny --help` lists
that composition's keys and defaults.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HIDDEN_TOP_KEYS = ("hydra",)  # Hydra's own settings: see `dfablate train --cfg hydra`
# the one Hydra group a user picks, for the config that runs jobs (sweeps, SLURM)
LISTED_HYDRA_GROUPS = {"train": ("hydra/launcher",)}
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")
VALUE_COLUMN = 40  # comments start after here (two spaces after a longer key=value)


@dataclass(frozen=True)
class Group:
    """A config group: its name, the configs it offers and the one composed."""

    name: str
    choices: list[str]
    chosen: str | None


@dataclass(frozen=True)
class Option:
    """A key as `KEY=VALUE` takes it, its default as composed (before interpolation) and the
    comment of the YAML line that sets it."""

    key: str
    default: str
    comment: str


@dataclass(frozen=True)
class Listing:
    groups: list[Group]
    options: list[Option]


def add_help_option(parser: argparse.ArgumentParser) -> None:
    """`-h/--help` that prints the usage, the epilog and the composed config's listing."""
    parser.add_argument(
        "-h",
        "--help",
        action="store_true",
        help="show this help with every config group and key and its default, then exit",
    )
    parser.set_defaults(help_parser=parser)


def add_hydra_stage(
    subparsers: argparse._SubParsersAction, name: str, *, summary: str, description: str,
    epilog: str, handler: Callable[[argparse.Namespace], int],
) -> None:  # fmt: skip
    """The parser of a Hydra-driven stage (train, evaluate, ablate): its arguments are Hydra
    overrides, and `--help` lists the composed config."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    add_help_option(parser)
    parser.set_defaults(handler=handler, accepts_overrides=True)


def format_value(value: Any) -> str:
    """A default as it is written on the command line: strings as they are, others as JSON
    (null, true, 1e-12, [-6, 0, 6], {})."""
    return value if isinstance(value, str) else json.dumps(value)


def leaf_options(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain dict tree; lists and empty dicts are leaves."""
    leaves: list[tuple[str, Any]] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves += leaf_options(value, dotted + ".")
        else:
            leaves.append((dotted, value))
    return leaves


def yaml_comments(text: str, package: str) -> dict[str, str]:
    """Dotted key (under `package`) -> the comment on its line, for a Hydra config file; the
    first line of a comment only, none for the `defaults` list."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        match = KEY_LINE.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        rest = match["rest"]
        if stack[0][1] == "defaults" or "#" not in rest:
            continue
        key = ".".join([package, *(k for _, k in stack)] if package else [k for _, k in stack])
        comments.setdefault(key, rest.split("#", 1)[1].strip())
    return comments


def _search_dirs(cfg: Any) -> list[Path]:
    """The shipped config folder, then the user folders of `hydra.searchpath`."""
    from dfablate.config import config_file

    user = [str(p)[len("file://") :] for p in cfg.hydra.searchpath if str(p).startswith("file://")]
    return [Path(str(config_file(""))), *(Path(p) for p in user)]


def _composition(config_name: str, overrides: list[str]) -> tuple[list[Group], list[Any]]:
    """The groups (choices, chosen) and the defaults list (files in composition order)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.types import RunMode

    from dfablate.config import CONFIG_PACKAGE, as_user_error

    try:
        with initialize_config_module(CONFIG_PACKAGE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            defaults = loader.compute_defaults_list(config_name, overrides, RunMode.RUN)
            groups = [
                Group(
                    name,
                    loader.get_group_options(name, config_name=config_name, overrides=overrides),
                    chosen,
                )
                for name, chosen in defaults.overrides.known_choices.items()
                if not name.startswith("hydra/") or name in LISTED_HYDRA_GROUPS.get(config_name, ())
            ]
    except HydraException as exc:
        raise as_user_error(exc) from exc
    return sorted(groups, key=lambda g: (g.name.startswith("hydra/"), g.name)), defaults.defaults


def _comments(defaults: list[Any], search_dirs: list[Path]) -> dict[str, str]:
    """Key -> comment from the config files composed (the first file that comments a key)."""
    comments: dict[str, str] = {}
    for default in defaults:
        if default.config_path is None or default.config_path.startswith("hydra/"):
            continue
        for folder in search_dirs:
            path = folder / f"{default.config_path}.yaml"
            if path.is_file():
                for key, text in yaml_comments(path.read_text(), default.package or "").items():
                    comments.setdefault(key, text)
                break
    return comments


def config_listing(config_name: str, overrides: list[str]) -> Listing:
    """The groups and options of `<config_name>.yaml` composed with `overrides`."""
    from omegaconf import OmegaConf

    from dfablate.config import compose_config

    cfg = compose_config(config_name, overrides)
    groups, defaults = _composition(config_name, overrides)
    comments = _comments(defaults, _search_dirs(cfg))
    tree = OmegaConf.to_container(cfg, resolve=False)
    for key in HIDDEN_TOP_KEYS:
        tree.pop(key, None)
    options = [
        Option(key, format_value(value), comments.get(key, "")) for key, value in leaf_options(tree)
    ]
    return Listing(groups, options)


def ablate_listing(overrides: list[str]) -> Listing:
    """The training groups and keys of the experiment (default: demo), with the `ablate.*`
    settings (configs/ablate.yaml merged with the experiment's `ablate:` section)."""
    from omegaconf import OmegaConf

    from dfablate.ablation_config import ablation_config
    from dfablate.config import config_file

    _, settings, train_overrides, _ = ablation_config(overrides)
    listing = config_listing("train", train_overrides)
    comments = yaml_comments(config_file("ablate.yaml").read_text(), "ablate")
    for option in listing.options:
        comments.setdefault(option.key, option.comment)
    settings_tree = {"ablate": OmegaConf.to_container(settings, resolve=False)}
    ablate_options = [
        Option(key, format_value(value), comments.get(key, ""))
        for key, value in leaf_options(settings_tree)
    ]
    trained = [o for o in listing.options if not o.key.startswith("ablate.")]
    return Listing(listing.groups, trained + ablate_options)


def format_listing(listing: Listing) -> str:
    """The groups, then the keys, one line each."""
    lines = ["config groups (GROUP=CHOICE; * marks the default):"]
    width = max(len(g.name) for g in listing.groups) + 2
    for group in listing.groups:
        choices = " | ".join(c + ("*" if c == group.chosen else "") for c in group.choices)
        lines.append(f"  {group.name:<{width}}{choices}")
    lines += ["", "keys (KEY=VALUE; defaults as composed, before ${...} interpolation):"]
    for option in listing.options:
        setting = f"  {option.key}={option.default}"
        if option.comment:
            setting = f"{setting:<{VALUE_COLUMN}}  {option.comment}"
        lines.append(setting.rstrip())
    return "\n".join(lines)


def print_help(args: argparse.Namespace, command: str) -> int:
    """Print `command --help`: argparse's usage and epilog, then the config listing."""
    listing = (
        ablate_listing(args.overrides)
        if command == "ablate"
        else config_listing(command, args.overrides)
    )
    print(args.help_parser.format_help().rstrip() + "\n\n" + format_listing(listing))
    return 0
