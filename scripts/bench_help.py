"""`dfablate --help` (and `compare --help`, `train --help`) of this checkout vs a reference
checkout, e.g. the commit before a change to imports.

Both start as fresh processes of the same Python, alternating run by run (a busy machine slows
both alike), with the reference put first on PYTHONPATH; medians and their ratio printed.

    git worktree add /tmp/ref b41cfcd
    python scripts/bench_help.py --reference /tmp/ref --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
COMMANDS = (["--help"], ["compare", "--help"], ["train", "--help"])


def _seconds(tree: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dfablate", *args],
        env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout to compare with")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if not (args.reference / "dfablate" / "__init__.py").is_file():
        parser.error(f"--reference {args.reference}: not a dfablate checkout")
    for command in COMMANDS:
        times: dict[str, list[float]] = {"reference": [], "this": []}
        for _ in range(args.runs):
            times["reference"].append(_seconds(args.reference, command))
            times["this"].append(_seconds(CHECKOUT, command))
        ref, this = (statistics.median(times[k]) for k in ("reference", "this"))
        print(
            f"dfablate {' '.join(command)}: reference {1000 * ref:.0f} ms, "
            f"this checkout {1000 * this:.0f} ms, ratio {this / ref:.2f}"
        )


if __name__ == "__main__":
    main()
