"""Reading an offline W&B run file back, so tests check what was logged without a server.

Test code, not part of dfablate: it parses W&B's internal record format (framed protobuf
records, W&B's LevelDB-style log), which W&B may change in any release.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfablate.errors import UserError

_HEADER_LEN = 7
_BLOCK_SIZE = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline `run-<id>.wandb` file holds."""

    run: dict[str, Any] = field(default_factory=dict)  # id, project, group, tags, job_type
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str) -> list[tuple[int | None, Any]]:
        """(step, value) for every history row that has `key`."""
        return [(row.get("_step"), row[key]) for row in self.history if key in row]


def _payloads(data: bytes) -> Iterator[bytes]:
    """Reassemble the record payloads from the 32 KiB blocks of framed chunks."""
    pos, pending = _HEADER_LEN, b""
    while pos + _HEADER_LEN <= len(data):
        left_in_block = _BLOCK_SIZE - (pos % _BLOCK_SIZE)
        if left_in_block < _HEADER_LEN:  # block tail padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER_LEN])
        pos += _HEADER_LEN
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:  # zero fill at the end of a block
            pos += left_in_block - _HEADER_LEN
        else:
            raise ValueError(f"unknown W&B record chunk type {kind} at byte {pos}")


def _put(target: dict[str, Any], item: Any, value: Any) -> None:
    """Store `value` under the item's key; nested keys (media dicts) become nested dicts."""
    keys = list(item.nested_key) or [item.key]
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _history_value(item: Any) -> Any:
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    if kind and kind != "value_json":
        return getattr(item, kind) if kind != "none" else None
    return json.loads(item.value_json) if item.value_json else None


def offline_run_file(path: str | Path) -> Path:
    """The newest `run-*.wandb` file in a run dir, its `wandb/` folder or a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    files = sorted(path.rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise UserError(f"{path}: no offline W&B run file (run-*.wandb) found")
    return files[-1]


def read_offline_run(path: str | Path, wait_for_exit: float = 60.0) -> OfflineRun:
    """Parse an offline W&B run file (or the newest one under `path`) into an OfflineRun.

    `run.finish()` returns before W&B's service has necessarily flushed the file, so a file
    without its exit record (the last one of a finished run) is read again until it has one,
    for up to `wait_for_exit` seconds; a run still in progress is read as it is then.
    """
    import time

    file = offline_run_file(path)
    deadline = time.monotonic() + wait_for_exit
    while True:
        data = file.read_bytes()
        if not data.startswith(b":W&B"):
            raise UserError(f"{file}: not a W&B run file")
        out, finished = _parse_run(data)
        if finished or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def _parse_run(data: bytes) -> tuple[OfflineRun, bool]:
    """The records of a run file, and whether its exit record is among them."""
    from wandb.proto import wandb_internal_pb2 as pb

    out, finished = OfflineRun(), False
    for payload in _payloads(data):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.run = {
                "id": run.run_id,
                "project": run.project,
                "entity": run.entity,
                "group": run.run_group,
                "job_type": run.job_type,
                "name": run.display_name,
                "tags": list(run.tags),
            }
            for item in run.config.update:
                _put(out.config, item, json.loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _put(out.config, item, json.loads(item.value_json))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item, _history_value(item))
            out.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(out.summary, item, json.loads(item.value_json))
        elif kind == "exit":
            finished = True
    return out, finished
