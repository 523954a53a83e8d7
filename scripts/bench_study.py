"""The 40-run study's workload: run-steps/s of DFN3 training, by setting, and the projected wall time.

It makes a synthetic training set (`--pairs N` pairs of 3 s: harmonic "speech" and coloured noise
at 0-15 dB SNR, 16-bit PCM, in the Valentini layout, with its validation speakers p226/p287) in a
temporary folder, so no data set is needed. Then, in this one invocation, it measures each
setting with real `dfablate` training (Lightning's step, `ValentiniDataModule`, `DfnSystem`) in
separate processes that start their timed steps together:

1. baseline: today's file loader (data.preload=none, --workers workers), one run, no compile;
2. data.preload=device;
3. the same + model.compile (--compile-mode; GPU only: on a CPU it was 0.91x and compiling
   alone takes minutes);
4. the best of those with k = 2, 4, 8 runs at once on the device (`runs_per_device=k`).

Each setting gives run-steps/s (the k runs' steps/s summed) and validation utterances/s, printed
as a ratio to the baseline, and the projected wall time of the study: 40 runs (norm_ablation's
2x2 arms x 10 seeds) x 120 epochs of Valentini (10,802 training pairs = 169 steps of 64, and 770
validation utterances per epoch), batch ramp ignored. The figures go to a JSON file (--out).

    python scripts/bench_study.py --quick                  # H200: meant for < 8 min (not yet run)
    python scripts/bench_study.py --device cpu --quick     # smoke test: tiny DFN3, 64 pairs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 48000
STUDY_RUNS, STUDY_EPOCHS = 40, 120
VALENTINI_TRAIN_PAIRS, VALENTINI_VAL_UTTERANCES = 10802, 770
VAL_SPEAKERS = ("p226", "p287")
VAL_SHARE = VALENTINI_VAL_UTTERANCES / (VALENTINI_TRAIN_PAIRS + VALENTINI_VAL_UTTERANCES)


def synthetic_pair(rng: np.random.Generator, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean "speech" (harmonics of a gliding pitch, syllable-like envelope) and that plus
    coloured noise at an SNR of 0-15 dB, as int16."""
    t = np.arange(samples) / SR
    f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    clean = sum(np.sin(h * phase) / h for h in range(1, 20))
    clean *= np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None)
    noise = np.convolve(rng.standard_normal(samples), np.ones(8) / 8, mode="same")
    snr_db = rng.uniform(0, 15)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    noisy = clean + noise
    scale = 0.5 / np.abs(noisy).max()
    return ((clean * scale * 32767).astype(np.int16), (noisy * scale * 32767).astype(np.int16))


def make_training_set(root: Path, pairs: int, seconds: float = 3.0) -> None:
    """`pairs` synthetic pairs in the Valentini training layout (VAL_SHARE of them in the
    validation speakers)."""
    from dfablate.data.valentini import split_dirs

    clean_dir, noisy_dir = split_dirs(root, "train")
    clean_dir.mkdir(parents=True)
    noisy_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    val = max(2, round(pairs * VAL_SHARE))
    for i in range(pairs):
        speaker = VAL_SPEAKERS[i % 2] if i < val else f"p{300 + i % 20}"
        clean, noisy = synthetic_pair(rng, int(seconds * SR))
        sf.write(clean_dir / f"{speaker}_{i:05d}.wav", clean, SR, subtype="PCM_16")
        sf.write(noisy_dir / f"{speaker}_{i:05d}.wav", noisy, SR, subtype="PCM_16")


# ------------------------------------------------------------------ one measured run (a process)


def worker(spec: dict) -> dict:
    """Train `spec["steps"]` steps after `spec["warmup"]` and validate; steps/s, utterances/s."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback
    from omegaconf import OmegaConf

    from dfablate.data.datamodule import ValentiniDataModule
    from dfablate.training.module import DfnSystem, compile_model
    from dfablate.training.task import compose_train_config

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    cuda = spec["device"] == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class Timed(Callback):
        """Waits for the other runs of the setting at the first step; times the steps."""

        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_start(self, trainer, pl_module) -> None:
            Path(spec["ready"]).touch()
            while not Path(spec["go"]).exists():
                time.sleep(0.05)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync()
            self.ends.append(time.perf_counter())

    L.seed_everything(0, verbose=False)
    cfg = OmegaConf.to_container(compose_train_config([f"model={spec['model']}"]), resolve=True)
    system = DfnSystem("original", cfg["model"], cfg["loss"], cfg["optim"], val_metric_utterances=0)
    compile_model(system, spec["compile"])
    data = ValentiniDataModule(
        spec["root"],
        crop_seconds=spec["seconds"],
        batch_size=spec["batch_size"],
        num_workers=spec["workers"] if spec["preload"] == "none" else 0,
        pin_memory=cuda and spec["preload"] == "none",
        preload=spec["preload"],
        val_max_files=spec["val_utterances"],
    )
    timed = Timed()
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        max_steps=spec["warmup"] + spec["steps"],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timed],
    )
    trainer.fit(system, datamodule=data)
    ends = timed.ends[spec["warmup"] :]
    steps_per_s = (len(ends) - 1) / (ends[-1] - ends[0])
    trainer.limit_val_batches = spec["val_utterances"]
    trainer.validate(system, datamodule=data, verbose=False)  # warm-up
    sync()
    start = time.perf_counter()
    trainer.validate(system, datamodule=data, verbose=False)
    sync()
    val_per_s = spec["val_utterances"] / (time.perf_counter() - start)
    return {"steps_per_s": steps_per_s, "val_utterances_per_s": val_per_s}


# ------------------------------------------------------------------ the settings


def measure(args: argparse.Namespace, root: Path, setting: dict, k: int) -> dict:
    """`k` runs of `setting` at once (separate processes, timed steps started together)."""
    with tempfile.TemporaryDirectory() as sync_dir:
        go = Path(sync_dir) / "go"
        processes, logs = [], []
        for i in range(k):
            spec = {
                **setting,
                "root": str(root),
                "device": args.device,
                "model": args.model,
                "batch_size": args.batch_size,
                "seconds": args.seconds,
                "workers": args.workers,
                "threads": args.threads,
                "steps": args.steps,
                "warmup": args.warmup,
                "val_utterances": args.val_utterances,
                "ready": str(Path(sync_dir) / f"ready{i}"),
                "go": str(go),
            }
            logs.append((Path(sync_dir) / f"log{i}").open("w"))  # Lightning's chatter
            processes.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    stdout=subprocess.PIPE,
                    stderr=logs[-1],
                    text=True,
                )
            )
        while not all((Path(sync_dir) / f"ready{i}").exists() for i in range(k)):
            if any(p.poll() not in (None, 0) for p in processes):
                break
            time.sleep(0.05)
        go.touch()
        results = []
        for i, process in enumerate(processes):
            out, _ = process.communicate()
            logs[i].close()
            if process.returncode != 0:
                print((Path(sync_dir) / f"log{i}").read_text()[-3000:], file=sys.stderr)
                raise SystemExit(f"a run of {setting} failed (exit {process.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    run_steps = sum(r["steps_per_s"] for r in results)
    val = sum(r["val_utterances_per_s"] for r in results)
    hours = (
        STUDY_RUNS
        * STUDY_EPOCHS
        * (VALENTINI_TRAIN_PAIRS // 64 / run_steps + VALENTINI_VAL_UTTERANCES / val)
        / 3600
    )
    return {
        **setting,
        "runs_per_device": k,
        "run_steps_per_s": run_steps,
        "val_utterances_per_s": val,
        "per_run_steps_per_s": [r["steps_per_s"] for r in results],
        "study_hours": hours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and steps")
    parser.add_argument("--pairs", type=int, default=None, help="default 11572 (Valentini)")
    parser.add_argument("--model", default=None, help="default dfn3 (dfn3_tiny on the CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (4 on CPU)")
    parser.add_argument("--seconds", type=float, default=None, help="crop, default 3 (1 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--k", type=int, nargs="+", default=None, help="runs per device")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--out", default="bench_study.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    cpu = args.device == "cpu"
    args.pairs = args.pairs or (64 if cpu and args.quick else 1024 if args.quick else 11572)
    if cpu and args.quick and args.pairs > 256:
        raise SystemExit("--device cpu --quick uses at most 256 pairs")
    args.model = args.model or ("dfn3_tiny" if cpu else "dfn3")
    args.batch_size = args.batch_size or (4 if cpu else 64)
    args.seconds = args.seconds or (1.0 if cpu else 3.0)
    args.steps = args.steps or (3 if cpu else 20 if args.quick else 60)
    args.warmup = 1 if cpu else 5
    args.val_utterances = 2 if cpu else 16
    args.threads = args.threads or (1 if cpu else None)
    args.k = args.k or ([2] if cpu and args.quick else [2, 4, 8])

    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_study-") as tmp:
        root = Path(tmp)
        make_training_set(root, args.pairs)
        print(
            f"{args.pairs} synthetic pairs of 3 s; {args.model}, batch {args.batch_size} x "
            f"{args.seconds:g} s, {args.device}, {args.steps} timed steps per run",
            flush=True,
        )

        def record(name: str, setting: dict, k: int = 1) -> dict:
            result = {"name": name, **measure(args, root, setting, k)}
            results.append(result)
            base = results[0]
            print(
                f"{name:<28} {result['run_steps_per_s']:8.3f} run-steps/s "
                f"({result['run_steps_per_s'] / base['run_steps_per_s']:5.2f}x)  "
                f"val {result['val_utterances_per_s']:7.2f} utt/s  "
                f"study {result['study_hours']:6.1f} h",
                flush=True,
            )
            return result

        best = record("baseline (files, k=1)", {"preload": "none", "compile": "none"})
        best = max(best, record("preload=device", {"preload": "device", "compile": "none"}),
                   key=lambda r: r["run_steps_per_s"])  # fmt: skip
        if not cpu:
            setting = {"preload": "device", "compile": args.compile_mode}
            best = max(best, record(f"+ compile={args.compile_mode}", setting),
                       key=lambda r: r["run_steps_per_s"])  # fmt: skip
        for k in args.k:
            setting = {"preload": best["preload"], "compile": best["compile"]}
            record(f"{setting['preload']}, {setting['compile']}, k={k}", setting, k)
    summary = {
        "device": args.device,
        "device_name": _device_name(args.device),
        "settings": vars(args) | {"worker": None},
        "study": f"{STUDY_RUNS} runs x {STUDY_EPOCHS} epochs of Valentini",
        "results": results,
        "seconds": time.time() - started,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    fastest = min(results, key=lambda r: r["study_hours"])
    print(
        f"fastest: {fastest['name']}: study {fastest['study_hours']:.1f} h "
        f"(baseline {results[0]['study_hours']:.1f} h); figures in {args.out} "
        f"({summary['seconds']:.0f} s)"
    )


def _device_name(device: str) -> str:
    if device != "cuda":
        return "CPU"
    import torch

    return torch.cuda.get_device_name()


if __name__ == "__main__":
    main()
