"""Evaluation on real speech: CSV layout, resume after an interruption, the noisy cache,
W&B offline logging and one-line errors for bad inputs."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from pesq import pesq
from scipy.signal import resample_poly
from wandb_offline import read_offline_run

from dfablate.audio import load_audio
from dfablate.cli import main
from dfablate.data.valentini import find_clean_noisy_pairs
from dfablate.errors import UserError
from dfablate.evaluation.pipeline import PIPELINE_VERSION, evaluate_model
from dfablate.evaluation.testset import TestSet as EvalSet
from dfablate.evaluation.testset import gain_dir_name
from dfablate.scoring import COLUMNS
from dfablate.training.module import DfnSystem

TINY = {"conv_ch": 8, "emb_hidden_dim": 32, "df_hidden_dim": 32, "enc_linear_groups": 8,
        "linear_groups": 8}  # fmt: skip


def save_checkpoint(run_dir: Path, norm: str, seed: int = 0) -> Path:
    """A run directory with a checkpoint of an (untrained) tiny DFN3, written by the real
    module's checkpoint hook, and the training config the run records."""
    torch.manual_seed(seed)
    system = DfnSystem(norm=norm, model={"arch": "dfn3", "params": TINY})
    checkpoint = {"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams)}
    system.on_save_checkpoint(checkpoint)
    path = run_dir / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"name: test\nseed: {seed}\nnorm:\n  name: {norm}\n"
    )
    return path


class StopAfter(torch.nn.Module):
    """The real model, interrupted (like Ctrl-C) when asked for utterance `stop_at`."""

    def __init__(self, model: torch.nn.Module, stop_at: int):
        super().__init__()
        self.model, self.stop_at, self.calls = model, stop_at, 0

    def forward(self, *inputs):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.model(*inputs)


RESUMED = pytest.mark.xdist_group("evaluation_resumed")  # one process builds it once


@dataclass(frozen=True)
class ResumedEvaluation:
    """An evaluation interrupted (like Ctrl-C) at its 4th file, its finished rows marked, a
    failed and a cut row appended, then resumed with save_enhanced=true."""

    system: DfnSystem
    test_set: EvalSet
    out: Path
    options: dict  # evaluate_model's keyword arguments, the noisy cache folder among them
    partial: pd.DataFrame  # metrics.csv as the interruption left it
    enhanced_on_resume: int  # files the model enhanced when resumed
    summary: dict  # the resumed run's summary


@pytest.fixture(scope="module")
def resumed_evaluation(testset_root, tmp_path_factory) -> ResumedEvaluation:
    torch.manual_seed(0)
    system = DfnSystem(norm="fixed", model={"arch": "dfn3", "params": TINY}).eval()
    test_set = EvalSet("toy", testset_root, find_clean_noisy_pairs(testset_root, "test"))
    base = tmp_path_factory.mktemp("resumed")
    out, cache = base / "eval", base / "cache"
    options = dict(provenance={"checkpoint_sha1": "abc"}, noisy_cache_dir=cache, jobs=1,
                   progress=False)  # fmt: skip

    with pytest.raises(KeyboardInterrupt):
        evaluate_model(system.features, StopAfter(system.dfnet, 4), test_set, out, **options)
    partial = pd.read_csv(out / "metrics.csv")
    assert 1 <= len(partial) <= 3
    # mark the finished rows: a recomputation would overwrite the marker
    marked = partial.assign(pesq=9.5)
    # an error row (a file that failed last time) is not done: it is scored again
    failed = ",".join(["p232_003.wav", *[""] * (len(COLUMNS) - 2), "unreadable last time"])
    text = marked.to_csv(index=False) + failed + "\np232_003.wav,1.2,0.9"  # + a cut line
    (out / "metrics.csv").write_text(text)

    resumed = StopAfter(system.dfnet, 0)
    evaluation = evaluate_model(
        system.features, resumed, test_set, out, save_enhanced=True, **options
    )
    return ResumedEvaluation(
        system, test_set, out, options, partial, resumed.calls, evaluation.summary
    )


@RESUMED
def test_interrupted_evaluation_resumes_without_recomputing(resumed_evaluation):
    resumed = resumed_evaluation
    assert resumed.enhanced_on_resume == 5 - len(resumed.partial)  # only the missing files
    table = pd.read_csv(resumed.out / "metrics.csv").fillna({"error": ""})
    assert list(table.columns) == list(COLUMNS)
    assert table["file"].tolist() == [p.noisy.name for p in resumed.test_set.pairs]
    by_file = table.set_index("file")
    assert (by_file.loc[resumed.partial["file"], "pesq"] == 9.5).all()


@RESUMED
def test_failed_rows_are_scored_again_on_resume_and_silence_fails(resumed_evaluation):
    out = resumed_evaluation.out
    retried = pd.read_csv(out / "metrics.csv").fillna({"error": ""}).set_index("file")
    assert retried.loc["p232_003.wav", "error"] == "" and retried.loc["p232_003.wav", "pesq"] > 1
    silent = retried.loc["p257_001.wav"]
    assert "no speech" in silent["error"] and np.isnan(silent["pesq"])
    assert resumed_evaluation.summary["n_failed"] == 1


@RESUMED
def test_saved_enhanced_audio_is_the_delay_free_model_output(resumed_evaluation, testset_root):
    """The saved enhanced audio is the delay-free model output, same length as the input."""
    system = resumed_evaluation.system
    noisy = load_audio(testset_root / "noisy_testset_wav" / "p232_003.wav", 48_000)
    saved, rate = sf.read(resumed_evaluation.out / "enhanced" / "p232_003.wav", dtype="float32")
    assert rate == 48_000 and saved.shape == noisy.shape
    np.testing.assert_allclose(saved, system.enhance(torch.from_numpy(noisy)).numpy(), atol=1e-6)


@RESUMED
def test_the_noisy_input_is_scored_once_into_the_cache(resumed_evaluation, tmp_path):
    """The noisy input was scored once, into the cache: a marker there survives another run
    (on copies of the output and cache folders, which the other tests read)."""
    resumed = resumed_evaluation
    shared_cache = resumed.options["noisy_cache_dir"]
    out, cache = tmp_path / "eval", tmp_path / "cache"
    shutil.copytree(resumed.out, out)
    shutil.copytree(shared_cache, cache)
    options = {**resumed.options, "noisy_cache_dir": cache}
    noisy_csv = cache / Path(resumed.summary["noisy_metrics_csv"]).relative_to(shared_cache)
    noisy_table = pd.read_csv(noisy_csv)
    assert len(noisy_table) == 5
    noisy_table.assign(stoi=0.25).to_csv(noisy_csv, index=False)
    (out / "eval_state.json").write_text("{}")  # pretend another checkpoint: start over
    system = resumed.system
    with pytest.warns(UserWarning, match="re-evaluating"):
        again = evaluate_model(system.features, system.dfnet, resumed.test_set, out, **options)
    assert again.summary["noisy"]["stoi"] == pytest.approx(0.25)
    assert again.summary["mean"]["pesq"] < 5  # recomputed, marker gone


def test_cli_evaluate_run_dir_with_wandb(testset_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "runs" / "fixed-seed3"
    save_checkpoint(run_dir, "fixed", seed=3)
    code = main(
        ["evaluate", f"run={run_dir}", "data=valentini", f"data.root={testset_root}", "jobs=2",
         f"noisy_cache_dir={tmp_path / 'cache'}", "progress=false"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    out = run_dir / "eval" / "valentini"
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns) == list(COLUMNS) and len(table) == 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["norm"] == "fixed" and summary["seed"] == 3 and summary["complete"]
    assert summary["dataset"]["n_files"] == 5
    assert summary["mean"]["pesq"] == pytest.approx(table["pesq"].mean())
    assert "noisy" in capsys.readouterr().out

    # the noisy input's row: the clean file is the reference, the noisy one the degraded signal
    noisy_rows = pd.read_csv(summary["noisy_metrics_csv"]).set_index("file")
    clean16, noisy16 = (
        resample_poly(load_audio(testset_root / folder / "p232_001.wav", 48_000), 1, 3)
        for folder in ("clean_testset_wav", "noisy_testset_wav")
    )
    assert noisy_rows.loc["p232_001.wav", "pesq"] == pytest.approx(
        pesq(16_000, clean16, noisy16, "wb"), abs=1e-6
    )
    assert noisy_rows.loc["p232_001.wav", "pesq"] != pytest.approx(
        pesq(16_000, noisy16, clean16, "wb"), abs=1e-3
    )

    logged = read_offline_run(out / "wandb")
    assert logged.run["job_type"] == "eval" and "norm:fixed" in logged.run["tags"]
    assert logged.config["norm"] == {"name": "fixed"}
    assert logged.summary["eval/valentini/pesq"] == pytest.approx(summary["mean"]["pesq"])
    assert logged.summary["eval/valentini/per_file"]["nrows"] == 5


def test_bad_inputs_are_one_line_errors(testset_root, tmp_path, capsys):
    empty_run = tmp_path / "original-seed0"
    empty_run.mkdir()
    assert main(["evaluate", f"run={empty_run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no checkpoint" in err and str(empty_run) in err

    run_dir = tmp_path / "fixed-seed0"
    save_checkpoint(run_dir, "fixed")
    args = ["evaluate", f"run={run_dir}", "expect_norm=original", "data=valentini",
            f"data.root={testset_root}", "wandb.mode=disabled"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "norm=fixed" in err and "norm=original" in err

    assert main(["evaluate", f"ckpt={tmp_path / 'missing.ckpt'}"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_gain_folder_names_have_an_explicit_sign():
    assert gain_dir_name("valentini", 0.0) == "valentini"
    assert gain_dir_name("valentini", -20.0) == "valentini@-20dB"
    assert gain_dir_name("valentini", 10.0) == "valentini@+10dB"
    assert gain_dir_name("valentini", 2.5) == "valentini@+2.5dB"
    assert gain_dir_name("valentini-20files", -20.0) == "valentini-20files@-20dB"


SHIFTED = pytest.mark.xdist_group("evaluation_shifted_levels")  # one process builds it once
SHIFTED_FOLDERS = {-25: "valentini@-25dB", 10: "valentini@+10dB"}


@dataclass(frozen=True)
class ShiftedLevels:
    """`dfablate evaluate` of one run at -25 and +10 dB input levels."""

    run_dir: Path
    cache: Path  # the noisy-score cache folder
    common: list[str]  # the evaluate arguments but input_gain_db
    noisy: dict[int, pd.DataFrame]  # gain: the noisy input's scores, indexed by file


@pytest.fixture(scope="module")
def shifted_levels(testset_root, tmp_path_factory) -> ShiftedLevels:
    base = tmp_path_factory.mktemp("shifted")
    run_dir = base / "runs" / "original-seed0"
    save_checkpoint(run_dir, "original")
    common = ["evaluate", f"run={run_dir}", "data=valentini", f"data.root={testset_root}",
              "jobs=2", f"noisy_cache_dir={base / 'cache'}", "progress=false",
              "wandb.mode=disabled"]  # fmt: skip
    noisy = {}
    for gain, folder in SHIFTED_FOLDERS.items():
        assert main([*common, f"input_gain_db={gain}"]) == 0
        summary = json.loads((run_dir / "eval" / folder / "summary.json").read_text())
        noisy[gain] = pd.read_csv(summary["noisy_metrics_csv"]).set_index("file")
    return ShiftedLevels(run_dir, base / "cache", common, noisy)


@SHIFTED
def test_cli_evaluate_at_shifted_input_levels(shifted_levels):
    for gain, folder in SHIFTED_FOLDERS.items():
        path = shifted_levels.run_dir / "eval" / folder / "summary.json"
        summary = json.loads(path.read_text())
        assert summary["input_gain_db"] == float(gain) and isinstance(
            summary["input_gain_db"], float
        )
        assert summary["pipeline_version"] == PIPELINE_VERSION
        assert summary["scored_at"] == "reference"
    assert not (shifted_levels.run_dir / "eval" / "valentini").exists()


@SHIFTED
def test_the_unprocessed_input_is_scored_unscaled_once(shifted_levels):
    """The unprocessed input is scored unscaled: one cache entry, identical scores at every
    gain."""
    noisy = shifted_levels.noisy
    scored = noisy[10]["pesq"].notna()
    assert scored.sum() == 4
    assert len(list(shifted_levels.cache.iterdir())) == 1
    metrics = ["pesq", "stoi", "csig", "cbak", "covl", "ssnr", "sisdr"]
    np.testing.assert_allclose(
        noisy[-25].loc[scored, metrics], noisy[10].loc[scored, metrics], rtol=0, atol=1e-6
    )


@SHIFTED
def test_the_model_sees_the_shifted_input(shifted_levels):
    """Its output is not a scaled copy of the 0 dB output."""
    eval_dir = shifted_levels.run_dir / "eval"
    enhanced = {g: pd.read_csv(eval_dir / f / "metrics.csv") for g, f in SHIFTED_FOLDERS.items()}
    assert abs(enhanced[-25]["sisdr"].mean() - enhanced[10]["sisdr"].mean()) > 0.01


@SHIFTED
def test_rows_of_an_older_pipeline_version_are_scored_again(shifted_levels, tmp_path):
    """They are not mixed with new ones (shown on a copy of the run: the other tests read it)."""
    run_dir = tmp_path / "original-seed0"
    shutil.copytree(shifted_levels.run_dir, run_dir)
    common = [f"run={run_dir}" if a.startswith("run=") else a for a in shifted_levels.common]
    out = run_dir / "eval" / "valentini@+10dB"
    state = json.loads((out / "eval_state.json").read_text())
    (out / "eval_state.json").write_text(json.dumps({**state, "pipeline_version": 1}))
    pd.read_csv(out / "metrics.csv").assign(pesq=9.5).to_csv(out / "metrics.csv", index=False)
    with pytest.warns(UserWarning, match="pipeline version"):
        assert main([*common, "input_gain_db=10"]) == 0
    assert (pd.read_csv(out / "metrics.csv")["pesq"].dropna() < 5).all()


@SHIFTED
@pytest.mark.parametrize("bad", ["loud", "1e9", "-121"])
def test_bad_input_levels_are_one_line_errors(shifted_levels, bad, capsys):
    """Not a number; past float32 audio; beyond +-120 dB: refused, no folder written."""
    assert main([*shifted_levels.common, f"input_gain_db={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "input_gain_db=" in err and "Traceback" not in err
    assert "within +-120" in err
    assert sorted(p.name for p in (shifted_levels.run_dir / "eval").iterdir()) == [
        "valentini@+10dB", "valentini@-25dB"
    ]  # fmt: skip


def _identity_model(monkeypatch) -> None:
    """Enhancement that returns its input: the scores then depend only on the data."""
    from dfablate.evaluation import pipeline

    monkeypatch.setattr(pipeline, "_enhance", lambda noisy, features, model, device: noisy)


def test_input_gains_and_reused_folders(testset_root, tmp_path, monkeypatch):
    """An identity model at +-10 dB has the SSNR it has at 0 dB (its output divided by the
    input gain, scored against the unscaled reference); one out_dir reused for another gain, or holding a metrics.csv
    without eval_state.json, is scored again with a warning, never reused."""
    _identity_model(monkeypatch)
    system = DfnSystem(norm="fixed", model={"arch": "dfn3", "params": TINY}).eval()
    pairs = find_clean_noisy_pairs(testset_root, "test")[:2]
    test_set = EvalSet("toy", testset_root, pairs)
    out = tmp_path / "eval"
    options = dict(provenance={"checkpoint_sha1": "abc"}, noisy_cache_dir=tmp_path / "cache",
                   jobs=1, progress=False)  # fmt: skip

    def ssnr(gain: float, folder: Path) -> np.ndarray:
        evaluation = evaluate_model(
            system.features, system.dfnet, test_set, folder, input_gain_db=gain, **options
        )
        return np.array([row["ssnr"] for row in evaluation.rows])

    at_zero = ssnr(0.0, out)
    assert np.isfinite(at_zero).all()
    table = pd.read_csv(out / "metrics.csv")
    table.assign(ssnr=99.0).to_csv(out / "metrics.csv", index=False)  # reused: marker stays
    with pytest.warns(UserWarning, match="re-evaluating"):
        louder = ssnr(10.0, out)  # the same folder at another gain
    np.testing.assert_allclose(louder, at_zero, atol=1e-3)
    np.testing.assert_allclose(ssnr(-10.0, tmp_path / "quiet"), at_zero, atol=1e-3)

    (out / "eval_state.json").unlink()  # results of unknown origin
    pd.read_csv(out / "metrics.csv").assign(ssnr=99.0).to_csv(out / "metrics.csv", index=False)
    with pytest.warns(UserWarning, match="re-evaluating"):
        again = ssnr(10.0, out)
    np.testing.assert_allclose(again, at_zero, atol=1e-3)


def test_a_foreign_metrics_csv_in_out_dir_is_left_alone(testset_root, tmp_path):
    """out_dir= holding a metrics.csv that is not one (a user's own table): refused, kept."""
    system = DfnSystem(norm="fixed", model={"arch": "dfn3", "params": TINY}).eval()
    test_set = EvalSet("toy", testset_root, find_clean_noisy_pairs(testset_root, "test")[:1])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.csv").write_text("name,score\nx,1\n")
    with pytest.raises(UserError, match="exists but is not a metrics CSV"):
        evaluate_model(system.features, system.dfnet, test_set, out,
                       provenance={"checkpoint_sha1": "abc"}, noisy_cache_dir=tmp_path / "cache",
                       jobs=1, progress=False)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv"]
    assert (out / "metrics.csv").read_text() == "name,score\nx,1\n"


def test_output_at_a_gain_is_scored_at_the_reference_level(data_dir):
    """The output for the input times g is divided by g and scored against the unscaled clean
    file: a model that only passes the level through scores as at 0 dB, on every metric."""
    from dfablate.audio import gain_factor, load_audio
    from dfablate.evaluation.file_scores import score_file

    clean, noisy = data_dir / "clean_freesound_33711.wav", data_dir / "noisy_snr0.wav"
    output = load_audio(noisy, 48000)  # an identity "model" of the 0 dB input
    at_zero = score_file("x.wav", clean, output, 48000, 0.0)
    for gain in (-25.0, 10.0):
        scaled = (output * np.float32(gain_factor(gain))).astype(np.float32)
        row = score_file("x.wav", clean, scaled, 48000, gain)
        assert row["error"] == ""
        for metric in ("pesq", "stoi", "csig", "cbak", "covl", "ssnr", "sisdr"):
            assert row[metric] == pytest.approx(at_zero[metric], abs=1e-4), (gain, metric)
