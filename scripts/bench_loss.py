"""The trig-free multi-resolution spectral loss vs deepfilternet's `df.loss.MultiResSpecLoss`.

Both run in this process on the same signals, alternating call by call (a busy machine slows
both alike); medians compared. Two figures: the loss alone (forward + backward of the recipe's
MultiResSpecLoss on a batch of synthesised signals), and a whole DFN3 training step (features,
model, DfnLoss, backward, AdamW) with the system's multi-resolution loss swapped between the two.
Needs the reference extra (deepfilternet) for `df.loss`.

    python scripts/bench_loss.py --threads 1                 # CPU, batch 2 x 1 s
    python scripts/bench_loss.py --device cuda --batch-size 64 --seconds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from dfablate.losses import MultiResSpecLoss
from dfablate.training.module import DfnSystem
from dfablate.training.task import compose_train_config


def upstream_multi_res(device: str) -> torch.nn.Module:
    """df.loss.MultiResSpecLoss with the recipe's settings (df.io stubbed: it needs torchaudio)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from upstream import import_df_module

    import_df_module("config")
    sys.modules["df.io"] = types.SimpleNamespace(resample=None)
    try:
        module = import_df_module("loss")
    finally:
        del sys.modules["df.io"]
    return module.MultiResSpecLoss([256, 512, 1024, 2048], 0.3, 500, 500).to(device)


def timed(fn, device: str) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(calls: dict, steps: int, device: str) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) per call of each entry, alternating call by call after one warm-up."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for step in range(steps + 1):
        for name, fn in calls.items():
            t = timed(fn, device)
            if step:
                times[name].append(t)
    return {
        name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
        for name, t in times.items()
    }


def report(title: str, medians: dict[str, tuple[float, float]]) -> None:
    (ours_w, ours_c), (ref_w, ref_c) = medians["trig-free"], medians["df.loss"]
    print(
        f"{title:<22} trig-free {1000 * ours_w:8.1f} ms  df.loss {1000 * ref_w:8.1f} ms  "
        f"speed-up {ref_w / ours_w:.2f}x wall, {ref_c / ours_c:.2f}x CPU time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dfn3", choices=["dfn3", "dfn3_tiny", "dfn2"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="crop length")
    parser.add_argument("--steps", type=int, default=20, help="timed calls of each")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    L.seed_everything(0, verbose=False)
    length = int(args.seconds * 48000)
    gen = torch.Generator().manual_seed(0)
    noisy = (0.1 * torch.randn(args.batch_size, length, generator=gen)).to(args.device)
    clean = (0.05 * torch.randn(args.batch_size, length, generator=gen)).to(args.device)
    losses = {
        "trig-free": MultiResSpecLoss([256, 512, 1024, 2048], 0.3, 500, 500).to(args.device),
        "df.loss": upstream_multi_res(args.device),
    }

    def loss_call(loss: torch.nn.Module):
        def call() -> None:
            enhanced = noisy.clone().requires_grad_()
            loss(enhanced, clean).backward()

        return call

    print(
        f"{args.model}, batch {args.batch_size} x {args.seconds:g} s, {args.device}, "
        f"{torch.get_num_threads()} thread(s), medians of {args.steps} alternating calls"
    )
    report(
        "loss fwd + bwd",
        compare({n: loss_call(m) for n, m in losses.items()}, args.steps, args.device),
    )

    cfg = OmegaConf.to_container(compose_train_config([f"model={args.model}"]), resolve=True)
    system = DfnSystem("original", cfg["model"], cfg["loss"], cfg["optim"]).to(args.device)
    optimizer = torch.optim.AdamW(system.parameters(), lr=1e-3, amsgrad=True)
    batch = {"noisy": noisy, "clean": clean}

    def step_call(loss: torch.nn.Module):
        def call() -> None:
            system.loss_fn.multi_res = loss
            optimizer.zero_grad(set_to_none=True)
            total, _, _ = system._loss(batch)
            total.backward()
            torch.nn.utils.clip_grad_norm_(system.parameters(), 1.0)
            optimizer.step()

        return call

    report(
        "DFN3 training step",
        compare({n: step_call(m) for n, m in losses.items()}, args.steps, args.device),
    )


if __name__ == "__main__":
    main()
