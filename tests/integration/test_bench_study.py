"""`scripts/bench_study.py --device cpu --quick`: the smoke test of the study benchmark (tiny DFN3,
64 synthetic pairs): every setting measured in one invocation, ratios and projection written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_study.py"
# Runs the benchmark in a process of its own and writes the peak resident memory (KiB) of it and
# its runs: the test process's own RUSAGE_CHILDREN would also count every earlier subprocess of
# the session.
PEAK_MEMORY = (
    "import resource, subprocess, sys; "
    "code = subprocess.run([sys.executable, *sys.argv[2:]]).returncode; "
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
    "open(sys.argv[1], 'w').write(str(peak)); sys.exit(code)"
)


@pytest.mark.slow
def test_bench_study_cpu_quick(tmp_path):
    out, peak = tmp_path / "study.json", tmp_path / "peak_kib.txt"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_MEMORY,
            str(peak),
            str(SCRIPT),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(out),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["settings"]["pairs"] <= 256
    names = [r["name"] for r in summary["results"]]
    assert names[0] == "baseline (files, k=1)" and names[1] == "preload=device"
    assert names[2].endswith("k=2") and summary["results"][2]["runs_per_device"] == 2
    for result in summary["results"]:
        assert result["run_steps_per_s"] > 0 and math.isfinite(result["study_hours"])
        assert len(result["per_run_steps_per_s"]) == result["runs_per_device"]
    assert "study" in done.stdout and "x)" in done.stdout  # ratios to the baseline printed
    # at most two runs at once plus the light benchmark parent: each process under 1 GB
    assert 0 < int(peak.read_text()) < 1024 * 1024
