"""Composing dfablate's Hydra configs: where they live, user config folders, one-line errors.

The configs ship inside the package (`dfablate/configs/`, search path `pkg://dfablate.configs`).
A user's own folder of norm, model, data or experiment files joins the search path with
`--config-dir DIR` (any Hydra-driven command) or `hydra.searchpath=[file:///abs/DIR]`; its files
are used as if they were in the package (`norm=my_norm`, `experiment=my_study`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from dfablate.errors import UserError

CONFIG_PACKAGE = "dfablate.configs"
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
SEARCH_PATH_HEADING = "Config search path:"


def config_file(name: str) -> Path:
    """A file of the shipped configs, e.g. `config_file("ablate.yaml")`."""
    return Path(str(files(CONFIG_PACKAGE).joinpath(name)))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Hydra's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def user_error_cause(exc: BaseException) -> UserError | None:
    """The UserError that caused `exc` (Hydra wraps errors raised during instantiate)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def without_search_path(message: str) -> str:
    """Hydra's message about a config it cannot find, without the search path it appends (a
    long list of providers; `-v` shows the whole error with its traceback)."""
    return message.split(SEARCH_PATH_HEADING, 1)[0].rstrip()


def as_user_error(exc: BaseException) -> UserError:
    """A Hydra or OmegaConf error as a one-line UserError (its UserError cause if it has one)."""
    cause = user_error_cause(exc)
    return UserError(without_search_path(one_line(cause if cause is not None else exc)))


def compose_config(
    config_name: str, overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = True
) -> Any:
    """Compose `<config_name>.yaml` with command-line overrides, outside a Hydra run (no run
    dir); Hydra and OmegaConf errors come out as one-line UserErrors."""
    if "-m" in overrides or "--multirun" in overrides:
        raise UserError(f"dfablate {config_name} does not take -m/--multirun")
    try:
        with initialize_config_module(CONFIG_PACKAGE, version_base="1.3"):
            return compose(
                config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
            )
    except (HydraException, OmegaConfBaseException) as exc:
        raise as_user_error(exc) from exc


def override_key(override: str) -> str:
    """The config key a command-line override sets: `+data.root=DIR` -> `data.root`."""
    return override.split("=", 1)[0].lstrip("+~")
