"""Shared fixtures: paths to the real speech and noise shipped in tests/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).parent / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def speech_48k() -> Path:
    return DATA_DIR / "clean_freesound_33711.wav"


@pytest.fixture(scope="session")
def noisy_48k() -> Path:
    return DATA_DIR / "noisy_snr0.wav"
