"""End to end on fixture trees in each real corpus's layout: metadata -> extract -> train ->
evaluate -> report through ``dvc repro``, with the planted defects quarantined or repaired and
counted, each corpus's protocol and the metrics its literature reports.

The trees are tiny (tests/fixtures_<corpus>.py writes real wav / mp4 / avi files and the real
label-file formats); the scores say nothing about emotion recognition, only that every stage
runs on each layout.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mer.corpora.common import QUARANTINE_REASONS
from mer.profiles import load_profile, merge, overrides, validate_profile
from tests.pipeline_utils import REPO, make_tiny_repo, ran_stages, run

FAST = {
    "train": {"epochs": 2, "patience": 2, "seeds": [0], "baselines": []},
    "ablation": {"variants": ["cross_attention"]},  # evaluate reads data/predictions/ablation
    "adapt": {"methods": ["coral"], "epochs": 1, "swap": False},
    "transfer": {"fractions": [100], "shots": [2], "seeds": [0], "strategies": ["full"], "epochs": 1},
}
# case -> (profile or None, params overrides, {corpus: fixture module}); the seeds' profiles run
# as written except for the hub encoders and the model width (tiny offline ones here)
CASES = {
    # seed 000: IEMOCAP 4-class, leave-one-session-out: every model on folds 1..5
    "seed000_iemocap_loso": (
        "seed000_iemocap_loso",
        {"train": {"baselines": ["concat", "text"]}, "ablation": {"variants": ["cross_attention", "micl"]}},
        {"iemocap": "iemocap"},
    ),
    # seeds 001 / 004: MELD 7-class + sentiment on the official split, weighted F1
    "seed001_004_meld": ("seed001_004_meld", {}, {"meld": "meld"}),
    # seed 002: CMU-MOSEI -> CMU-MOSI, sentiment regression (MAE / r / Acc-2 / Acc-7) and adapters
    "seed002_mosei_to_mosi": ("seed002_mosei_to_mosi", {}, {"mosei": "mmsa", "mosi": "mmsa"}),
    # seed 003: IEMOCAP -> CREMA-D on the shared four classes, few-shot
    "seed003_iemocap_to_cremad": (
        "seed003_iemocap_to_cremad", {}, {"iemocap": "iemocap", "cremad": "cremad"},
    ),
    # RAVDESS (audio-only release): 8 classes, actor-disjoint split
    "ravdess": (
        None,
        {"corpora": {"source": "ravdess", "target": "none"}, "model": {"modalities": ["text", "audio"]}},
        {"ravdess": "ravdess"},
    ),
}  # fmt: skip
HEADLINE = {"iemocap": "UA", "cremad": "UA", "ravdess": "UA", "meld": "weighted F1", "mosei": "MAE"}
A_CLASS = {"iemocap": "happiness", "meld": "joy", "ravdess": "calm"}


def _merge(params: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            _merge(params[key], value)
        else:
            params[key] = value


def _fixture(name: str):
    return importlib.import_module(f"tests.fixtures_{name}")


def _expected_counts(planted: dict) -> dict:
    return {
        (f"quarantine/{k}" if k in QUARANTINE_REASONS else f"repaired/{k}"): v for k, v in planted.items()
    }


def _offline(profile: dict) -> dict:
    """The profile without its hub encoders and model width (the tiny repo keeps its own)."""
    profile = {k: dict(v) for k, v in profile.items()}
    profile.pop("extract", None)
    profile.get("model", {}).pop("d_model", None)
    return profile


def _repo(tmp_path: Path, overrides: dict, roots: dict[str, Path], profile: str | None = None) -> Path:
    repo = make_tiny_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    _merge(params, FAST)
    if profile:
        _merge(params, _offline(load_profile(profile)))
    _merge(params, overrides)
    for corpus, root in roots.items():
        params["corpora"][corpus]["root"] = str(root)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_runs_on_the_real_layout(case: str, tmp_path: Path) -> None:
    profile, overrides, fixtures = CASES[case]
    roots = {c: _fixture(m).build(tmp_path / c) for c, m in fixtures.items()}
    repo = _repo(tmp_path, overrides, roots, profile)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    corpus, target = params["corpora"]["source"], params["corpora"]["target"]
    module = fixtures[corpus]
    output = run(["dvc", "repro"], repo, timeout=1500)
    folds = [str(f) for f in params["corpora"]["folds"]]
    baselines, variants = params["train"]["baselines"], params["ablation"]["variants"]
    expected = {f"train@{k}" for k in folds} | {"metadata", "evaluate", "report"}
    expected |= {f"baseline@{b}-{k}" for b in baselines for k in folds}
    expected |= {f"ablation@{v}-{k}" for v in variants for k in folds}
    assert expected <= ran_stages(output), sorted(expected - ran_stages(output))

    # every planted defect is counted under its reason, none silently dropped
    counts = json.loads((repo / "metrics/metadata.json").read_text())
    relabelled = params["corpora"][corpus]["labels"] not in ("4class", "7class", "8class", "6class", "2class")
    for key, value in _expected_counts(_fixture(module).PLANTED).items():
        if relabelled and key == "quarantine/label_outside_map":  # shared4 also leaves out e.g. fear
            assert counts["source"][key] >= value
            continue
        assert counts["source"].get(key) == value, (key, counts["source"])
    quarantine = pd.read_csv(repo / "data/metadata/quarantine.csv")
    quarantined = {k: v for k, v in counts["source"].items() if k.startswith("quarantine/")}
    assert (quarantine["role"] == "source").sum() == sum(quarantined.values())
    table = pd.read_parquet(repo / "data/metadata/source.parquet")
    assert counts["source"]["utterances"] == len(table) and not set(quarantine["utt_id"]) & set(
        table["utt_id"]
    )

    # the versioned split file, one fold per protocol fold
    splits = pd.read_csv(repo / "splits/source.csv", dtype=str)
    # IEMOCAP's split file holds every leave-one-session-out fold; corpora.folds picks the stages
    assert set(splits["fold"]) == ({"main", "1", "2", "3", "4", "5"} if corpus == "iemocap" else {"main"})
    assert set(splits["utt_id"]) == set(table["utt_id"])

    source = json.loads((repo / "metrics/source.json").read_text())
    models = pd.read_csv(repo / "results/models.csv", dtype={"folds": str})
    summary = (repo / "reports/summary.md").read_text()
    assert f"## Source domain: `{corpus}`" in summary and "Corpus loading" in summary
    assert f"the {corpus} literature reports: {HEADLINE[corpus]} " in summary
    score = "mae" if params["fusion"]["task"] == "regression" else "ua"
    assert source["main/n_folds"] == len(folds) and source[f"main/{score}_low"] <= source[f"main/{score}"]
    assert source[f"main/{score}"] <= source[f"main/{score}_high"] and f"main/dev_{score}" in source
    assert set(models.loc[models["model"] == "fusion", "folds"]) == {" ".join(folds)}
    if score == "mae":
        for metric in ("mae", "pearson", "acc2_non0"):
            assert f"main/{metric}" in source
    else:
        for metric in ("ua", "wa", "f1_weighted"):
            assert 0.0 <= source[f"main/{metric}"] <= 1.0
        # the corpus's own class names reach the results and the confusion plot
        assert A_CLASS[corpus] in set(pd.read_csv(repo / "results/per_class.csv")["class"])
        confusion = pd.read_csv(repo / "plots/confusion_source_test.csv")
        assert set(confusion["actual"]) <= set(table.attrs["classes"])
        assert A_CLASS[corpus] in table.attrs["classes"]
    # every model has a result on every fold (fold k tests on session k only for IEMOCAP)
    per_run = pd.read_csv(repo / "results/folds.csv", dtype={"fold": str})
    test_runs = per_run[per_run["split"] == "test"]
    for model in ("fusion", *baselines, *variants):
        assert set(test_runs.loc[test_runs["model"] == model, "fold"]) == set(folds), model
    for k in folds:
        test_ids = set(splits.loc[(splits["fold"] == k) & (splits["split"] == "test"), "utt_id"])
        predicted = pd.read_parquet(repo / f"data/predictions/source/fusion/{k}/seed0.parquet")
        assert set(predicted["utt_id"]) == test_ids & set(predicted["utt_id"]) and predicted["utt_id"].size
        if k != "main":  # an IEMOCAP leave-one-session-out fold
            assert all(u.startswith(f"Ses0{k}") for u in predicted["utt_id"])
    main_runs = test_runs[(test_runs["model"] == "fusion") & (test_runs["metric"] == score)]
    # the reported number is the mean over folds and seeds
    assert source[f"main/{score}"] == pytest.approx(main_runs["value"].mean(), abs=1e-3)
    if len(folds) > 1:
        assert "Protocol folds (5" in summary
    transfer = json.loads((repo / "metrics/transfer.json").read_text())
    if target != "none":
        assert transfer[f"zeroshot/none/{score}"] >= 0.0
        assert transfer[f"fraction/100/full/{score}"] >= 0.0
    else:
        assert counts["target"] == {"utterances": 0} and transfer == {}
        assert "adapt and transfer were skipped" in summary
    if len(folds) > 1:  # editing one recipe re-runs that recipe's stages (one per fold) only
        params["recipes"][baselines[0]]["label_smoothing"] = 0.05
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        rerun = ran_stages(run(["dvc", "repro"], repo, timeout=1500))
        assert rerun == {f"baseline@{baselines[0]}-{k}" for k in folds} | {"evaluate", "report"}, rerun


def _metadata_stage(repo: Path) -> str:
    return run(["python", "stages/metadata.py"], repo, check=False)


def test_a_missing_root_fails_before_any_work_naming_the_path(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path, {"corpora": {"source": "meld", "target": "none"}}, {"meld": tmp_path / "nowhere/MELD.Raw"}
    )
    output = _metadata_stage(repo)
    assert "LayoutError" in output and str(tmp_path / "nowhere/MELD.Raw") in output
    assert not (repo / "data/metadata/source.parquet").exists()


def test_a_missing_expected_file_is_named(tmp_path: Path) -> None:
    root = _fixture("meld").build(tmp_path / "corpora")
    (root / "dev_sent_emo.csv").unlink()
    repo = _repo(tmp_path, {"corpora": {"source": "meld", "target": "none"}}, {"meld": root})
    output = _metadata_stage(repo)
    assert f"{root / 'dev_sent_emo.csv'}: not found" in output


def test_source_and_target_with_different_classes_are_refused(tmp_path: Path) -> None:
    roots = {"iemocap": tmp_path / "i", "meld": tmp_path / "m"}
    roots = {
        "iemocap": _fixture("iemocap").build(roots["iemocap"]),
        "meld": _fixture("meld").build(roots["meld"]),
    }
    repo = _repo(tmp_path, {"corpora": {"source": "iemocap", "target": "meld"}}, roots)
    output = _metadata_stage(repo)
    assert "corpora.target: meld has classes" in output and "shared4" in output


def test_a_leaking_official_split_fails_the_metadata_stage_naming_the_ids(tmp_path: Path) -> None:
    root = _fixture("mmsa").build(tmp_path / "corpora", defects=False)
    labels = pd.read_csv(root / "label.csv", dtype=str, keep_default_na=False)
    video = labels.loc[labels["mode"] == "train", "video_id"].iloc[0]
    first = labels.index[labels["video_id"] == video][0]
    labels.loc[first, "mode"] = "test"  # one clip of a training video moved into test
    labels.to_csv(root / "label.csv", index=False)
    repo = _repo(tmp_path, {"corpora": {"source": "mosi", "target": "none"}}, {"mosi": root})
    output = _metadata_stage(repo)
    assert "MetadataError" in output and "leakage" in output and video in output


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "profiles").glob("*.yaml")))
def test_profiles_validate_and_round_trip_through_dvc_set_args(name: str) -> None:
    validated = validate_profile(name, REPO / "params.yaml")
    profile = load_profile(name)
    assert validated["corpora"].source == profile["corpora"]["source"]
    rebuilt: dict = {}
    for item in overrides(profile):  # what `dvc exp run -S` receives, parsed as DVC does (YAML)
        key, _, value = item.partition("=")
        *sections, leaf = key.split(".")
        node = rebuilt
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(value)
    assert rebuilt == profile
    assert merge({"corpora": {"folds": [], "x": 1}}, {"corpora": {"folds": [1]}}) == {
        "corpora": {"folds": [1], "x": 1}
    }


def test_a_bad_profile_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpora:\n  source: iemocap\n  fold: [1]\n")
    with pytest.raises(ValueError, match=r"profile .*bad.yaml: corpora.fold: unknown key"):
        validate_profile(str(bad), REPO / "params.yaml")


def test_profiles_cli_lists_and_shows(capsys) -> None:
    from mer.profiles import main

    assert main(["list"]) == 0
    names = capsys.readouterr().out.split()
    assert "seed000_iemocap_loso" in names and len(names) == len(list((REPO / "profiles").glob("*.yaml")))
    assert main(["show", "seed000_iemocap_loso"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert "corpora.folds=[1, 2, 3, 4, 5]" in shown and "corpora.source=iemocap" in shown
    with pytest.raises(ValueError, match=r"no profile 'seed999'.*known: \['seed000_iemocap_loso'"):
        main(["show", "seed999"])
