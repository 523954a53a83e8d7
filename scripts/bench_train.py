"""Training throughput: Lightning's training step vs a bare PyTorch loop, and the data loader.

Both loops run in this process on the same DfnSystem (model, features, DFN3 loss), the same
batch, AdamW + recipe schedule and gradient clipping; only the loop differs. Rounds alternate
between the two so a busy machine slows both alike; the medians are compared. The data loader
(ValentiniDataModule on the mini corpus, or on Valentini with --data-root) is timed alone and
compared with what the model consumes.

With --vs-upstream it instead times the bare training step with dfablate's own model against
deepfilternet's DfNet (same initial weights; needs the reference extra) in the same process,
alternating step by step, and prints the ratios; --compile adds `torch.compile` of the native
model.

    python scripts/bench_train.py                       # dfn3, CPU, batch 2 x 1 s
    python scripts/bench_train.py --device cuda --batch-size 64 --seconds 3 --workers 8
    python scripts/bench_train.py --vs-upstream --compile --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from dfablate.training.module import DfnSystem
from dfablate.training.task import compose_train_config


class RepeatBatch(Dataset):
    """The same batch `length` times (batch_size=None loader): no data cost in either loop."""

    def __init__(self, batch: dict, length: int):
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


class StepTimes(Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())


def steps_per_second(starts: list[float], warmup: int) -> float:
    times = starts[warmup:]
    return (len(times) - 1) / (times[-1] - times[0])


def bare_loop(
    system: DfnSystem, batch: dict, steps: int, warmup: int, device: str, precision: str
) -> float:
    """The same work as Lightning's step, written out: forward, loss, backward, clip, step."""
    system.to(device).train()  # Lightning moves the module back to the CPU after fit
    bf16 = precision == "bf16-mixed"
    optimizer = torch.optim.AdamW(system.parameters(), lr=1e-3, weight_decay=1e-12, amsgrad=True)
    starts = []
    for _ in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        starts.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            total, _, _ = system._loss(batch)
        total.backward()
        torch.nn.utils.clip_grad_norm_(system.parameters(), 1.0)
        optimizer.step()
    return steps_per_second(starts, warmup)


def lightning_loop(
    system: DfnSystem, batch: dict, steps: int, warmup: int, device: str, precision: str
) -> float:
    timer = StepTimes()
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=steps + 1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(system, DataLoader(RepeatBatch(batch, steps + 1), batch_size=None))
    if device == "cuda":
        torch.cuda.synchronize()
    timer.starts.append(time.perf_counter())
    return steps_per_second(timer.starts, warmup)


def loader_samples_per_second(args: argparse.Namespace, n_batches: int) -> float:
    from dfablate.data.datamodule import ValentiniDataModule, mini_datamodule

    options = dict(
        crop_seconds=args.seconds,
        batch_size=args.batch_size,
        num_workers=args.workers,
        pin_memory=args.device == "cuda",
    )
    if args.data_root:
        datamodule = ValentiniDataModule(args.data_root, **options)
    else:
        datamodule = mini_datamodule(**options)
    datamodule.setup("fit")
    # Enough items per epoch for every worker to be busy (the mini corpus has 36): its real
    # files, listed repeatedly, so reading and decoding cost what they cost.
    pairs = datamodule.train_set.pairs
    needed = (n_batches + 1) * args.batch_size
    datamodule.train_set.pairs = pairs * max(1, -(-needed // len(pairs)))
    loader = datamodule.train_dataloader()
    samples, start, iterator = 0, None, iter(loader)
    for index in range(n_batches + 1):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        if index == 0:
            start = time.perf_counter()  # the first batch pays the worker start-up
            continue
        samples += batch["noisy"].shape[0]
    return samples / (time.perf_counter() - start)


def timed_step(
    system: DfnSystem, batch: dict, optimizer: torch.optim.Optimizer, device: str, bf16: bool
) -> tuple[float, float]:
    """One bare training step (as `bare_loop`); (wall, process CPU) seconds."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        total, _, _ = system._loss(batch)
    total.backward()
    torch.nn.utils.clip_grad_norm_(system.parameters(), 1.0)
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def native_vs_upstream(
    system: DfnSystem, batch: dict, args: argparse.Namespace, warmup: int
) -> None:
    """Training steps of the native model, deepfilternet's DfNet (same initial weights) and,
    with --compile, the compiled native model, alternating step by step in this process (a busy
    machine slows all alike); medians of wall and CPU time per step."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from upstream import build_upstream_dfnet

    native = system.dfnet
    identity = system.model_identity["model"]
    upstream = build_upstream_dfnet(identity["arch"], **identity["params"]).to(args.device)
    upstream.load_state_dict(native.state_dict())
    models = {"native": native, "upstream": upstream}
    if args.compile:
        models["native compiled"] = torch.compile(native)
    optimizers = {
        name: torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-12, amsgrad=True)
        for name, model in models.items()
    }
    bf16 = args.precision == "bf16-mixed"
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    system.train()
    for index in range(warmup + args.rounds * args.steps):
        for name, model in models.items():
            system.dfnet = model
            step_time = timed_step(system, batch, optimizers[name], args.device, bf16)
            if index >= warmup:
                times[name].append(step_time)
    system.dfnet = native
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(
        f"model {args.model}, batch {args.batch_size} x {args.seconds:g} s, {device}, "
        f"{args.precision}, {torch.get_num_threads()} thread(s), "
        f"{args.rounds * args.steps} steps each, alternating (bare training step)"
    )
    wall = {name: statistics.median(t[0] for t in values) for name, values in times.items()}
    cpu = {name: statistics.median(t[1] for t in values) for name, values in times.items()}
    for name in models:
        print(f"{name:16s} {1 / wall[name]:7.3f} steps/s wall, {cpu[name]:.3f} CPU s per step")
    for name in models:
        if name != "upstream":
            print(
                f"{name} vs upstream: {wall['upstream'] / wall[name]:.3f} x as fast (wall), "
                f"{cpu['upstream'] / cpu[name]:.3f} x (CPU time)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dfn3", choices=["dfn3", "dfn3_tiny", "dfn2"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="crop length")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers")
    parser.add_argument("--data-root", default=None, help="Valentini root (default: mini corpus)")
    parser.add_argument(
        "--vs-upstream", action="store_true", help="native model vs deepfilternet's DfNet"
    )
    parser.add_argument("--compile", action="store_true", help="with --vs-upstream: compiled too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    L.seed_everything(0, verbose=False)
    cfg = OmegaConf.to_container(compose_train_config([f"model={args.model}"]), resolve=True)
    system = DfnSystem("original", cfg["model"], cfg["loss"], cfg["optim"]).to(args.device)
    length = int(args.seconds * 48000)
    gen = torch.Generator().manual_seed(0)
    batch = {
        "noisy": (0.1 * torch.randn(args.batch_size, length, generator=gen)).to(args.device),
        "clean": (0.05 * torch.randn(args.batch_size, length, generator=gen)).to(args.device),
    }
    warmup = 2
    if args.vs_upstream:
        native_vs_upstream(system, batch, args, warmup)
        return
    bare, lit = [], []
    for _ in range(args.rounds):
        bare.append(
            bare_loop(system, batch, args.steps + warmup, warmup, args.device, args.precision)
        )
        lit.append(
            lightning_loop(system, batch, args.steps + warmup, warmup, args.device, args.precision)
        )
    bare_sps, lit_sps = statistics.median(bare), statistics.median(lit)
    consumed = lit_sps * args.batch_size
    loader = loader_samples_per_second(args, n_batches=max(4, 2 * args.steps))
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(
        f"model {args.model}, batch {args.batch_size} x {args.seconds:g} s, {device}, "
        f"{args.precision}, "
        f"{torch.get_num_threads()} thread(s), {args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"bare PyTorch loop   {bare_sps:8.3f} steps/s  (rounds: {', '.join(f'{v:.3f}' for v in bare)})"
    )
    print(
        f"Lightning           {lit_sps:8.3f} steps/s  (rounds: {', '.join(f'{v:.3f}' for v in lit)})"
    )
    print(f"harness overhead    {100 * (bare_sps / lit_sps - 1):+7.1f} %  (goal: < 10 %)")
    print(f"data loader alone   {loader:8.1f} samples/s ({args.workers} workers)")
    print(f"model consumes      {consumed:8.1f} samples/s")
    print(f"loader / model      {loader / consumed:8.1f} x  (goal: >= 5 x)")


if __name__ == "__main__":
    main()
