"""Where dfablate writes: the default cache folders, and checks on where a command will write,
made before it writes anything (a refused command leaves no folder or file behind, and the
error names the option and the path)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dfablate.errors import UserError


def default_cache_dir() -> Path:
    """$DFABLATE_CACHE, else $XDG_CACHE_HOME/dfablate, else ~/.cache/dfablate."""
    if env := os.environ.get("DFABLATE_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dfablate"


def default_noisy_cache_dir() -> Path:
    """Scores of the unprocessed noisy input, shared by every run evaluated on a test set."""
    return default_cache_dir() / "noisy_scores"


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_names(path: Path, option: str) -> None:
    """Each part of `path` not created yet fits the file system's name limit (a too-long
    file name would otherwise fail only after its parent folders were made)."""
    ancestor = _existing_ancestor(path)
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.relative_to(ancestor).parts if path != ancestor else ():
        if len(os.fsencode(part)) > limit:
            raise UserError(
                f"{option} {path}: the name {part[:20]}... is longer than {limit} bytes"
            )


def _probe(folder: Path, option: str, path: Path) -> None:
    """Create and remove a file in `folder` (permission bits do not tell root what /proc
    or a read-only mount will refuse)."""
    if not folder.is_dir():
        raise UserError(f"{option} {path}: cannot write there ({folder} is not a directory)")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write in {folder} ({exc.strerror})") from None


def check_output_file(path: Path, option: str) -> None:
    """`path` can be written as a file: not a folder, in a folder that exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory; give a file name")
    _check_names(path, option)
    _probe(_existing_ancestor(path.parent), option, path)


def check_output_dir(path: Path, option: str, *, must_not_exist: bool = False) -> None:
    """`path` can be a folder to write in: not a file, writable or creatable; with
    `must_not_exist`, not there yet either."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a directory")
    if must_not_exist and path.exists():
        raise UserError(f"{option} {path}: already exists; choose another folder")
    _check_names(path, option)
    _probe(_existing_ancestor(path), option, path)
