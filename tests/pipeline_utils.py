"""Helpers for tests that run DVC on a tiny-config copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY = {
    "synthetic": {
        "train_speakers": 2, "dev_speakers": 1, "test_speakers": 1, "utterances_per_speaker": 12,
        "target_utterances_per_speaker": 12, "min_seconds": 1.0, "max_seconds": 1.5,
        "video_frames": 4, "video_size": 48,
    },
    "extract": {"video": {"frames_per_clip": 4}, "shard_size": 20},
    "adapt": {"epochs": 2, "pairs_per_epoch": 256, "batch_size": 32},
    "model": {"d_model": 16, "num_heads": 2},
    "train": {"epochs": 3, "patience": 2, "batch_size": 8, "seeds": [0, 1]},
    "transfer": {"fractions": [50, 100], "shots": [2], "seeds": [0, 1], "epochs": 2, "patience": 2},
}  # fmt: skip

COPIED = ("dvc.yaml", "params.yaml", "stages", "src", ".dvc", ".gitignore", "data/.gitkeep")


def run(args: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> str:
    """Run a command with the venv's tools on PATH; return stdout + stderr (fail with both)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(cwd / "src"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MER_LOG_LEVEL": "WARNING"}  # fmt: skip
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def ran_stages(output: str) -> set[str]:
    """Stages that `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def make_tiny_repo(root: Path) -> Path:
    """A committed git + DVC copy of the repository with the tiny params (nothing run yet)."""
    for name in COPIED:
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp"))
        else:
            shutil.copy(source, target)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        for key, value in values.items():
            if isinstance(value, dict):
                params[section][key].update(value)
            else:
                params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    # repo-local identity: `dvc exp run` commits, and CI machines may have no global git config
    run(["git", "config", "user.name", "mer tests"], root)
    run(["git", "config", "user.email", "tests@mer.invalid"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny"], root)
    return root


def copy_repo(source: Path, target: Path) -> Path:
    """An independent copy (git history, DVC cache and workspace) of a tiny repo."""
    shutil.copytree(source, target, symlinks=True)
    return target
