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

from dfablate.errors import UserError

CONFIG_PACKAGE = "dfablate.configs"
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
CONFIG_DIR_OPTIONS = ("--config-dir", "-cd")
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


def config_dir_overrides(arguments: list[str]) -> list[str]:
    """`arguments` with each `--config-dir DIR` (or `-cd DIR`, `--config-dir=DIR`) turned into
    a `hydra.searchpath` override, so that composing (evaluate, ablate, train's checks) and
    running Hydra see the same folders. A folder that does not exist is refused."""
    folders: list[Path] = []
    rest: list[str] = []
    items = iter(arguments)
    for argument in items:
        option, has_value, value = argument.partition("=")
        if option not in CONFIG_DIR_OPTIONS:
            rest.append(argument)
            continue
        if not has_value:
            value = next(items, "")
        if not value:
            raise UserError(f"{option}: give a config folder")
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise UserError(f"{option} {value}: config folder not found")
        folders.append(folder.resolve())
    if not folders:
        return rest
    if any(r.lstrip("+~").startswith("hydra.searchpath=") for r in rest):
        raise UserError("give config folders either with --config-dir or with hydra.searchpath")
    paths = ",".join(f"file://{folder}" for folder in folders)
    return [*rest, f"hydra.searchpath=[{paths}]"]


def compose_config(
    config_name: str, overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = True
) -> Any:
    """Compose `<config_name>.yaml` with command-line overrides, outside a Hydra run (no run
    dir); Hydra and OmegaConf errors come out as one-line UserErrors."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if "-m" in overrides or "--multirun" in overrides:
        raise UserError(f"dfablate {config_name} does not take -m/--multirun")
    try:
        with initialize_config_module(CONFIG_PACKAGE, version_base="1.3"):
            return compose(
                config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
            )
    except (HydraException, OmegaConfBaseException) as exc:
        raise as_user_error(exc) from exc
