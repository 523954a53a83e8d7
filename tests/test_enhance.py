"""Enhancement is delay-free and length-preserving: the identity model gives back the input."""

from __future__ import annotations

import pytest
import torch

from dfablate.audio import load_audio
from dfablate.enhance import end_padding, enhance_waveform
from dfablate.features import DfFeatures
from dfablate.models import build_model


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


def test_end_padding_covers_the_delay_with_whole_hops():
    for length in (0, 1, 479, 480, 481, 48_000, 48_123):
        pad = end_padding(length, 480, 480)
        assert (length + pad) % 480 == 0 and length + pad >= length + 480 and pad < 960


def test_real_dfnet_keeps_length(speech_48k):
    torch.manual_seed(0)
    audio = load_audio(speech_48k, 48_000)
    noisy = torch.from_numpy(audio[:30_011].copy())
    features = DfFeatures(norm="fixed")
    model = build_model("dfn3", conv_ch=8, emb_hidden_dim=32, df_hidden_dim=32).eval()
    enhanced = enhance_waveform(noisy, features, model)
    assert enhanced.shape == noisy.shape and torch.isfinite(enhanced).all()
    assert enhanced.abs().max() > 0
