"""The one rich progress bar style of long-running stages (written to stderr): evaluation,
scoring, dataset verification, downloads and zip checks."""

from __future__ import annotations

from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def progress_bar(
    enabled: bool = True, *, counts: Literal["items", "bytes"] = "items", transient: bool = False
) -> Any:
    """A rich Progress with the task name, a bar, the count done (items, or bytes with the
    transfer speed) and the time elapsed and left; a no-op when not `enabled`; `transient`
    bars vanish when done."""
    done = (
        (DownloadColumn(), TransferSpeedColumn()) if counts == "bytes" else (MofNCompleteColumn(),)
    )
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *done,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=transient,
    )
