"""The one reading of a ``device`` param (``extract.device``, ``train.device``).

>>> resolve_device("cpu", "train.device")
device(type='cpu')
"""

from __future__ import annotations

import torch


def resolve_device(setting: str, key: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error naming ``key``."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is cuda but no CUDA device is available; set {key}: auto (or cpu)")
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(setting)
