"""The one rich progress bar style of long-running stages (written to stderr)."""

from __future__ import annotations

from typing import Any


def progress_bar(enabled: bool = True) -> Any:
    """A rich Progress with count, elapsed and remaining time; a no-op when not `enabled`."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
