"""Weights & Biases helpers: offline unless credentials exist, one run id per run directory,
media (audio, spectrograms, feature-std tables), and a reader for offline run files.

Without network or credentials W&B writes `<run_dir>/wandb/offline-run-*/run-<id>.wandb`;
`wandb sync <that folder>` uploads it later. `read_offline_run` parses that file (framed
protobuf records, see the W&B LevelDB-style log format) so tests and tools can check what was
logged without a server.
"""

from __future__ import annotations

import json
import netrc
import os
import secrets
import string
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from dfablate.errors import UserError

WANDB_MODES = ("auto", "online", "offline", "disabled")
RUN_ID_FILE = "dfablate_run_id"


def has_wandb_credentials() -> bool:
    """True when WANDB_API_KEY is set or ~/.netrc has an entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode(requested: str = "auto") -> str:
    """The W&B mode to use: WANDB_MODE if set, else `requested`; "auto" means online only with
    credentials, offline otherwise (no network needed; `wandb sync` uploads later)."""
    mode = os.environ.get("WANDB_MODE") or requested
    if mode == "dryrun":
        mode = "offline"
    if mode not in WANDB_MODES:
        raise UserError(f"logger.wandb.mode={mode!r} is not one of {', '.join(WANDB_MODES)}")
    if mode == "auto":
        return "online" if has_wandb_credentials() else "offline"
    return mode


def run_id(run_dir: str | Path) -> str:
    """The W&B run id of `run_dir`: created once, then reused so a resumed run continues it."""
    path = Path(run_dir) / "wandb" / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    new_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new_id + "\n")
    return new_id


def wandb_init_kwargs(
    run_dir: str | Path,
    project: str,
    group: str | None = None,
    tags: Sequence[str] = (),
    job_type: str = "train",
    mode: str = "auto",
    entity: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Arguments for `wandb.init` (or Lightning's WandbLogger) for a run living in `run_dir`."""
    return {
        "project": project,
        "entity": entity,
        "group": group,
        "tags": [str(t) for t in tags],
        "job_type": job_type,
        "mode": wandb_mode(mode),
        "dir": str(Path(run_dir)),
        "id": run_id(run_dir),
        "name": name or Path(run_dir).name,
        "resume": "allow",
    }


def init_wandb(run_dir: str | Path, config: Mapping[str, Any] | None = None, **kwargs: Any):
    """Start (or resume) the W&B run of `run_dir`; kwargs as for `wandb_init_kwargs`."""
    import wandb

    return wandb.init(config=dict(config or {}), **wandb_init_kwargs(run_dir, **kwargs))


def spectrogram_figure(waves: Mapping[str, np.ndarray], sample_rate: int):
    """A matplotlib figure with one log-magnitude spectrogram panel per named waveform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    fig, axes = plt.subplots(len(waves), 1, figsize=(8, 2.2 * len(waves)), squeeze=False)
    for ax, (title, wave) in zip(axes[:, 0], waves.items(), strict=True):
        freqs, times, spec = stft(wave, fs=sample_rate, nperseg=1024, noverlap=768)
        db = 20 * np.log10(np.abs(spec) + 1e-8)
        ax.pcolormesh(times, freqs / 1000, db, shading="auto", vmin=db.max() - 90, vmax=db.max())
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    return fig


def log_audio_example(
    run: Any,
    name: str,
    waves: Mapping[str, np.ndarray],
    sample_rate: int,
    step: int | None = None,
) -> None:
    """Log each named waveform as audio under `examples/<name>/<key>` and one spectrogram image
    (`step` goes in as `trainer/global_step`, Lightning's step key, not as W&B's own step)."""
    import matplotlib.pyplot as plt
    import wandb

    data: dict[str, Any] = {
        f"examples/{name}/{key}": wandb.Audio(np.asarray(w, dtype=np.float32), sample_rate)
        for key, w in waves.items()
    }
    fig = spectrogram_figure(waves, sample_rate)
    data[f"examples/{name}/spectrogram"] = wandb.Image(fig)
    plt.close(fig)
    if step is not None:
        data["trainer/global_step"] = step
    run.log(data)


def log_feature_std(run: Any, table: Any, norm: str) -> None:
    """Log the per-bin feature std (`dfablate.features.feature_std` DataFrame) as a table, plus
    its mean in the summary."""
    import wandb

    run.log({f"features/std_{norm}": wandb.Table(dataframe=table)})
    run.summary["features/std_mean"] = float(table[["std_real", "std_imag"]].to_numpy().mean())


# --- reading offline run files ------------------------------------------------------------

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
