"""The package runs without a checkout: configs inside it, user config folders, `python -m`,
norms defined outside the package, and a built wheel that trains and evaluates from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, SHORT_RUN

from dfablate.cli import main
from dfablate.config import compose_config, config_file
from dfablate.features import NORMALISATIONS, get_norm

# A norm that exists only in a user's folder: half the spectrum (a fixed, checkable factor).
USER_NORM_MODULE = """
def half_norm(spec, init_state, alpha):
    return spec * 0.5
"""


@pytest.fixture()
def user_configs(tmp_path, monkeypatch) -> Path:
    """A user config folder with a norm naming a function of an importable user module."""
    module_dir = tmp_path / "code"
    module_dir.mkdir()
    (module_dir / "mylab_norms.py").write_text(USER_NORM_MODULE)
    monkeypatch.syspath_prepend(str(module_dir))
    folder = tmp_path / "my-configs"
    (folder / "norm").mkdir(parents=True)
    (folder / "norm" / "half.yaml").write_text("name: half\nfunction: mylab_norms.half_norm\n")
    yield folder
    NORMALISATIONS.pop("half", None)


def test_configs_ship_inside_the_package():
    assert config_file("train.yaml") == ROOT / "dfablate" / "configs" / "train.yaml"
    assert config_file("train.yaml").is_file() and config_file("norm/fixed.yaml").is_file()


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_a_user_config_folder_adds_a_norm(user_configs, how, tmp_path, mini_cache, capsys):
    """Train with a norm YAML from a user folder, then evaluate the run after the registry
    has forgotten the norm: the checkpoint names the function, so it is imported again."""
    where = (
        ["--config-dir", str(user_configs)]
        if how == "--config-dir"
        else [f"hydra.searchpath=[file://{user_configs}]"]
    )
    out = tmp_path / "runs"
    args = [*SHORT_RUN, "norm=half", f"output_root={out}", *where]
    assert main(["train", *args]) == 0, capsys.readouterr().err
    run_dir = out / "default" / "half-seed43"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["hyper_parameters"]["norm_function"] == "mylab_norms.half_norm"
    NORMALISATIONS.pop("half")
    rc = main(["evaluate", f"run={run_dir}", "max_files=1", "jobs=1", "progress=false",
               f"noisy_cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    import mylab_norms

    assert get_norm("half") is mylab_norms.half_norm
    summary = json.loads((run_dir / "eval" / "mini-1files" / "summary.json").read_text())
    assert summary["norm"] == "half" and summary["n_files"] == 1


def test_a_user_config_folder_is_composed_like_the_shipped_ones(user_configs):
    cfg = compose_config("train", [f"hydra.searchpath=[file://{user_configs}]", "norm=half"])
    assert dict(cfg.norm) == {"name": "half", "function": "mylab_norms.half_norm"}
    assert compose_config("train", ["norm=fixed"]).norm.name == "fixed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--config-dir", "/no/such/folder"],
            "--config-dir /no/such/folder: config folder not found",
        ),
        (["norm=half_missing"], "norm"),
    ],
)
def test_bad_config_folders_are_one_line_errors(args, message, tmp_path, capsys):
    assert main(["train", *args, f"output_root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_config_folders_come_one_way(user_configs, tmp_path, capsys):
    """--config-dir and hydra.searchpath together would silently drop one: refused."""
    args = ["train", "--config-dir", str(user_configs), f"hydra.searchpath=[file://{tmp_path}]"]
    assert main([*args, f"output_root={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: give config folders either with --config-dir or with hydra.searchpath"
    assert not (tmp_path / "runs").exists()


def test_a_norm_function_that_does_not_import_is_refused(tmp_path, capsys):
    folder = tmp_path / "cfg"
    (folder / "norm").mkdir(parents=True)
    (folder / "norm" / "ghost.yaml").write_text("name: ghost\nfunction: no_such_lab.norms.ghost\n")
    out = tmp_path / "runs"
    assert main(["train", "--config-dir", str(folder), "norm=ghost", f"output_root={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: norm 'ghost': cannot import no_such_lab.norms.ghost"), err
    assert not out.exists() and "ghost" not in NORMALISATIONS


def test_python_dash_m_dfablate_is_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "dfablate", "features", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "usage: dfablate features" in result.stdout


@pytest.mark.slow
def test_a_built_wheel_trains_and_evaluates_outside_the_checkout(
    tmp_path, mini_cache, installed_package
):
    """From a folder that is not a checkout, train and evaluate with dfablate installed from a
    wheel while the checkout's dfablate is not importable."""
    target = installed_package
    for name in ("sig_bak_ovr.onnx", "model_v8.onnx", "LICENSE.txt"):  # DNSMOS, vendored (MIT)
        assert (target / "dfablate" / "dnsmos_models" / name).is_file(), name
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "DFABLATE_CACHE": str(mini_cache)}

    def dfablate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dfablate", *args],
            cwd=work, env=env, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip

    where = subprocess.run(
        [sys.executable, "-c", "import dfablate; print(dfablate.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(target), where
    train = dfablate("train", *SHORT_RUN)
    assert train.returncode == 0, train.stderr[-3000:]
    run_dir = work / "outputs" / "default" / "original-seed43"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    evaluate = dfablate("evaluate", f"run={run_dir}", "max_files=2", "jobs=1", "progress=false",
                        f"noisy_cache_dir={tmp_path / 'cache'}")  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    summary = json.loads((run_dir / "eval" / "mini-2files" / "summary.json").read_text())
    assert summary["n_files"] == 2 and summary["n_failed"] == 0


def _closure(requirements: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    """Names of the installed distributions that `requirements` pull in, recursively."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        text, active = todo.pop()
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (*active, "")):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [(r, tuple(req.extras)) for r in requires(req.name) or []]
        except PackageNotFoundError:
            pass
    return seen


def test_core_install_pulls_neither_librosa_nor_onnxruntime():
    """The core dependencies, followed through the installed packages' own requirements, reach
    neither librosa nor onnxruntime (the dnsmos extra) nor wandb-workspaces; the extras do."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _closure(project["dependencies"])
    assert "torch" in core and "wandb" in core
    assert not {"librosa", "onnxruntime", "speechmos", "wandb-workspaces"} & core
    extras = project["optional-dependencies"]
    assert "onnxruntime" in _closure(extras["dnsmos"]) and "librosa" not in _closure(
        extras["dnsmos"]
    )
    assert "wandb-workspaces" in _closure(extras["wandb-report"])
    assert "dfablate[dnsmos,wandb-report]" in extras["test"]
