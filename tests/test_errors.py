"""A stage that fails on a person's mistake says so in one line of mer's own: the param, the
path, what was expected and the fix; the traceback only under ``MER_DEBUG=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _stage(tmp_path: Path, script: str, args: list[str], debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MER_DEBUG": "1" if debug else ""}
    command = [sys.executable, str(REPO / "stages" / script), *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _params(tmp_path: Path, **edits: dict) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in edits.items():
        for key, value in values.items():
            target = params[section]
            *parents, last = key.split(".")
            for parent in parents:
                target = target[parent]
            target[last] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


METADATA_ARGS = ["--raw", "raw", "--out", "meta", "--splits", "splits", "--metrics", "m.json"]


@pytest.mark.parametrize("debug", [False, True])
def test_wrong_corpus_root_is_one_line_naming_the_param_and_the_fix(tmp_path, debug):
    root = tmp_path / "nowhere" / "IEMOCAP_full_release"
    _params(tmp_path, corpora={"source": "iemocap", "iemocap.root": str(root)})
    result = _stage(tmp_path, "metadata.py", METADATA_ARGS, debug=debug)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("mer: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mer: metadata failed: corpora.iemocap.root: ")
    assert str(root) in lines[0] and "dvc exp run -S corpora.iemocap.root=" in lines[0]
    assert ("Traceback" in result.stderr) == debug
    assert not (tmp_path / "meta").exists()  # failed before any work


def test_bad_param_value_stops_the_train_stage_in_one_line(tmp_path):
    _params(tmp_path, fusion={"beta": "high"})
    args = ["--model-dir", "m", "--predictions-dir", "p", "--live-dir", "l"]
    result = _stage(tmp_path, "train.py", args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "mer: train failed: fusion.beta: expected a number, got 'high' (MER_DEBUG=1 shows the traceback)"
    )
