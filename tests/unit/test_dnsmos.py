"""DNSMOS against its reference, `speechmos.dnsmos.run` (librosa's front end), on real speech;
metric names and groups."""

from __future__ import annotations

import numpy as np
import pytest

from dfablate.audio import read_audio, resample
from dfablate.errors import UserError
from dfablate.metrics import METRICS, parse_metrics

pytest.importorskip("onnxruntime", reason="the dnsmos extra is not installed")


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("librosa", reason="the DNSMOS reference needs librosa (test extra)")
    return pytest.importorskip("speechmos.dnsmos", reason="speechmos (test extra) missing")


@pytest.fixture(scope="module")
def noisy16(noisy_48k) -> np.ndarray:
    audio, rate = read_audio(noisy_48k)
    return resample(audio, rate, 16000)


def _speech(data_dir, name: str) -> np.ndarray:
    audio, rate = read_audio(data_dir / name)
    assert rate == 16000
    return audio


@pytest.mark.parametrize(
    "clip",
    ["noisy 10.6 s (two 9.01 s segments)", "speech 3.1 s (repeated)", "speech 14.8 s (6 segments)"],
)
def test_dnsmos_equals_speechmos(clip, reference, noisy16, data_dir):
    from dfablate.dnsmos import DNSMOS_METRICS, dnsmos

    if clip.startswith("noisy"):
        x = noisy16
    elif "3.1 s" in clip:
        x = _speech(data_dir, "arctic_a0009.wav")
    else:
        x = np.concatenate(
            [_speech(data_dir, "codec2_speech_orig_16k.wav"), _speech(data_dir, "arctic_a0007.wav")]
        )
    ours = dnsmos(x)
    theirs = reference.run(x, 16000)  # defaults: not personalised
    names = dict(zip(DNSMOS_METRICS, ("sig_mos", "bak_mos", "ovrl_mos", "p808_mos"), strict=True))
    for metric, key in names.items():
        assert ours[metric] == pytest.approx(float(theirs[key]), abs=1e-4), metric
    assert 1 < ours["dnsmos_ovrl"] < 5


def test_log_mel_equals_librosa(noisy16):
    librosa = pytest.importorskip("librosa")
    from dfablate.dnsmos import log_mel

    segment = noisy16[: 9 * 16000]
    power = librosa.feature.melspectrogram(
        y=segment, sr=16000, n_fft=321, hop_length=160, n_mels=120
    )
    expected = ((librosa.power_to_db(power, ref=np.max) + 40) / 40).T
    ours = log_mel(segment)
    assert ours.shape == expected.shape == (900, 120)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_metric_names_and_groups():
    assert parse_metrics("pesq,dnsmos") == (
        "pesq", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808",
    )  # fmt: skip
    assert parse_metrics(["dnsmos_ovrl", "stoi"]) == ("stoi", "dnsmos_ovrl")  # canonical order
    assert parse_metrics(",".join(METRICS)) == METRICS
    with pytest.raises(UserError, match="unknown metric 'mos'"):
        parse_metrics("pesq,mos")


def test_dnsmos_without_onnxruntime_names_the_extra(monkeypatch):
    import dfablate.metrics as metrics

    monkeypatch.setattr(metrics, "dnsmos_available", lambda: False)
    with pytest.raises(UserError, match=r"dfablate\[dnsmos\]"):
        parse_metrics("dnsmos")
    assert parse_metrics("pesq") == ("pesq",)  # the intrusive metrics need no extra
