"""The records passed between stages: what a trained run is (`RunRecord`, written by `train` as
`run.json`) and what one evaluation of it is (`EvalRecord`, written by `evaluate` as
`summary.json`). `compare`, `ablate` and W&B logging read them back with `from_dir`.

Run folders made before `run.json` existed still load: `RunRecord.from_dir` falls back to the
config Hydra recorded (`.hydra/`), then to an evaluation's `summary.json`, then to the folder's
name (`<norm>-seed<N>`), and nothing else in dfablate reads those.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dfablate.errors import UserError
from dfablate.runs import CHECKPOINT_CHOICES

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
RUN_NAME = re.compile(r"^(?P<norm>[A-Za-z0-9_]+)-seed(?P<seed>\d+)$")
RUN_DIR_SEARCH_DEPTH = 4  # a metrics CSV lies at most <run>/eval/<dataset>/ deep (plus one)
RUN_NAME_SEARCH_DEPTH = 3  # an evaluation folder, its parent and the run: <run>/eval/<dataset>
TRAIN_GAINS = "data.gains_db"  # training gain augmentation; missing means none ([0])

# Config keys that change neither the trained model nor the test, so runs that differ only in
# them are seeds of one variant. Every other key, known or new, splits variants: a wrongly split
# variant shows in the comparison's table, wrongly merged runs would not show anywhere. `system`
# only repeats model, norm, loss and optim (its arguments interpolate them).
NOT_VARIANT_KEYS = (
    "seed", "output_root", "resume", "ckpt_path", "num_threads", "validate_first",
    "val_metric_utterances", "logger", "callbacks.media", "callbacks.progress_bar",
    "callbacks.checkpoints.every_n_train_steps", "data.cache_dir", "data.root",
    "data.num_workers", "data.pin_memory", "data.preload", "model.compile", "runs_per_device",
    "trainer.accelerator", "trainer.devices",
    "trainer.num_nodes", "trainer.strategy", "trainer.log_every_n_steps",
    "trainer.enable_progress_bar", "ablate", "hydra", "system",
)  # fmt: skip

# summary.json's keys that say what was evaluated (the code calls them its provenance); the
# summary keeps them at its top level.
PROVENANCE_KEYS = (
    "checkpoint", "checkpoint_sha1", "run_dir", "experiment", "norm", "seed", "arch", "label",
    "source",
)  # fmt: skip


def flatten_config(config: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as `a.b.c` -> value, values as strings (non-strings as JSON)."""
    if isinstance(config, dict):
        flat: dict[str, str] = {}
        for key, value in config.items():
            flat.update(flatten_config(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: config if isinstance(config, str) else json.dumps(config)}


def _not_variant(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NOT_VARIANT_KEYS)


def variant_key_of(config: dict) -> dict[str, str]:
    """The flattened config keys that define a run's variant (`NOT_VARIANT_KEYS` left out);
    training gains written out ([0] when missing), so an explicit default does not split."""
    key = {k: v for k, v in flatten_config(config).items() if not _not_variant(k)}
    gains = json.loads(key.get(TRAIN_GAINS, "null")) or [0]
    gains = gains if isinstance(gains, list) else [gains]
    key[TRAIN_GAINS] = json.dumps([float(g) for g in gains])
    return key


def _optional(value: Any) -> Any:
    return None if value in (None, "null") else value


def read_summary(eval_dir: Path) -> dict:
    """`summary.json` of an evaluation folder; {} when there is none."""
    path = eval_dir / SUMMARY_FILE
    return _read_json(path, "evaluation summary") if path.is_file() else {}


def _read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`; a one-line UserError naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a {what} (a JSON object was expected)")
    return data


def _hydra_record(run_dir: Path) -> tuple[dict, dict[str, str]] | None:
    """The run's `.hydra/config.yaml` (unresolved) and `hydra.yaml` group choices."""
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        return None
    config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
    choices: dict[str, str] = {}
    hydra_path = run_dir / ".hydra" / "hydra.yaml"
    if hydra_path.is_file():
        found = OmegaConf.select(OmegaConf.load(hydra_path), "hydra.runtime.choices")
        if found is not None:
            choices = {k: str(v) for k, v in OmegaConf.to_container(found).items()}
    return config, choices


@dataclass(frozen=True)
class RunRecord:
    """What a trained run is: its recorded config and the facts read from it.

    `variant_key` is what makes the run's variant (runs with equal keys are seeds of one
    variant); a run known only from a summary or a folder name has a smaller key (norm, arch,
    experiment; or the summary's `label`), and one known from nothing has an empty key.
    """

    run_dir: Path
    config: dict = field(default_factory=dict)  # as Hydra recorded it (unresolved); {}: unknown
    choices: dict[str, str] = field(default_factory=dict)  # config group choices (model: dfn3)
    variant_key: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    norm: str | None = None
    arch: str | None = None
    experiment: str | None = None  # the training config's `name`
    label: str | None = None  # a name given by the evaluation (an upstream model's)

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def has_config(self) -> bool:
        """Known from its recorded config, not from a summary or its folder's name."""
        return bool(self.config)

    @property
    def checkpoints(self) -> dict[str, Path]:
        """The run's checkpoints that exist, by name (best, last)."""
        folder = self.run_dir / "checkpoints"
        return {
            n: folder / f"{n}.ckpt" for n in CHECKPOINT_CHOICES if (folder / f"{n}.ckpt").is_file()
        }

    @classmethod
    def of_config(cls, run_dir: Path, config: dict, choices: dict[str, str]) -> RunRecord:
        """The record of a run trained with `config` (unresolved, as Hydra records it)."""
        seed = _optional(config.get("seed"))
        return cls(
            run_dir=Path(run_dir),
            config=config,
            choices=dict(choices),
            variant_key=variant_key_of(config),
            seed=None if seed is None else int(seed),
            norm=_optional((config.get("norm") or {}).get("name")),
            arch=_optional((config.get("model") or {}).get("arch")),
            experiment=_optional(config.get("name")),
        )

    @classmethod
    def from_hydra(cls, run_dir: Path) -> RunRecord | None:
        """The record of the config Hydra recorded in `run_dir/.hydra/`; None without one."""
        hydra = _hydra_record(Path(run_dir))
        return cls.of_config(Path(run_dir), *hydra) if hydra is not None else None

    @classmethod
    def recorded_in(cls, path: Path, depth: int = RUN_DIR_SEARCH_DEPTH) -> RunRecord | None:
        """The record of the run `path` lies in (`run.json` or `.hydra/`, in `path` or in the
        folders above it, `depth` folders in all); None when none has one."""
        path = Path(path)
        for folder in [path, *path.parents][:depth]:
            if (folder / RUN_FILE).is_file():
                recorded = _read_json(folder / RUN_FILE, "run record")
                if not isinstance(recorded.get("config"), dict):
                    raise UserError(f"{folder / RUN_FILE}: not a run record (no config)")
                return cls.of_config(folder, recorded["config"], recorded.get("choices") or {})
            if (recorded := cls.from_hydra(folder)) is not None:
                return recorded
        return None

    @classmethod
    def from_dir(cls, path: Path, summary: dict | None = None) -> RunRecord:
        """The run `path` (a run folder, or an evaluation folder inside one) belongs to: its
        `run.json`, else its `.hydra/` config, else what `summary` (by default `path`'s
        `summary.json`) records, else what its folder's name (`<norm>-seed<N>`) says."""
        path = Path(path)
        recorded = cls.recorded_in(path)
        if recorded is not None:
            return recorded
        summary = read_summary(path) if summary is None else summary
        folders = [path, *path.parents][:RUN_NAME_SEARCH_DEPTH]
        named = next((f for f in folders if RUN_NAME.match(f.name)), None)
        folder = RUN_NAME.match(named.name) if named is not None else None
        seed = _optional(summary.get("seed"))
        if seed is None and folder is not None:
            seed = folder["seed"]
        label = _optional(summary.get("label"))
        norm = _optional(summary.get("norm")) or (folder["norm"] if folder else None)
        arch, experiment = _optional(summary.get("arch")), _optional(summary.get("experiment"))
        if label is not None:
            key = {"label": str(label)}
        else:
            found = (("norm.name", norm), ("model.arch", arch), ("name", experiment))
            key = {k: str(v) for k, v in found if v is not None}
        return cls(
            run_dir=named if named is not None else path,
            variant_key=key,
            seed=None if seed is None else int(seed),
            norm=norm,
            arch=arch,
            experiment=experiment,
            label=label,
        )

    def to_json(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "seed": self.seed,
            "norm": self.norm,
            "arch": self.arch,
            "experiment": self.experiment,
            "choices": self.choices,
            "variant_key": self.variant_key,
            "config": self.config,
        }

    def write(self) -> Path:
        """`run.json` in the run folder (what `from_dir` reads first)."""
        path = self.run_dir / RUN_FILE
        tmp = path.with_name(f".{RUN_FILE}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)
        return path


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation of one run on one test set at one input gain: where its per-file scores
    are, what produced them (`provenance`: checkpoint, its hash, norm, seed, ...) and its
    results. `to_json` is `summary.json`, whose top-level keys stay as they always were."""

    run: RunRecord
    metrics_csv: Path
    provenance: dict = field(default_factory=dict)  # PROVENANCE_KEYS that are known
    dataset: dict | None = None  # the test set: name, root, split, n_files, fingerprint
    input_gain_db: float = 0.0
    pipeline_version: int | None = None
    scored_at: str | None = None  # how an input gain is scored ("reference"); None: older
    results: dict = field(default_factory=dict)  # n_files, n_failed, metrics, mean, noisy, ...
    complete: bool = False
    has_summary: bool = False  # read from (or written to) a summary.json

    @property
    def summary_json(self) -> Path:
        return self.metrics_csv.parent / SUMMARY_FILE

    @property
    def noisy(self) -> dict | None:
        """Mean scores of the unprocessed input."""
        return self.results.get("noisy")

    @classmethod
    def from_dir(cls, eval_dir: Path, metrics_csv: Path | None = None) -> EvalRecord:
        """The evaluation in `eval_dir` (its `summary.json`, when there is one) of the run it
        lies in; `metrics_csv` defaults to `eval_dir/metrics.csv`."""
        eval_dir = Path(eval_dir)
        summary = read_summary(eval_dir)
        provenance = {k: summary[k] for k in PROVENANCE_KEYS if k in summary}
        skip = {*PROVENANCE_KEYS, "dataset", "input_gain_db", "pipeline_version", "scored_at"}
        return cls(
            run=RunRecord.from_dir(eval_dir, summary),
            metrics_csv=metrics_csv or eval_dir / METRICS_FILE,
            provenance=provenance,
            dataset=summary.get("dataset"),
            input_gain_db=float(summary.get("input_gain_db", 0.0)),
            pipeline_version=summary.get("pipeline_version"),
            scored_at=summary.get("scored_at"),
            results={k: v for k, v in summary.items() if k not in skip and k != "complete"},
            complete=bool(summary.get("complete")),
            has_summary=bool(summary),
        )

    def to_json(self) -> dict:
        """summary.json: provenance, test set, gain and scoring, then the results."""
        return {
            **self.provenance,
            "dataset": self.dataset,
            "input_gain_db": float(self.input_gain_db),
            "scored_at": self.scored_at,
            "pipeline_version": self.pipeline_version,
            **self.results,
            "complete": self.complete,
        }

    def write(self) -> Path:
        path = self.summary_json
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=True) + "\n")
        return path
