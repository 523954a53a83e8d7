"""Enhancement is delay-free and length-preserving: the identity model gives back the input."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from upstream import requires_reference

from dfablate.audio import load_audio
from dfablate.enhance import enhance_waveform
from dfablate.features import DfFeatures
from dfablate.models.build import build_model


def identity(spec, feat_erb, feat_spec):
    return spec


@pytest.mark.parametrize("length", [48_000, 48_123, 479, 961])
def test_identity_model_returns_the_input(speech_48k, length):
    audio = load_audio(speech_48k, 48_000)
    noisy = torch.from_numpy(audio[20_000 : 20_000 + length].copy())
    features = DfFeatures(norm="fixed")
    enhanced = enhance_waveform(noisy, features, identity)
    assert enhanced.shape == noisy.shape
    torch.testing.assert_close(enhanced, noisy, atol=1e-6, rtol=0)


def test_batch_and_tuple_output_of_a_scaling_model(noisy_48k):
    audio = load_audio(noisy_48k, 48_000)
    batch = torch.from_numpy(audio[:96_100].copy()).reshape(2, -1)
    features = DfFeatures(norm="original", fft_size=960, hop_size=480)
    enhanced = enhance_waveform(batch, features, lambda s, e, f: (0.5 * s, None))
    torch.testing.assert_close(enhanced, 0.5 * batch, atol=1e-6, rtol=0)


def _upstream_enhance(audio: np.ndarray, model) -> np.ndarray:
    """What `df.enhance.enhance` does (it cannot be imported: torchaudio), with libdf itself:
    pad fft_size zeros, libDF's features (df_features), the model, libDF's synthesis, cut."""
    libdf = importlib.import_module("libdf")
    state = libdf.DF(sr=48000, fft_size=960, hop_size=480, nb_bands=32, min_nb_erb_freqs=2)
    padded = np.pad(audio, (0, 960))[None].astype(np.float32)
    spec = state.analysis(padded)
    erb = libdf.erb_norm(libdf.erb(spec, state.erb_widths()), 0.99)
    unit = libdf.unit_norm(spec[..., :96].copy(), 0.99)
    as_real = lambda x: torch.view_as_real(torch.from_numpy(x)).unsqueeze(1)  # noqa: E731
    with torch.no_grad():
        out = model(as_real(spec), torch.from_numpy(erb).unsqueeze(1), as_real(unit))[0]
    enhanced = torch.view_as_complex(out.squeeze(1).contiguous()).numpy()
    state.reset()
    wave = state.synthesis(np.ascontiguousarray(enhanced))
    return wave[0, 480 : len(audio) + 480]


@requires_reference
@pytest.mark.parametrize("length", [48_000, 72_000, 48_123, 30_011])  # hop multiples and not
def test_padding_and_cut_as_deepfilternet_enhance(speech_48k, length):
    torch.manual_seed(0)
    audio = load_audio(speech_48k, 48_000)[96_000 : 96_000 + length].copy()
    model = build_model(  # with the released look-ahead, which makes the padding matter
        "dfn3", conv_ch=8, emb_hidden_dim=32, df_hidden_dim=32, conv_lookahead=2, df_lookahead=2
    ).eval()
    want = _upstream_enhance(audio, model)
    got = enhance_waveform(torch.from_numpy(audio), DfFeatures(norm="original"), model).numpy()
    assert got.shape == audio.shape
    # the old padding (delay + hop remainder) was 1.2e-4 off in the last 1440 samples
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_real_dfnet_keeps_length(speech_48k):
    torch.manual_seed(0)
    audio = load_audio(speech_48k, 48_000)
    noisy = torch.from_numpy(audio[:30_011].copy())
    features = DfFeatures(norm="fixed")
    model = build_model("dfn3", conv_ch=8, emb_hidden_dim=32, df_hidden_dim=32).eval()
    enhanced = enhance_waveform(noisy, features, model)
    assert enhanced.shape == noisy.shape and torch.isfinite(enhanced).all()
    assert enhanced.abs().max() > 0
