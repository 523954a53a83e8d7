"""Bad input on every command: one `error:` line naming the option or file, exit code 2, no
traceback, and nothing written or changed (every file under the test's folder and the shared
run hashes the same before and after). `train`'s refusals are in test_training_cli.py."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import CONFIG_DIR
from omegaconf import OmegaConf

from dfablate.cli import main
from dfablate.scoring import COLUMNS


def _hashes(*roots: Path) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture()
def inputs(tmp_path, data_dir) -> dict[str, Path]:
    """Files a careless user might pass: real speech, a binary file, a truncated WAV, two
    metrics CSVs, a plain file where a folder is expected."""
    speech = tmp_path / "speech.wav"
    shutil.copy(data_dir / "arctic_a0007.wav", speech)
    binary = tmp_path / "binary.dat"
    binary.write_bytes(bytes(range(256)) * 8)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(speech.read_bytes()[: speech.stat().st_size // 2])
    rng = np.random.default_rng(0)
    csvs = []
    for name in ("a", "b"):
        table = pd.DataFrame(rng.uniform(1, 4, (4, len(COLUMNS) - 2)), columns=COLUMNS[1:-1])
        table.insert(0, "file", [f"f{i}.wav" for i in range(4)])
        table["error"] = ""
        table.to_csv(tmp_path / f"{name}.csv", index=False)
        csvs.append(tmp_path / f"{name}.csv")
    return {"speech": speech, "binary": binary, "truncated": truncated, "a": csvs[0],
            "b": csvs[1], "folder": tmp_path}  # fmt: skip


CASES = {
    "features-csv-proc": (["features", "{speech}", "--csv", "/proc/x.csv"], "--csv /proc/x.csv"),
    "features-csv-folder": (["features", "{speech}", "--csv", "{folder}"], "--csv {folder}: is a directory"),
    "features-truncated": (["features", "{truncated}"], "{truncated}: truncated"),
    "score-out-binary": (["score", "{speech}", "{speech}", "--out", "{binary}"], "{binary} exists but is not a metrics CSV"),
    "download-not-a-url": (["data", "download-valentini", "--base-url", "not a url", "--root", "{folder}/valentini"], "--base-url 'not a url'"),
    "download-refused": (["data", "download-valentini", "--root", "{folder}/valentini", "--base-url", "file://{folder}/nothing/"], "nothing/clean_trainset_28spk_wav.zip: can"),
    "download-root-file": (["data", "download-valentini", "--root", "{speech}"], "--root {speech}: is a file"),
    "make-mini-out-file": (["data", "make-mini", "--out", "{speech}"], "--out {speech}: is a file"),
    "compare-out-file": (["compare", "{a}", "{b}", "--out", "{speech}"], "--out {speech}: is a file"),
    "compare-out-proc": (["compare", "{a}", "{b}", "--out", "/proc/x"], "--out /proc/x: cannot write"),
    "evaluate-max-files": (["evaluate", "run={run}", "max_files=abc"], "max_files=abc: must be an integer"),
    "evaluate-unknown-key": (["evaluate", "run={run}", "+norm=original"], "+norm=original: evaluate has no option 'norm'"),
    "evaluate-data-key-not-in-run-data": (["evaluate", "run={run}", "+data.root_dir=/nonexistent"], "+data.root_dir=/nonexistent: the data this run trained on (mini) has no data.root_dir"),
    "evaluate-mini-root-not-a-corpus": (["evaluate", "run={run}", "data.root=/nonexistent"], "data.root=/nonexistent: not a mini corpus (no mini.json)"),
    "evaluate-expect-norm": (["evaluate", "run={run}", "expect_norm=bogus"], "expect_norm=bogus: unknown normalisation 'bogus'"),
    "evaluate-out-dir-file": (["evaluate", "run={run}", "out_dir={speech}"], "out_dir {speech}: is a file"),
    "evaluate-out-dir-unwritable": (["evaluate", "run={run}", "out_dir=/proc/x"], "out_dir /proc/x: cannot write"),
    "evaluate-jobs-negative": (["evaluate", "run={run}", "jobs=-3", "out_dir={folder}/eval"], "jobs=-3: must be at least 0"),
    "evaluate-threads-negative": (["evaluate", "run={run}", "num_threads=-1"], "num_threads=-1: must be at least 0"),
    "evaluate-run-without-config": (["evaluate", "run={bare_run}"], "run={bare_run}: no recorded config"),
    "make-mini-seed": (["data", "make-mini", "--out", "{folder}/mini", "--seed", "-1"], "--seed -1: must be"),
    "features-missing": (["features", "{folder}/missing.wav"], "{folder}/missing.wav: no such file"),
    "features-folder": (["features", "{folder}"], "{folder}: is a directory"),
    "features-csv-not-ours": (["features", "{speech}", "--csv", "{speech}"], "--csv {speech}: exists but is not a features CSV"),
    "score-long-name": (["score", "{speech}", "{speech}", "--out", "{folder}/new/%s.csv" % ("x" * 300)], "is longer than 255 bytes"),
    "ablate-unknown-key": (["ablate", "output_root={folder}/out", "ablate.bogus=1"], "ablate.bogus=1: ablate.bogus is not an ablate setting"),
    "ablate-typo": (["ablate", "output_root={folder}/out", "ablate.evaluate.input_gain_db=[5]"], "ablate.evaluate.input_gain_db is not an ablate setting (configs/ablate.yaml declares them); did you mean evaluate.input_gains_db?"),
    "ablate-experiment-section": (["ablate", "output_root={folder}/out", "+ablate.evaluate.bogus=1"], "the experiment's ablate: section: ablate.evaluate.bogus is not an ablate setting"),
    "ablate-max-files": (["ablate", "output_root={folder}/out", "ablate.evaluate.max_files=abc"], "ablate.evaluate.max_files=abc: must be a whole number"),
    "ablate-compare-dir-file": (["ablate", "output_root={folder}/out", "ablate.compare_dir={speech}"], "ablate.compare_dir {speech}: is a file"),
    "ablate-jobs-negative": (["ablate", "output_root={folder}/out", "ablate.evaluate.jobs=-1"], "ablate.evaluate.jobs=-1: must be at least 0"),
    "evaluate-device": (["evaluate", "run={run}", "device=cuda"], "device=cuda: CUDA is not available here"),
    "ablate-device": (["ablate", "output_root={folder}/out", "ablate.evaluate.device=gpu0"], "ablate.evaluate.device=gpu0: not a device (auto, cpu, cuda, cuda:1, ...)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, inputs, short_run, capsys):
    if case == "evaluate-device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv, expected = CASES[case]
    bare_run = inputs["folder"] / "bare-run"  # a checkpoint without .hydra/config.yaml
    shutil.copytree(short_run.run_dir / "checkpoints", bare_run / "checkpoints")
    names = {key: str(path) for key, path in inputs.items()} | {
        "run": str(short_run.run_dir), "bare_run": str(bare_run)}  # fmt: skip
    argv = [arg.format(**names) for arg in argv]
    before = _hashes(inputs["folder"], short_run.run_dir)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("warning: ")]  # e.g. "no best.ckpt"
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected.format(**names) in err[0]
    assert _hashes(inputs["folder"], short_run.run_dir) == before
    assert not (inputs["folder"] / "valentini").exists()
    assert not (inputs["folder"] / "out").exists()  # no run or experiment folder, not even empty


def test_evaluate_applies_data_overrides_to_the_runs_own_data(short_run, tmp_path, capsys):
    """`run=DIR data.root=X`: the dataset the run trained on, at root X (here: missing)."""
    run_dir = tmp_path / "valentini-run"
    shutil.copytree(short_run.run_dir / "checkpoints", run_dir / "checkpoints")
    (run_dir / ".hydra").mkdir()
    data = OmegaConf.load(CONFIG_DIR / "data" / "valentini.yaml")
    data.root = str(tmp_path)  # where it was when the run trained
    OmegaConf.save(
        {"seed": 1, "logger": {"csv": {}}, "data": data}, run_dir / ".hydra" / "config.yaml"
    )
    OmegaConf.save(
        {"hydra": {"runtime": {"choices": {"data": "valentini"}}}},
        run_dir / ".hydra" / "hydra.yaml",
    )
    assert main(["evaluate", f"run={run_dir}", f"data.root={tmp_path / 'moved'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {tmp_path / 'moved'}: dataset folder not found"), err
    assert not (run_dir / "eval").exists()


def test_evaluation_follows_the_runs_logger(short_run, tmp_path, capsys):
    """A run trained with logger=csv is evaluated without W&B (no wandb/ folder anywhere)."""
    out = tmp_path / "eval"
    rc = main(["evaluate", f"run={short_run.run_dir}", "max_files=2", "jobs=1", "progress=false",
               f"out_dir={out}", f"noisy_cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert (out / "metrics.csv").is_file() and (out / "summary.json").is_file()
    assert not list(tmp_path.rglob("wandb")) and not list(short_run.run_dir.rglob("wandb"))


def test_the_demo_launcher_is_a_core_dependency():
    """`dfablate ablate experiment=demo` runs its jobs with the joblib launcher."""
    demo = OmegaConf.load(CONFIG_DIR / "experiment" / "demo.yaml")
    assert "joblib" in OmegaConf.to_yaml(demo)
    core = [r for r in importlib.metadata.requires("dfablate") or [] if "extra ==" not in r]
    assert any(r.startswith("hydra-joblib-launcher") for r in core), core
    import hydra_plugins.hydra_joblib_launcher  # noqa: F401  installed with the core


def test_verify_reports_every_kind_of_problem_in_one_pass(mini_root, tmp_path, capsys):
    """Unpaired, unreadable, length and rate mismatches in one tree: all in one report."""
    from dfablate.data.valentini import SPLIT_DIRS

    root = tmp_path / "tree"
    for folder in SPLIT_DIRS["test"]:
        shutil.copytree(mini_root / folder, root / folder)
    clean_dir, noisy_dir = (root / folder for folder in SPLIT_DIRS["test"])
    names = sorted(p.name for p in clean_dir.glob("*.wav"))
    (noisy_dir / names[0]).unlink()  # unpaired
    (clean_dir / names[1]).write_bytes(b"RIFF broken")  # unreadable
    audio, rate = sf.read(noisy_dir / names[2], dtype="float32")
    sf.write(noisy_dir / names[2], audio[:-100], rate)  # length mismatch
    sf.write(noisy_dir / names[3], audio[::3], rate // 3)  # rate mismatch
    assert main(["data", "verify", "--root", str(root), "--split", "test"]) == 1
    out = capsys.readouterr().out
    stems = [Path(name).stem for name in names]
    assert f"1 only in {clean_dir} ({stems[0]}" in out
    assert f"1 unusable audio files: {clean_dir / names[1]}: cannot read audio" in out
    assert f"1 pairs with different clean/noisy lengths: {stems[2]}" in out
    assert f"1 pairs with different clean/noisy sample rates: {stems[3]} (48000 vs 16000 Hz)" in out
    assert out.strip().endswith("result: problems in 1 split(s)")


def test_interrupted_evaluate_says_how_to_resume(short_run, tmp_path, capsys, monkeypatch):
    """Ctrl-C during the second utterance: exit 130 and the command that continues it."""
    import dfablate.evaluation.pipeline

    real, calls = dfablate.evaluation.pipeline.enhance_waveform, []

    def interrupted_on_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main process
        return real(*args, **kwargs)

    monkeypatch.setattr(
        dfablate.evaluation.pipeline, "enhance_waveform", interrupted_on_second_call
    )
    args = [f"run={short_run.run_dir}", "max_files=3", "jobs=1", "progress=false",
            f"out_dir={tmp_path / 'eval'}", f"noisy_cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    assert main(["evaluate", *args]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    expected = "interrupted: the files scored so far are kept; continue with: dfablate evaluate "
    assert err[-1] == expected + " ".join(args)
    monkeypatch.undo()
    assert main(err[-1].split("continue with: dfablate ", 1)[1].split()) == 0
    assert len(pd.read_csv(tmp_path / "eval" / "metrics.csv")) == 3


TRAIN_CASES = {
    "gains-word": (["data.gains_db=[abc]"], "data option gains_db=['abc'] must be"),
    "batch-size-0": (["data.batch_size=0"], "data option batch_size=0 must be at least 1"),
    "crop-negative": (["data.crop_seconds=-1"], "data option crop_seconds=-1 must be at least"),
    "val-speakers": (["data.val_speakers=[nobody]"], "val_speakers nobody not found in"),
    "no-valentini": (["data=valentini", "data.root={folder}/valentini", "logger=wandb"], "{folder}/valentini"),
    "gpu": (["trainer=gpu"], "trainer.accelerator=gpu: no CUDA GPU here"),
    "resume-maybe": (["resume=maybe"], "resume=maybe: must be true or false"),
    "threads-negative": (["num_threads=-1"], "num_threads=-1: must be at least 0"),
    "no-epochs": (["trainer.max_epochs=0"], "trainer.max_epochs=0: nothing to train"),
    "no-batches": (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0: nothing to train"),
    "mini-seed": (["data.mini_seed=-1"], "data option mini_seed=-1 must be a whole number"),
    "trainer-unknown-key": (["+trainer.bogus=1"], "trainer.bogus: not an argument of Lightning's Trainer"),
    "precision": (["trainer.precision=fp8"], "trainer.precision=fp8: Precision 'fp8' is invalid"),
    "output-root-file": (["output_root={speech}"], "output_root {speech}: is a file"),
    "output-root-unwritable": (["output_root=/proc/x"], "output_root /proc/x: cannot write in /proc"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_refused_train_writes_nothing(case, inputs, mini_cache, capsys, monkeypatch):
    """Every data, trainer and device setting is checked before Hydra makes the run folder
    and before W&B starts: no run folder, no `new run in`, no Hydra or W&B lines."""
    if case == "gpu" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    folder = inputs["folder"]
    monkeypatch.chdir(folder)
    extra, expected = TRAIN_CASES[case]
    names = {key: str(path) for key, path in inputs.items()}
    argv = ["train", "data=mini", "model=dfn3_tiny", "trainer=cpu", "logger=csv",
            f"output_root={folder / 'outputs'}"] + [arg.format(**names) for arg in extra]  # fmt: skip
    before = _hashes(folder)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected.format(**names) in err[0], err
    assert "new run in" not in captured.out and "wandb" not in captured.out + captured.err
    assert _hashes(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["speech.wav", "binary.dat", "truncated.wav", "a.csv", "b.csv"]
    )


def test_ablate_schema_is_ablate_yaml_and_an_empty_mapping_is_open():
    """Keys come from configs/ablate.yaml itself; a key declared `{}` takes any children (the
    metric names of a mapping such as `compare.margins`), others only declared ones."""
    from dfablate.ablation_config import check_ablate_keys
    from dfablate.config import config_file
    from dfablate.errors import UserError

    shipped = OmegaConf.load(config_file("ablate.yaml"))
    check_ablate_keys(shipped, {"evaluate": {"jobs": 2, "input_gains_db": [0]}}, "cli")
    schema = OmegaConf.merge(shipped, {"compare": {"margins": {}}})
    check_ablate_keys(schema, {"compare": {"margins": {"pesq": 0.1, "stoi": 0.01}}}, "cli")
    with pytest.raises(UserError, match=r"cli: ablate.compare.bogus is not an ablate setting"):
        check_ablate_keys(schema, {"compare": {"bogus": 1}}, "cli")
    with pytest.raises(UserError, match=r"ablate.evaluate.jobz is not.*did you mean evaluate.jobs"):
        check_ablate_keys(shipped, {"evaluate": {"jobz": 1}}, "cli")


VERBOSE_CASES = {
    "train": ["train", "data=mini", "logger=csv", "resume=maybe", "output_root={folder}/out"],
    "evaluate": ["evaluate", "run={folder}/no-such-run"],
    "compare": ["compare", "{a}", "{a}", "--out", "{folder}/cmp"],
    "ablate": ["ablate", "output_root={folder}/out", "ablate.bogus=1"],
    "score": ["score", "{speech}", "{folder}/missing.wav", "--out", "{folder}/m.csv"],
    "features": ["features", "{folder}/missing.wav"],
    "data": ["data", "make-mini", "--out", "{folder}/mini", "--seed", "-1"],
}


@pytest.mark.parametrize("command", list(VERBOSE_CASES))
def test_verbose_after_the_subcommand_only_adds_the_traceback(command, inputs, capsys):
    """`dfablate COMMAND ... -v` (Hydra would read -v as an override) and `dfablate -v
    COMMAND ...`: the same exit code 2 and error line as without -v, plus the traceback."""
    names = {key: str(path) for key, path in inputs.items()}
    argv = [arg.format(**names) for arg in VERBOSE_CASES[command]]
    before = _hashes(inputs["folder"])
    capsys.readouterr()
    assert main(argv) == 2
    plain = capsys.readouterr().err.strip().splitlines()
    assert len(plain) == 1 and plain[0].startswith("error: "), plain
    for verbose in ([argv[0], "-v", *argv[1:]], ["-v", *argv], [*argv, "--verbose"]):
        assert main(verbose) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == "Traceback (most recent call last):" and err[-1] == plain[0], err
    assert _hashes(inputs["folder"]) == before
    assert sorted(p.name for p in inputs["folder"].iterdir()) == sorted(
        ["speech.wav", "binary.dat", "truncated.wav", "a.csv", "b.csv"]
    )
