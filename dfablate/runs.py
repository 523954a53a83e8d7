"""A training run's checkpoints, found the same way by evaluate and ablate (`run=DIR` or
`ckpt=FILE`, best falling back to last), and content hashes of files."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from dfablate.errors import UserError

CHECKPOINT_CHOICES = ("best", "last")
HASH_BLOCK_BYTES = 1 << 20  # files are hashed in 1 MiB blocks, never read whole


def file_sha1(path: str | Path) -> str:
    """The SHA1 of a file's bytes (an evaluation's checkpoint, compare's inputs)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def run_checkpoint(run_dir: Path, which: str = "best") -> Path | None:
    """`checkpoints/<which>.ckpt` of a run, falling back to `last.ckpt`; None without either."""
    for name in dict.fromkeys((which, "last")):
        path = run_dir / "checkpoints" / f"{name}.ckpt"
        if path.is_file():
            return path
    return None


def resolve_checkpoint(
    run: str | Path | None, ckpt: str | Path | None, which: str = "best"
) -> tuple[Path, Path]:
    """(checkpoint file, run directory) from `run=DIR` or `ckpt=FILE`; a run without
    `<which>.ckpt` uses `last.ckpt` with a warning."""
    if (run is None) == (ckpt is None):
        raise UserError("give exactly one of run=DIR (a training run) or ckpt=FILE")
    if ckpt is not None:
        ckpt = Path(ckpt)
        if not ckpt.is_file():
            raise UserError(f"ckpt={ckpt}: checkpoint not found")
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        return ckpt, run_dir
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise UserError(f"run={run_dir}: run directory not found")
    if which not in CHECKPOINT_CHOICES:
        raise UserError(f"checkpoint={which}: must be best or last")
    path = run_checkpoint(run_dir, which)
    if path is None:
        raise UserError(
            f"run={run_dir}: no checkpoint (checkpoints/{which}.ckpt or checkpoints/last.ckpt); "
            "train it first or pass ckpt=FILE"
        )
    if path.stem != which:
        warnings.warn(f"{run_dir}: no {which}.ckpt, using last.ckpt", stacklevel=2)
    return path, run_dir
