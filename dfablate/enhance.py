"""Whole-utterance enhancement, aligned sample-exactly with the input.

libDF's synthesis is delayed by `fft_size - hop_size` samples and only whole hops are analysed,
so the input is padded at the end (delay + the hop remainder), and the first `delay` output
samples are dropped: the enhanced signal has the input's length and no delay, as required to
score it against the clean reference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from dfablate.features import DfFeatures

# (spec, feat_erb, feat_spec) -> enhanced spec, or a tuple whose first item is it (DfNet)
SpecModel = Callable[[Tensor, Tensor, Tensor], Tensor | tuple[Tensor, ...]]


def end_padding(length: int, hop_size: int, delay: int) -> int:
    """Samples to append so that the padded length is a multiple of the hop and >= length + delay."""
    needed = length + delay
    return delay + (-needed) % hop_size


@torch.inference_mode()
def enhance_waveform(noisy: Tensor, features: DfFeatures, model: SpecModel) -> Tensor:
    """Enhance [T] or [B, T] waveforms; the output has the same shape and no STFT delay."""
    squeeze = noisy.dim() == 1
    wave = noisy.unsqueeze(0) if squeeze else noisy
    length = wave.shape[-1]
    padded = F.pad(wave.float(), (0, end_padding(length, features.hop_size, features.delay)))
    feats = features(padded)
    out = model(feats.spec, feats.feat_erb, feats.feat_spec)
    spec = out[0] if isinstance(out, tuple) else out
    enhanced = features.synthesis(spec)[:, features.delay : features.delay + length]
    return enhanced.squeeze(0) if squeeze else enhanced
