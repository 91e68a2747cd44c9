"""End to end: the whole DVC pipeline on a tiny config in a temporary copy of the repo.

Checks every stage's outputs, that a second ``dvc repro`` runs nothing, that
``dvc exp run -S fusion.beta=...`` re-runs only train -> transfer -> evaluate, that
``dvc metrics diff`` shows the change, and that re-running with the same params and seed gives
byte-identical metrics.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.pipeline_utils import copy_repo, ran_stages, run


@pytest.fixture(scope="module")
def pipeline(reproduced_repo, tmp_path_factory):
    """A private copy of the tiny reproduced repo (these tests run experiments in it)."""
    return copy_repo(reproduced_repo, tmp_path_factory.mktemp("pipeline") / "repo")


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
