"""The README's command blocks work as written, from a folder outside the checkout, with
dfablate installed from a wheel (`installed_package`), so the README cannot drift.

A block preceded by `<!-- readme-test: parse (why) -->` (make, pip, network, GPU, the demo's
runs) is only parsed: each `dfablate` line must parse and compose, each `make` line name a
target of the Makefile. A block preceded by `<!-- readme-test: file -->` is a file the commands
use, written to the path of its first-line comment. Every other bash block runs, in order, in
one temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

from dfablate.cli import build_parser

BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    mark: str | None  # "parse (why)", "file" or None (run)
    lang: str
    body: str

    @property
    def commands(self) -> list[str]:
        return [line.split("  #")[0].strip() for line in self.body.splitlines() if line.strip()]


def readme_blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text()
    return [Block(m["mark"], m["lang"], m["body"]) for m in BLOCK.finditer(text)]


def command_blocks(kind: str) -> list[Block]:
    blocks = [b for b in readme_blocks() if b.lang == "bash"]
    if kind == "parse":
        return [b for b in blocks if b.mark and b.mark.startswith("parse")]
    return [b for b in blocks if b.mark is None]


def test_the_readme_marks_what_it_only_parses():
    marks = {b.mark for b in command_blocks("parse")}
    assert marks == {
        "parse (make)",
        "parse (pip)",
        "parse (needs the demo's runs)",
        "parse (network, GPU)",
    }
    run = " ".join(" ".join(b.commands) for b in command_blocks("run"))
    for needs_more in ("download-valentini", "norm_ablation", "make ", "pip ", "outputs/demo"):
        assert needs_more not in run, needs_more


def _parses(command: str) -> None:
    """A `dfablate` line parses, and a Hydra stage's overrides compose."""
    from dfablate.ablation_config import ablation_config
    from dfablate.cli import config_dir_overrides
    from dfablate.config import compose_config

    argv = shlex.split(command)[1:]
    if argv[-1] in ("-h", "--help"):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_known_args(argv)
        assert exited.value.code == 0, command
        return
    args, extra = build_parser().parse_known_args(argv)
    assert not extra or getattr(args, "accepts_overrides", False), command
    overrides = config_dir_overrides(extra)
    if args.command in ("train", "evaluate"):
        compose_config(args.command, overrides)
    elif args.command == "ablate":
        ablation_config(overrides)


def test_parse_only_blocks_parse(mini_cache):
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for block in command_blocks("parse"):
        for command in block.commands:
            words = shlex.split(command)
            if words[0] == "make":
                assert set(words[1:]) <= targets, command
            elif words[0] == "pip":
                assert words[1] == "install" and words[2].startswith("."), command
            elif words[0] == "export":
                continue
            else:
                assert words[0] in ("dfablate", "python"), command
                _parses(command.replace("python -m dfablate", "dfablate"))


def test_the_compare_example_names_the_demo_runs(tmp_path, monkeypatch):
    """The compare block's globs match the run folders of the demo's sweep (its norms x seeds in
    `<output_root>/demo/<norm>-seed<seed>`)."""
    from dfablate.config import compose_config

    monkeypatch.chdir(tmp_path)
    (compare,) = [c for b in command_blocks("parse") for c in b.commands if " compare " in c]
    globs = [re.escape(w).replace(r"\*", ".*") for w in shlex.split(compare) if "*" in w]
    cfg = compose_config("train", ["experiment=demo"])
    params = cfg.hydra.sweeper.params
    runs = [
        f"{cfg.output_root}/demo/{norm}-seed{seed}"
        for norm in params.norm.split(",")
        for seed in params.seed.split(",")
    ]
    assert len(runs) == 4
    assert all(any(re.fullmatch(g, run) for run in runs) for g in globs)
    assert all(any(re.fullmatch(g, run) for g in globs) for run in runs)


README_RUN = pytest.mark.xdist_group("readme_run")  # one process runs the README once


@dataclass(frozen=True)
class ReadmeRun:
    """The README's run blocks, run in order in one folder outside the checkout."""

    work: Path  # the folder they ran in
    results: list[tuple[Block, subprocess.CompletedProcess]]  # up to the first that failed


def console_script(bin_dir: Path, installed_package: Path) -> None:
    """`dfablate` in `bin_dir` as pip's console script: the installed package's main."""
    bin_dir.mkdir()
    script = bin_dir / "dfablate"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(installed_package)!r})\n"
        "from dfablate.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory, installed_package, mini_cache) -> ReadmeRun:
    base = tmp_path_factory.mktemp("readme")
    work = base / "elsewhere"
    work.mkdir()
    console_script(base / "bin", installed_package)
    env = {
        **os.environ,
        "PATH": f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "DFABLATE_CACHE": str(mini_cache),
        "WANDB_MODE": "offline",
    }
    env.pop("PYTHONPATH", None)
    for block in readme_blocks():
        if block.mark == "file":
            first, _, rest = block.body.partition("\n")
            path = work / first.lstrip("# ").strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rest)
    results = []
    for block in command_blocks("run"):
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block.body],
            cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        results.append((block, result))
        if result.returncode != 0:
            break
    return ReadmeRun(work, results)


@pytest.mark.slow
@README_RUN
def test_the_readme_commands_run_from_another_folder(readme_run):
    for block, result in readme_run.results:
        assert result.returncode == 0, f"{block.body}\n{result.stderr[-3000:]}"
    assert len(readme_run.results) >= 2


@pytest.mark.slow
@README_RUN
def test_the_readme_evaluation_scores_the_mini_corpus_it_made(readme_run):
    work = readme_run.work
    summary = json.loads(
        (work / "outputs" / "default" / "original-seed43" / "eval" / "mini" / "summary.json")
        .read_text()
    )  # fmt: skip
    assert summary["n_files"] == 20 and summary["n_failed"] == 0
    assert (work / summary["dataset"]["root"]).resolve() == (work / "mini").resolve()


@pytest.mark.slow
@README_RUN
def test_the_readme_scores_the_noisy_input_and_trains_the_fast_recipe(readme_run):
    work = readme_run.work
    assert (work / "noisy.csv").is_file() and (
        work / "outputs" / "default" / "fast-seed43"
    ).is_dir()
