"""End to end: the whole DVC pipeline on a tiny config in a temporary copy of the repo.

Checks every stage's outputs, that a second ``dvc repro`` runs nothing, that
``dvc exp run -S fusion.beta=...`` re-runs only train -> transfer -> evaluate, that
``dvc metrics diff`` shows the change, and that re-running with the same params and seed gives
byte-identical metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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
    "adapt": {"epochs": 2, "pairs_per_epoch": 256},
    "model": {"d_model": 16, "num_heads": 2},
    "train": {"epochs": 3, "patience": 2, "batch_size": 8},
    "transfer": {"fractions": [50, 100], "epochs": 2, "patience": 2},
}  # fmt: skip


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(cwd / "src"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MER_LOG_LEVEL": "WARNING"}  # fmt: skip
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """A tiny-config copy of the repo, committed, with one full ``dvc repro`` done."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "params.yaml", "stages", "src", ".dvc", ".gitignore"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp"))
        else:
            shutil.copy(source, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        for key, value in values.items():
            if isinstance(value, dict):
                params[section][key].update(value)
            else:
                params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    # repo-local identity: `dvc exp run` commits, and CI machines may have no global git config
    run(["git", "config", "user.name", "mer tests"], root)
    run(["git", "config", "user.email", "tests@mer.invalid"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny"], root)
    output = run(["dvc", "repro"], root)
    expected = {"metadata", "adapt", "train", "transfer", "evaluate"}
    expected |= {f"baseline@{m}" for m in params["train"]["baselines"]}
    expected |= {f"extract@{c}-{m}" for c in ("source", "target") for m in ("text", "audio", "video")}
    assert ran_stages(output) == expected
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "repro"], root)
    return root


@pytest.mark.slow
def test_every_stage_writes_what_it_declares(pipeline):
    stages = yaml.safe_load((pipeline / "dvc.lock").read_text())["stages"]
    for name, stage in stages.items():
        for out in stage.get("outs", []):
            assert (pipeline / out["path"]).exists(), f"{name} did not write {out['path']}"
    for corpus in ("source", "target"):
        for modality in ("text", "audio", "video"):
            feature_dir = pipeline / "data/features" / corpus / modality
            verify = json.loads((feature_dir / "verify.json").read_text())
            meta = json.loads((feature_dir / "meta.json").read_text())
            assert verify["ok"] and verify["ids_aligned"] and verify["n_stored"] == 48
            assert meta["dtype"] == "float16" and meta["count"] == 48
            assert meta["weights"] == ("pretrained" if modality == "text" else "random-init")
    source = json.loads((pipeline / "metrics/source.json").read_text())
    assert set(source["test"]) == {"fusion", "concat", "text", "audio", "video"}
    assert {"ua", "wa", "f1_weighted", "f1_macro", "recall"} <= set(source["test"]["fusion"])
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    assert set(transfer) == {"plain", "adapter"} and set(transfer["plain"]) == {"0", "50", "100"}
    for png in ("confusion_source_test", "fewshot", "source_ua", "gates", "training_curves"):
        assert (pipeline / "plots/png" / f"{png}.png").stat().st_size > 1000
    assert "fraction,adapter_ua,plain_ua" == (pipeline / "plots/fewshot.csv").read_text().splitlines()[0]
    plots = json.loads(run(["dvc", "plots", "show", "--json"], pipeline))
    assert not plots.get("errors"), plots.get("errors")


@pytest.mark.slow
def test_second_repro_runs_nothing(pipeline):
    output = run(["dvc", "repro"], pipeline)
    assert ran_stages(output) == set()
    assert "up to date" in run(["dvc", "status"], pipeline)


@pytest.mark.slow
def test_exp_run_beta_reruns_only_downstream_and_metrics_diff_shows_it(pipeline):
    output = run(
        ["dvc", "exp", "run", "-S", "fusion.beta=0.3", "-S", "fusion.beta_learnable=false"], pipeline
    )
    assert ran_stages(output) == {"train", "transfer", "evaluate"}
    diff = run(["dvc", "metrics", "diff", "--json"], pipeline)
    changed = json.loads(diff)
    assert "metrics/source.json" in changed or "metrics/transfer.json" in changed
    run(["git", "checkout", "--", "."], pipeline)
    run(["dvc", "checkout", "-q"], pipeline)


@pytest.mark.slow
def test_same_params_and_seed_give_identical_metrics(pipeline):
    before = {p.name: p.read_bytes() for p in (pipeline / "metrics").glob("*.json")}
    for stage in ("train", "transfer", "evaluate"):
        run(["dvc", "repro", "--force", "--single-item", "--no-run-cache", stage], pipeline)
    after = {p.name: p.read_bytes() for p in (pipeline / "metrics").glob("*.json")}
    assert before == after
