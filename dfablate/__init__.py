"""dfablate: train DeepFilterNet variants, evaluate them and compare them file by file."""

__version__ = "0.1.0"
