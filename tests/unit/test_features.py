"""DfFeatures against libDF itself (the reference), the other norms against loop formulas."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import CONFIG_DIR, DATA_DIR
from upstream import requires_reference

from dfablate.audio import load_audio
from dfablate.features import (
    NORMALISATIONS,
    DfFeatures,
    UnknownNormError,
    ema,
    feature_std,
)
from dfablate.models.layers import erb_widths

ALPHA = 0.99  # df.utils.get_norm_alpha at the defaults
CONFIG_NORM_DIR = CONFIG_DIR / "norm"
DEBIASED = {"original_debiased": 0.5, "fixed_debiased": 1.0}  # name -> exponent of m_t


def _libdf_features(audio: np.ndarray, nb_df: int = 96):
    """libDF's own pipeline on [C, T] (what df.enhance.df_features does)."""
    libdf = importlib.import_module("libdf")
    state = libdf.DF(sr=48000, fft_size=960, hop_size=480, nb_bands=32, min_nb_erb_freqs=2)
    spec = state.analysis(np.ascontiguousarray(audio, dtype=np.float32))
    erb = libdf.erb_norm(libdf.erb(spec, state.erb_widths()), ALPHA)
    unit = libdf.unit_norm(spec[..., :nb_df].copy(), ALPHA)
    state.reset()
    wave = state.synthesis(spec.copy())
    return spec, erb, unit, wave


def _as_complex(x: torch.Tensor) -> np.ndarray:
    return torch.view_as_complex(x.contiguous()).numpy()


def _speech() -> np.ndarray:
    data, rate = sf.read(DATA_DIR / "clean_freesound_33711.wav", dtype="float32")
    assert rate == 48000
    return data


def _assert_matches_libdf(audio: np.ndarray) -> None:
    spec, erb, unit, wave = _libdf_features(audio)
    out = DfFeatures()(torch.from_numpy(audio))
    assert out.spec.shape == (audio.shape[0], 1, audio.shape[1] // 480, 481, 2)
    assert out.feat_erb.shape == (audio.shape[0], 1, audio.shape[1] // 480, 32)
    assert out.feat_spec.shape == (audio.shape[0], 1, audio.shape[1] // 480, 96, 2)
    scale = max(np.abs(spec).max(), 1e-12)
    np.testing.assert_allclose(_as_complex(out.spec[:, 0]), spec, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(out.feat_erb[:, 0].numpy(), erb, rtol=0, atol=2e-5)
    np.testing.assert_allclose(_as_complex(out.feat_spec[:, 0]), unit, rtol=1e-4, atol=1e-6)
    synth = DfFeatures().synthesis(out.spec).numpy()
    np.testing.assert_allclose(synth, wave, rtol=0, atol=1e-6 * max(np.abs(audio).max(), 1e-12))


@requires_reference
def test_original_matches_libdf_on_real_speech():
    _assert_matches_libdf(_speech()[None])


@requires_reference
def test_original_matches_libdf_on_real_noisy_speech_batch():
    noisy, _ = sf.read(DATA_DIR / "noisy_snr0.wav", dtype="float32")
    clean = _speech()
    n = min(len(noisy), len(clean))
    _assert_matches_libdf(np.stack([clean[:n], noisy[:n], 0.01 * noisy[:n]]))


@requires_reference
@pytest.mark.parametrize("length", [480, 481, 959, 4321, 48000 * 3 + 17])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_original_matches_libdf_on_noise_any_length_and_channels(length, channels):
    rng = np.random.default_rng(length * 10 + channels)
    audio = rng.standard_normal((channels, length)) * rng.uniform(0.01, 1, (channels, 1))
    _assert_matches_libdf(audio.astype(np.float32))


def test_shorter_than_one_hop_gives_zero_frames():
    out = DfFeatures()(torch.zeros(2, 100))
    assert out.spec.shape == (2, 1, 0, 481, 2) and out.feat_spec.shape == (2, 1, 0, 96, 2)
    assert DfFeatures().synthesis(out.spec).shape == (2, 0)


def _loop_ema(x: np.ndarray, init: np.ndarray) -> np.ndarray:
    state, out = init.astype(np.float64), np.empty_like(x, dtype=np.float64)
    for t in range(x.shape[1]):
        state = x[:, t] * (1 - ALPHA) + state * ALPHA
        out[:, t] = state
    return out


def test_fixed_rms_none_follow_their_formulas():
    audio = _speech()[None, : 48000 * 4]
    spec = DfFeatures()(torch.from_numpy(audio)).spec[:, 0, :, :96]
    x = _as_complex(spec).astype(np.complex128)
    init = np.linspace(1e-3, 1e-4, 96)
    expected = {
        "fixed": x / _loop_ema(np.abs(x), init),
        "rms": x / np.sqrt(_loop_ema(np.abs(x) ** 2, init**2)),
        "original": x / np.sqrt(_loop_ema(np.abs(x), init)),
        "none": x,
    }
    for name, want in expected.items():
        got = _as_complex(DfFeatures(norm=name)(torch.from_numpy(audio)).feat_spec[:, 0])
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6, err_msg=name)


def test_fixed_is_gain_invariant_and_original_is_not():
    audio = torch.from_numpy(_speech()[None, 48000 : 48000 * 10])
    # after the initial state has decayed (several time constants), fixed ignores the gain
    late = slice(600, None)
    for name, exponent in (("fixed", 0.0), ("original", 0.5)):
        feats = DfFeatures(norm=name)
        quiet = feats(audio).feat_spec[:, :, late]
        loud = feats(audio * 16).feat_spec[:, :, late]
        ratio = (loud.norm() / quiet.norm()).item()
        assert ratio == pytest.approx(16**exponent, rel=0.02), name


def _loop_fixed_warm(x: np.ndarray) -> np.ndarray:
    """fixed_warm by its definition, one frame at a time: [T, F] complex -> [T, F]."""
    out = np.zeros_like(x)
    for f in range(x.shape[1]):
        state = None
        for t in range(x.shape[0]):
            magnitude = abs(x[t, f])
            if state is None and magnitude == 0:
                continue  # before the bin's first non-zero magnitude: output 0
            state = magnitude if state is None else magnitude * (1 - ALPHA) + state * ALPHA
            out[t, f] = x[t, f] / state
    return out


def test_fixed_warm_follows_its_definition_and_silence_gives_zeros():
    speech = _speech()[: 48000 * 2]
    audio = np.concatenate([np.zeros(48000 // 2, np.float32), speech])[None]  # 0.5 s of silence
    spec = DfFeatures()(torch.from_numpy(audio)).spec[0, 0, :, :96]
    want = _loop_fixed_warm(_as_complex(spec).astype(np.complex128))
    got = DfFeatures(norm="fixed_warm")(torch.from_numpy(audio)).feat_spec[0, 0]
    assert torch.isfinite(got).all()
    assert not got[:49].any()  # frames of digital silence only (frame 49 overlaps the speech)
    np.testing.assert_allclose(_as_complex(got), want, rtol=2e-4, atol=1e-6)
    silent = DfFeatures(norm="fixed_warm")(torch.zeros(1, 48000)).feat_spec
    assert torch.isfinite(silent).all() and not silent.any()


@pytest.mark.parametrize("gain_db", [-26.0, 10.0])
def test_fixed_warm_feat_spec_ignores_the_input_gain(gain_db):
    audio = torch.from_numpy(_speech()[None, : 48000 * 4])
    audio = torch.cat([torch.zeros(1, 4800), audio], dim=1)  # starts with digital silence
    features = DfFeatures(norm="fixed_warm")
    reference = features(audio).feat_spec
    shifted = features(audio * 10 ** (gain_db / 20)).feat_spec
    assert ((shifted - reference).norm() / reference.norm()).item() < 1e-5
    # fixed, on the same signal, is far from it: its start state does not scale with the gain
    fixed = DfFeatures(norm="fixed")
    moved = fixed(audio * 10 ** (gain_db / 20)).feat_spec - fixed(audio).feat_spec
    assert (moved.norm() / fixed(audio).feat_spec.norm()).item() > 0.1


def test_per_bin_std_against_input_level_original_and_fixed():
    """The issue's table: mean per-bin std of feat_spec on a 3 s crop of noisy_snr0.wav at
    -20 / 0 / +20 dB. original grows with sqrt(gain); fixed grows too, through its start state."""
    noisy, _ = sf.read(DATA_DIR / "noisy_snr0.wav", dtype="float32")
    crop = noisy[: 3 * 48000]
    table = {"fixed": (0.65, 1.38, 2.09), "original": (0.0084, 0.037, 0.13)}
    for norm, want in table.items():
        got = [
            feature_std([crop * 10 ** (g / 20)], norm)[["std_real", "std_imag"]].to_numpy().mean()
            for g in (-20, 0, 20)
        ]
        assert got == pytest.approx(want, rel=0.04), norm
    # fixed is linear in (spectrum, start state): scaling the start state with the gain gives
    # the same features, so its level dependence is the start state's alone
    spec = DfFeatures()(torch.from_numpy(crop[None])).spec[:, 0, :, :96]
    spec = torch.view_as_complex(spec.contiguous())
    init = torch.linspace(1e-3, 1e-4, 96)
    fixed = NORMALISATIONS["fixed"]
    same = fixed(spec * 10.0, init * 10.0, ALPHA)
    torch.testing.assert_close(same, fixed(spec, init, ALPHA), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(fixed(spec * 10.0, init, ALPHA), same, rtol=0.01)
    warm = [feature_std([crop * 10 ** (g / 20)], "fixed_warm").std_real.mean() for g in (-20, 20)]
    assert warm[0] == pytest.approx(warm[1], rel=1e-4)


def test_ema_matches_loop_for_long_and_odd_lengths():
    torch.manual_seed(0)
    for frames in (1, 63, 64, 65, 4097):
        x = torch.rand(3, frames, 7)
        init = torch.rand(7)
        want = _loop_ema(x.permute(0, 2, 1).reshape(-1, frames).numpy(), np.tile(init.numpy(), 3))
        got = ema(x, ALPHA, init).permute(0, 2, 1).reshape(-1, frames).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_features_on_gpu_match_cpu():
    audio = torch.from_numpy(_speech()[None].repeat(4, 0))
    cpu = DfFeatures(norm="fixed")(audio)
    gpu = DfFeatures(norm="fixed").cuda()(audio.cuda())
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)


def test_synthesis_inverts_analysis_with_fixed_delay():
    audio = torch.from_numpy(_speech()[None, :48000])
    feats = DfFeatures()
    wave = feats.synthesis(feats(audio).spec)
    d = feats.delay
    torch.testing.assert_close(wave[:, d:], audio[:, : wave.shape[1] - d], rtol=0, atol=1e-6)


def test_unknown_norm_lists_known_ones():
    with pytest.raises(
        UnknownNormError,
        match="unknown normalisation 'sqrt'; known: fixed, fixed_debiased, fixed_warm, none, "
        "original, original_debiased, rms",
    ):
        DfFeatures(norm="sqrt")


def test_every_norm_has_a_config_file_and_back():
    yaml_names = {p.stem for p in CONFIG_NORM_DIR.glob("*.yaml")}
    assert {"original", "fixed", "fixed_warm", "rms", "none", *DEBIASED} <= set(NORMALISATIONS)
    assert yaml_names == set(NORMALISATIONS)


def test_feature_std_is_bessel_corrected_over_all_frames():
    speech = _speech()
    a, b = speech[: 48000 * 2], speech[48000 * 3 : 48000 * 4]
    table = feature_std([a, b], norm="fixed")
    assert list(table.columns) == ["bin", "std_real", "std_imag"]
    feats = DfFeatures(norm="fixed")
    frames = torch.cat([feats(torch.from_numpy(w)[None]).feat_spec[0, 0] for w in (a, b)]).numpy()
    want = frames.astype(np.float64).std(axis=0, ddof=1)
    np.testing.assert_allclose(table[["std_real", "std_imag"]].to_numpy(), want, rtol=1e-5)
    # the diagnostic the issue is about: fixed is near unit variance, original far below it
    assert 0.5 < table.std_real[1:].mean() < 3
    assert feature_std([a, b], norm="original").std_real[1:].mean() < 0.3


@pytest.mark.parametrize("norm", ["fixed", *sorted(DEBIASED)])
def test_features_cli_writes_csv_and_resamples(tmp_path, capsys, data_dir, norm):
    from dfablate.cli import main

    out = tmp_path / "std.csv"
    arctic = data_dir / "arctic_a0007.wav"  # 16 kHz: resampled to 48 kHz
    assert main(["features", str(arctic), "--norm", norm, "--csv", str(out)]) == 0
    table = np.genfromtxt(out, delimiter=",", names=True)
    assert table.dtype.names == ("bin", "std_real", "std_imag") and len(table) == 96
    want = feature_std([load_audio(arctic, 48000)], norm=norm)
    np.testing.assert_allclose(table["std_real"], want.std_real, rtol=1e-6)
    assert np.isfinite(table["std_real"]).all()
    printed = capsys.readouterr().out
    assert f"norm={norm}" in printed and "95" in printed


def test_features_cli_downmixes_stereo_with_warning(tmp_path, capsys):
    from dfablate.cli import main

    speech = _speech()[: 48000 * 2]
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([speech, speech], axis=1), 48000)
    with pytest.warns(UserWarning, match="down-mixed"):
        assert main(["features", str(stereo), "--csv", str(tmp_path / "s.csv")]) == 0


@pytest.mark.parametrize("kind", ["garbage", "empty", "missing"])
def test_features_cli_bad_file_is_one_line_naming_it(tmp_path, capsys, kind):
    from dfablate.cli import main

    bad = tmp_path / f"{kind}.wav"
    if kind == "garbage":
        bad.write_bytes(b"RIFF\x00\x00not a wav at all")
    elif kind == "empty":
        sf.write(bad, np.zeros(0, dtype=np.float32), 48000)
    good = DATA_DIR / "arctic_a0009.wav"
    assert main(["features", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and "\n" not in err


@requires_reference
@pytest.mark.parametrize(
    "sr,fft_size,nb_erb,min_freqs",
    [(48000, 960, 32, 2), (48000, 960, 32, 1), (16000, 320, 32, 2), (44100, 882, 24, 3)],
)
def test_erb_widths_port_matches_libdf(sr, fft_size, nb_erb, min_freqs):
    want = (
        importlib.import_module("libdf")
        .DF(sr, fft_size, fft_size // 2, nb_erb, min_freqs)
        .erb_widths()
    )
    np.testing.assert_array_equal(erb_widths(sr, fft_size, nb_erb, min_freqs), want)


# ---------------------------------------------------------------- bias-corrected EMA norms


def _loop_debiased(x: np.ndarray, exponent: float) -> np.ndarray:
    """X / m_t^exponent by the definition, one frame at a time (float64): [T, F] -> [T, F]."""
    out = np.zeros_like(x)
    state = np.zeros(x.shape[1])
    for t in range(x.shape[0]):
        state = ALPHA * state + (1 - ALPHA) * np.abs(x[t])
        mean = state / (1 - ALPHA ** (t + 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[t] = np.where(mean > 0, x[t] / mean**exponent, 0)
    return out


@pytest.mark.parametrize("name", sorted(DEBIASED))
def test_debiased_norms_follow_their_definition_and_silence_gives_zeros(name):
    speech = _speech()[: 48000 * 2]
    audio = np.concatenate([np.zeros(48000 // 2, np.float32), speech])[None]  # 0.5 s of silence
    spec = DfFeatures()(torch.from_numpy(audio)).spec[0, 0, :, :96]
    want = _loop_debiased(_as_complex(spec).astype(np.complex128), DEBIASED[name])
    got = DfFeatures(norm=name)(torch.from_numpy(audio)).feat_spec[0, 0]
    assert torch.isfinite(got).all()
    assert not got[:49].any()  # digital silence gives zeros, not NaN
    np.testing.assert_allclose(_as_complex(got), want, rtol=2e-4, atol=1e-6)
    silent = DfFeatures(norm=name)(torch.zeros(2, 48000)).feat_spec
    assert torch.isfinite(silent).all() and not silent.any()


@pytest.mark.parametrize("name", sorted(DEBIASED))
def test_debiased_norms_scale_as_gain_to_one_minus_exponent(name):
    """Property over -40..+20 dB: feat_spec(g x) = g^(1 - exponent) feat_spec(x), i.e. fixed_debiased
    is gain-invariant and original_debiased scales with sqrt(g); 24 random gains in one batch."""
    rng = np.random.default_rng(16)
    gains_db = np.concatenate([[-40.0, 20.0], rng.uniform(-40, 20, 22)])
    audio = torch.from_numpy(_speech()[None, : 48000 * 3])
    audio = torch.cat([torch.zeros(1, 4800), audio], dim=1)  # starts with digital silence
    gains = torch.from_numpy(10 ** (gains_db / 20)).float()[:, None]
    features = DfFeatures(norm=name)
    reference = features(audio).feat_spec  # [1, 1, T, F, 2]
    shifted = features(audio * gains).feat_spec  # [G, 1, T, F, 2]
    scale = (gains.double() ** (1 - DEBIASED[name])).reshape(-1, 1, 1, 1, 1)
    expected = reference.double() * scale
    relative = (shifted.double() - expected).flatten(1).norm(dim=1) / expected.flatten(1).norm(
        dim=1
    )
    assert relative.max().item() <= 1e-5, dict(
        zip(gains_db.round(1), relative.tolist(), strict=True)
    )


@pytest.mark.parametrize("name", sorted(DEBIASED))
def test_debiased_norms_stream_in_chunks_as_the_whole_utterance(name):
    """One state and one frame counter per stream: chunks of any size give the whole's output."""
    from dfablate.features import debiased_ema

    spec = DfFeatures()(torch.from_numpy(_speech()[None, : 48000 * 3])).spec[:, 0, :, :96]
    spec = torch.view_as_complex(spec.contiguous())  # [1, T, F]
    whole = DfFeatures(norm=name).norm_fn(spec, None, ALPHA)
    magnitude = spec.abs()
    chunks, state, seen = [], None, 0
    for size in (1, 7, 64, 65, 300 - 137):  # 300 frames in uneven chunks
        mean, state = debiased_ema(magnitude[:, seen : seen + size], ALPHA, state, seen)
        chunks.append(mean)
        seen += size
    assert seen == spec.shape[1]
    mean = torch.cat(chunks, dim=1)
    streamed = spec / mean ** DEBIASED[name]
    torch.testing.assert_close(streamed, whole, rtol=1e-5, atol=1e-7)
