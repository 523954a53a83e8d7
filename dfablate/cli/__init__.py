"""The `dfablate` command: one entry point, one subcommand module per stage.

Each module in `dfablate.cli` (one per subcommand) defines `add_parser(subparsers)` and `run(args) -> int`.
Hydra-driven stages (train, evaluate, ablate) pass their remaining arguments to Hydra as
overrides (`--config-dir DIR` adds a user config folder). User errors (`UserError`) print as one
line and exit 2; `-v/--verbose`, before or after the subcommand, only adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings
from pathlib import Path

from dfablate.errors import Interrupted, UserError

COMMANDS = (
    "train", "evaluate", "compare", "ablate", "score", "features", "data", "wandb-report",
)  # fmt: skip
VERBOSE_FLAGS = ("-v", "--verbose")
CONFIG_DIR_OPTIONS = ("--config-dir", "-cd")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfablate",
        description="Train, evaluate and compare DeepFilterNet variants (normalisation ablations).",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show tracebacks and debug logs"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dfablate.cli.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


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
    from dfablate.config import override_key  # here: hydra loads only with --config-dir

    if any(override_key(r) == "hydra.searchpath" for r in rest):
        raise UserError("give config folders either with --config-dir or with hydra.searchpath")
    paths = ",".join(f"file://{folder}" for folder in folders)
    return [*rest, f"hydra.searchpath=[{paths}]"]


def _take_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """`argv` without -v/--verbose, wherever it stands (Hydra would read `evaluate -v` as an
    override), and whether it was there."""
    kept = [arg for arg in argv if arg not in VERBOSE_FLAGS]
    return kept, len(kept) != len(argv)


def main(argv: list[str] | None = None) -> int:
    argv, verbose = _take_verbose(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.verbose = verbose
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    warnings.formatwarning = _format_warning
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        args.overrides = config_dir_overrides(extra)
        args.argv = list(argv)  # the command line, for records such as the W&B Report's
        return int(args.handler(args) or 0)
    except UserError as exc:
        if args.verbose:  # the traceback, and the same exit code as without -v
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        hint = str(exc) if isinstance(exc, Interrupted) else ""
        print(f"interrupted: {hint}" if hint else "interrupted", file=sys.stderr)
        return 130
