"""Whole-utterance enhancement, aligned sample-exactly with the input.

libDF's synthesis is delayed by `fft_size - hop_size` samples and only whole hops are analysed.
As DeepFilterNet's own `df.enhance.enhance` does, the input is padded with `fft_size` zeros at
the end and the output is cut to `[delay, delay + length)`: the enhanced signal has the input's
length and no delay, as required to score it against the clean reference, and it is what
upstream's `enhance` gives (the model looks ahead `conv_lookahead`/`df_lookahead` frames, so the
padding decides the last frames of the output).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from dfablate.features import DfFeatures

# (spec, feat_erb, feat_spec) -> enhanced spec, or a tuple whose first item is it (DfNet)
SpecModel = Callable[[Tensor, Tensor, Tensor], Tensor | tuple[Tensor, ...]]


@torch.inference_mode()
def enhance_waveform(noisy: Tensor, features: DfFeatures, model: SpecModel) -> Tensor:
    """Enhance [T] or [B, T] waveforms; the output has the same shape and no STFT delay."""
    squeeze = noisy.dim() == 1
    wave = noisy.unsqueeze(0) if squeeze else noisy
    length = wave.shape[-1]
    padded = F.pad(wave.float(), (0, features.fft_size))  # as df.enhance.enhance
    feats = features(padded)
    out = model(feats.spec, feats.feat_erb, feats.feat_spec)
    spec = out[0] if isinstance(out, tuple) else out
    enhanced = features.synthesis(spec)[:, features.delay : features.delay + length]
    return enhanced.squeeze(0) if squeeze else enhanced
