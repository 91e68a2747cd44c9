"""mer: a reproducible DVC pipeline for multimodal (text, speech, face) emotion recognition.

``from mer import load_model, predict`` gives the trained-model API (:mod:`mer.checkpoints`,
:mod:`mer.predict`); they are imported on first use, so importing a light module of mer (e.g.
``mer.metric_keys``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["load_model", "predict"]

_LAZY = {"load_model": ("mer.checkpoints", "load_model"), "predict": ("mer.predict", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mer' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    # mer.predict is a callable module (calling it is mer.predict.predict), so the package
    # attribute stays right whether the import system or this function binds it
    return module if attribute is None else getattr(module, attribute)
