"""Recipes declare what they need, corpora what they have, and a recipe the corpus cannot support
never trains: its stage writes a skip record (or, strict, the metadata stage fails).

End to end on real-layout fixture trees: tests/test_real_corpora.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mer import metadata, schema
from mer.corpora import synthetic
from mer.evaluate import SourceResults, ablation_metrics, model_result, read_models, source_metrics
from mer.extract import extract_or_skip
from mer.features import FeatureStore
from mer.models.config import FusionConfig
from mer.models.fusion import FusionModel
from mer.params import (
    CorporaParams,
    ExtractParams,
    ParamsError,
    SyntheticParams,
    load_model_config,
    load_recipes,
)
from mer.recipes import Offer, RunModels, check_recipes, check_run, skip_if_unsupported, unmet_needs
from mer.skips import SKIP_FILE, SkippedError, read_skip
from mer.vocab import MODALITIES
from tests import fixtures_cremad, fixtures_iemocap, fixtures_meld, fixtures_mmsa, fixtures_ravdess
from tests.test_predictions import _classifier, _write

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
ALL = MODALITIES

# what every model of params.yaml trains on besides the emotion class (None: the main model)
EXPECTED_NEEDS = {
    None: ((), ALL),
    "concat": ((), ALL), "late": ((), ALL), "ensemble": ((), ALL),
    "multitask": (("sentiment_polarity",), ALL),
    "text": ((), ("text",)), "audio": ((), ("audio",)), "video": ((), ("video",)),
    "regression": (("sentiment_score",), ALL),
    "beta": ((), ALL), "decoder": ((), ALL), "cross_attention": ((), ALL),
    "vad_guidance": ((), ALL),  # the VAD projection is learned: no VAD label is read
    "adaptive_fusion": ((), ALL), "micl": ((), ALL),
    "full": (("vad",), ALL),  # vad_weight: 0.3
}  # fmt: skip

IEMOCAP = Offer("iemocap", ("vad",), ALL)
MELD = Offer("meld", ("sentiment_polarity",), ALL)
MOSI = Offer("mosi", ("sentiment_score", "sentiment_polarity"), ALL)
CREMAD = Offer("cremad", (), ALL)
DEFAULT_BASELINES = ["concat", "late", "ensemble", "multitask", "regression", "text", "audio", "video"]
DEFAULT_VARIANTS = ["cross_attention", "vad_guidance", "adaptive_fusion", "micl", "full", "decoder"]


def test_needs_of_every_model_in_params_yaml():
    names = [None, *load_recipes(PARAMS)]
    assert set(names) == set(EXPECTED_NEEDS), "a recipe was added or removed: state its needs here"
    for name in names:
        needs = load_model_config(name, PARAMS).needs()
        assert (needs.labels, needs.modalities) == EXPECTED_NEEDS[name], name
        assert set(needs.settings) == set(needs.labels)


def _batch(config: FusionConfig, rows: int = 6) -> dict:
    generator = torch.Generator().manual_seed(0)
    dims = {"text": 5, "audio": 4, "video": 3}
    return {
        "features": {m: torch.randn(rows, 4, dims[m], generator=generator) for m in config.used_modalities},
        "masks": {m: torch.ones(rows, 4, dtype=torch.bool) for m in config.used_modalities},
        "labels": torch.arange(rows) % 4,
        "vad": torch.rand(rows, 3, generator=generator) * 2 - 1,
        "sentiment": torch.tensor([-2.5, -0.5, 0.0, 0.4, 1.2, 2.8])[:rows],
    }


@pytest.mark.parametrize("name", sorted(EXPECTED_NEEDS, key=str))
def test_needs_are_exactly_the_labels_and_modalities_training_reads(name):
    """needs() can never drift from the losses: wiping a label kind it does not state leaves the
    loss unchanged; wiping one it states changes it; the model reads exactly its modalities."""
    config = dataclasses.replace(load_model_config(name, PARAMS), d_model=8, num_heads=2, dropout=0.0)
    config = dataclasses.replace(config, input_dims={"text": 5, "audio": 4, "video": 3})
    torch.manual_seed(0)
    model = FusionModel(config).eval()
    assert tuple(model.modalities) == config.needs().modalities
    batch = _batch(config)
    with torch.no_grad():
        full = model(**batch).loss
        for kind, wiped in (("sentiment", "sentiment_"), ("vad", "vad")):
            loss = model(**{**batch, kind: torch.full_like(batch[kind], float("nan"))}).loss
            read = any(label.startswith(wiped) for label in config.needs().labels)
            assert torch.allclose(full, loss) != read, (name, kind, float(full), float(loss))


def test_needs_reads_only_its_declared_fields():
    base = FusionConfig(modalities=("text", "audio"))
    changed = {"gate": "vector", "beta": 0.1, "vad_guidance": True, "decoder_layers": 1, "micl_weight": 0.2,
               "label_smoothing": 0.1, "corr_alpha": 1.0, "d_model": 16, "num_heads": 2, "dropout": 0.3,
               "num_cross_layers": 2, "beta_learnable": False, "vad_lambda": 2.0, "micl_temperature": 0.5,
               "corr_beta": 0.1, "attention_dropout": 0.1, "modality_dropout": 0.1,
               "audio_pool": 2}  # fmt: skip
    changed |= {
        "audio_frontend": "melcnn",
        "melcnn_channels": (8, 16),
        "melcnn_kernel_size": 5,
        "melcnn_pool": 3,
    }
    changed["layer_weighting"] = "weighted"
    audio = dataclasses.replace(base, mode="audio")  # head: superb is for unimodal modes
    assert dataclasses.replace(audio, head="superb").needs() == audio.needs()
    assert not set(changed) & set(FusionConfig.NEEDS_KEYS)
    assert {*changed, "head"} | set(FusionConfig.NEEDS_KEYS) == {
        *FusionConfig.MODEL_KEYS,
        *FusionConfig.FUSION_KEYS,
    }
    for key, value in changed.items():
        assert dataclasses.replace(base, **{key: value}).needs() == base.needs(), key
    assert dataclasses.replace(base, task="regression").needs() != base.needs()


@pytest.mark.parametrize(
    ("offer", "modalities", "skipped"),
    [
        (IEMOCAP, ALL, {"multitask", "regression"}),
        (CREMAD, ALL, {"multitask", "regression", "full"}),
        (MELD, ALL, {"regression", "full"}),
        (MOSI, ALL, {"full"}),
        # RAVDESS (audio release) with model.modalities [text, audio]: no video baseline either
        (
            Offer("ravdess", (), ("text", "audio")),
            ("text", "audio"),
            {"multitask", "regression", "full", "video"},
        ),
    ],
)
def test_which_default_recipes_each_corpus_skips(offer, modalities, skipped):
    configs = {
        key: {
            name: dataclasses.replace(load_model_config(name, PARAMS), modalities=modalities)
            for name in names
        }
        for key, names in (("train.baselines", DEFAULT_BASELINES), ("ablation.variants", DEFAULT_VARIANTS))
    }
    problems = check_recipes(configs, offer, strict=False)
    assert {name for by_name in problems.values() for name in by_name} == skipped


def test_a_unimodal_recipe_outside_model_modalities_is_unmet():
    config = dataclasses.replace(load_model_config("video", PARAMS), modalities=("text", "audio"))
    (unmet,) = unmet_needs(config, IEMOCAP)
    assert (unmet.kind, unmet.name, unmet.hint) == ("modality", "video", "add video to model.modalities")
    assert "which model.modalities ['text', 'audio'] does not include" in unmet.absent
    # and a corpus without video (RAVDESS's audio release) cannot feed a model that fuses video
    (unmet,) = unmet_needs(load_model_config("concat", PARAMS), Offer("ravdess", (), ("text", "audio")))
    assert unmet.absent == "which ravdess does not have (no train utterance has a video_path)"


def test_strict_error_names_the_key_the_recipe_the_missing_label_and_the_fix():
    configs = {"train.baselines": {"regression": load_model_config("regression", PARAMS)}}
    with pytest.raises(ParamsError) as error:
        check_recipes(configs, IEMOCAP, strict=True)
    assert str(error.value) == (
        "train.baselines: recipe regression needs a continuous sentiment score "
        "(recipes.regression.task: regression), which iemocap does not have; remove it from "
        "train.baselines or set train.strict_recipes: false (skip it)"
    )
    configs["ablation.variants"] = {"full": load_model_config("full", PARAMS)}
    with pytest.raises(ParamsError, match=r"ablation.variants: recipe full needs valence / arousal"):
        check_recipes(configs, CREMAD, strict=True)
    assert check_recipes(configs, MOSI, strict=False) == {
        "ablation.variants": {
            "full": "recipe full needs valence / arousal / dominance labels "
            "(recipes.full.vad_weight: 0.3), which mosi does not have"
        }
    }


def test_an_unsupported_main_model_is_an_error_on_the_source_and_the_target():
    regression = load_model_config("regression", PARAMS)
    models = RunModels(main=regression, recipes={})
    with pytest.raises(ParamsError, match=r"fusion.task: regression\), which iemocap does not have; change "
                       r"fusion.task, or use a source corpus .* \(mosi\)"):  # fmt: skip
        check_run(models, IEMOCAP, None, {"sentiment_score": ["mosi"]})
    with pytest.raises(ParamsError, match=r"corpora.target: the main model needs a continuous sentiment"):
        check_run(models, MOSI, CREMAD)
    check_run(models, MOSI, MOSI)
    # auxiliary labels may be absent on the target: fine-tuning masks those terms out
    check_run(RunModels(main=load_model_config("full", PARAMS), recipes={}), IEMOCAP, CREMAD)


# ---------------------------------------------------------------- corpora: what each table carries

FIXTURES = {"iemocap": fixtures_iemocap, "meld": fixtures_meld, "mosi": fixtures_mmsa,
            "cremad": fixtures_cremad, "ravdess": fixtures_ravdess}  # fmt: skip
LABEL_KINDS = {
    "iemocap": ("vad",),
    "meld": ("sentiment_polarity",),
    "mosi": ("sentiment_score", "sentiment_polarity"),
    "cremad": (),
    "ravdess": (),
    "synthetic": ("sentiment_score", "sentiment_polarity", "vad"),
}
TINY = SyntheticParams(train_speakers=2, dev_speakers=1, test_speakers=1, utterances_per_speaker=4,
                       target_utterances_per_speaker=4, video_frames=2, video_size=32,
                       min_seconds=1.0, max_seconds=1.2)  # fmt: skip


@pytest.mark.parametrize("corpus", sorted(LABEL_KINDS))
def test_the_metadata_stage_records_each_corpus_s_label_kinds_and_modalities(corpus, tmp_path):
    cfg = CorporaParams(source=corpus, target="none")
    if corpus != "synthetic":
        root = FIXTURES[corpus].build(tmp_path / corpus, defects=False)
        cfg = dataclasses.replace(cfg, **{corpus: dataclasses.replace(cfg.corpus(corpus), root=str(root))})
    built = metadata.build_role("source", cfg, TINY, tmp_path / "raw")
    path = schema.write(built.table, tmp_path / "source.parquet")
    offer = Offer.of(schema.read(path))  # what train stages read back from the parquet
    assert offer.label_kinds == LABEL_KINDS[corpus] == metadata.declared_label_kinds(corpus)
    assert offer.corpus == corpus and {"text", "audio"} <= set(offer.modalities)
    has_video = built.table.loc[built.table["split"] == "train", "video_path"].notna().any()
    assert ("video" in offer.modalities) == has_video


def test_a_declared_label_kind_absent_from_the_train_split_is_not_recorded():
    table = pd.DataFrame({"split": ["train", "train", "dev"], "sentiment": [None, None, 1.5],
                          "valence": [2.0, None, 3.0], "arousal": [2.0, 1.0, 3.0],
                          "dominance": [2.0, 1.0, None]})  # fmt: skip
    kinds = ("sentiment_score", "sentiment_polarity", "vad")
    assert schema.observed_label_kinds(table, kinds) == ("vad",)  # row 0 has all three VAD values
    assert schema.observed_label_kinds(table.assign(valence=None), kinds) == ()
    with pytest.raises(ValueError, match="label kinds \\['sentiment'\\] unknown"):
        schema.observed_label_kinds(table, ("sentiment",))


def test_a_table_without_recorded_label_kinds_names_the_fix():
    with pytest.raises(schema.MetadataError, match=r"no 'label_kinds' recorded .*`dvc repro -f metadata`"):
        Offer.of(pd.DataFrame({"utt_id": ["a"]}))


def test_strict_fails_before_any_corpus_is_read(tmp_path, monkeypatch):
    root = fixtures_iemocap.build(tmp_path / "iemocap", defects=False)
    cfg = CorporaParams(source="iemocap", target="none", iemocap=dataclasses.replace(
        CorporaParams().iemocap, root=str(root)))  # fmt: skip
    models = RunModels(
        main=load_model_config(None, PARAMS),
        recipes={"train.baselines": {"multitask": load_model_config("multitask", PARAMS)}},
        strict=True,
    )

    def never(*args, **kwargs):
        raise AssertionError("the corpus was read")

    monkeypatch.setattr(metadata.iemocap, "load", never)
    with pytest.raises(ParamsError, match=r"train.baselines: recipe multitask needs sentiment polarity"):
        metadata.build_metadata(cfg=cfg, synthetic_cfg=TINY, raw_root=tmp_path / "raw", out=tmp_path / "m",
                                splits_dir=tmp_path / "s", metrics_path=tmp_path / "x.json",
                                models=models)  # fmt: skip
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- train stages: the skip decision


def _table(tmp_path: Path, kinds: tuple[str, ...], corpus: str = "iemocap") -> Path:
    table = pd.DataFrame({"utt_id": ["a"], "split": ["train"]})
    table.attrs |= {"corpus": corpus, "label_kinds": list(kinds), "modalities": list(ALL)}
    path = tmp_path / "source.parquet"
    table.to_parquet(path)
    return path


def test_an_unsupported_recipe_writes_skip_records_in_its_outs(tmp_path):
    outs = [tmp_path / "models", tmp_path / "predictions", tmp_path / "dvclive"]
    record = skip_if_unsupported(config=load_model_config("regression", PARAMS), recipe="regression",
                                 role="baseline", metadata_path=_table(tmp_path, ("vad",)), fold="3",
                                 out_dirs=outs)  # fmt: skip
    assert record["missing_labels"] == ["sentiment_score"] and record["missing_modalities"] == []
    assert record["fold"] == "3" and record["key"] == "train.baselines" and record["corpus"] == "iemocap"
    assert record["fix"] == "remove regression from train.baselines"
    for out in outs:
        assert read_skip(out) == record and [p.name for p in out.iterdir()] == [SKIP_FILE]


def test_a_supported_recipe_trains_and_an_unsupported_main_model_fails(tmp_path):
    path = _table(tmp_path, ("vad",))
    outs = [tmp_path / "models"]
    kwargs = {"metadata_path": path, "fold": "main", "out_dirs": outs}
    assert (
        skip_if_unsupported(
            config=load_model_config("full", PARAMS), recipe="full", role="ablation", **kwargs
        )
        is None
    )
    assert not outs[0].exists()
    with pytest.raises(ParamsError, match=r"model \+ fusion: the main model needs a continuous sentiment"):
        skip_if_unsupported(config=load_model_config("regression", PARAMS), recipe=None, role=None, **kwargs)


# ---------------------------------------------------------------- extract stages: only what is read


@pytest.fixture
def no_encoder(monkeypatch):
    """Building an encoder or decoding any media fails the test."""

    def never(*args, **kwargs):
        raise AssertionError("an encoder was built or a file decoded")

    for name in ("build_encoder",):
        monkeypatch.setattr(f"mer.extract.{name}", never)
    for name in ("read_audio", "read_video_frames"):
        monkeypatch.setattr(f"mer.media.{name}", never)


def _rows() -> pd.DataFrame:
    return pd.DataFrame({"utt_id": ["a", "b"], "text": ["I am so happy", "no"], "audio_path": [None, None],
                         "video_path": ["x.mp4", "y.mp4"], "duration": [1.0, 1.0]})  # fmt: skip


@pytest.mark.parametrize(
    ("modality", "modalities", "swap", "rows", "reason"),
    [
        ("video", ("text", "audio"), None, 2, "video is not in model.modalities ['text', 'audio']"),
        ("audio", ALL, False, 2, "adapt.swap is false"),
        ("audio", ("text", "video"), True, 2, "audio is not in model.modalities"),
        ("text", ALL, None, 0, "the metadata table has no utterances (the target of corpora.target: none)"),
    ],
)
def test_an_unread_extraction_writes_a_skip_record_and_builds_no_encoder(
    no_encoder, tmp_path, modality, modalities, swap, rows, reason
):
    out = tmp_path / modality
    (out / "old").mkdir(parents=True)
    (out / "meta.json").write_text("{}")  # a persisted output's earlier features
    record = extract_or_skip(table=_rows().iloc[:rows], modality=modality, cfg=ExtractParams(), out_dir=out,
                             model_modalities=modalities, swap=swap)  # fmt: skip
    assert reason in record["reason"] and record["stage"] == "extract"
    assert [p.name for p in out.iterdir()] == [SKIP_FILE]
    with pytest.raises(
        SkippedError, match=rf"{modality} features here: the stage skipped it .*{record['fix']}"
    ):
        FeatureStore(out)


def test_turning_a_modality_back_on_extracts_it(tmp_path):
    out = tmp_path / "text"
    table = _rows()
    extract_or_skip(
        table=table, modality="text", cfg=ExtractParams(), out_dir=out, model_modalities=("audio",)
    )
    record = extract_or_skip(table=table, modality="text", cfg=ExtractParams(), out_dir=out,
                             model_modalities=("text", "audio"))  # fmt: skip
    assert record["ok"] and not (out / SKIP_FILE).exists()
    assert set(FeatureStore(out).ids) == {"a", "b"}


# ---------------------------------------------------------------- evaluate: skipped recipes are listed


def test_evaluate_lists_skipped_recipes_with_numbers_only_in_the_metrics(tmp_path):
    main = model_result("fusion", "main", {"1": {0: _classifier(40, 0.2, 0)}})
    source = SourceResults(main, {}, [main])
    record = {"recipe": "regression", "reason": "recipe regression needs a continuous sentiment score",
              "fix": "remove regression from train.baselines", "missing_labels": ["sentiment_score"],
              "missing_modalities": []}  # fmt: skip
    for fold in ("1", "2"):
        (tmp_path / "regression" / fold).mkdir(parents=True)
        (tmp_path / "regression" / fold / SKIP_FILE).write_text(json.dumps(record))
    read_models(source, "baseline", tmp_path, ["regression"], ["1", "2"])
    assert source.skipped == [{"recipe": "regression", "role": "baseline", "folds": "1 2",
                               "missing": "sentiment_score", "reason": record["reason"],
                               "fix": record["fix"]}]  # fmt: skip
    assert [m.name for m in source.models] == ["fusion"]
    metrics = source_metrics(main, [], [], source.skipped)
    assert metrics["baselines/regression/skipped"] == 1
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    assert ablation_metrics({}, [], [{**source.skipped[0], "role": "ablation"}]) == {"regression/skipped": 1}
    # trained on one fold, skipped on another: never mixed into one number
    _write(tmp_path, "regression", "1", 0, _classifier(40, 0.3, 0))
    with pytest.raises(RuntimeError, match=r"skipped on folds \['1', '2'\] but trained on \['1'\]"):
        read_models(source, "baseline", tmp_path, ["regression"], ["1", "2"])


def test_synthetic_corpus_supports_every_default_recipe(tmp_path):
    root = tmp_path / "raw"
    synthetic.generate(TINY, "source", root)
    table = synthetic.load(root, "synthetic_source")
    kinds = schema.observed_label_kinds(table, synthetic.LABEL_KINDS)
    offer = Offer("synthetic", kinds, schema.observed_modalities(table))
    configs = {"train.baselines": {n: load_model_config(n, PARAMS) for n in DEFAULT_BASELINES},
               "ablation.variants": {n: load_model_config(n, PARAMS) for n in DEFAULT_VARIANTS}}  # fmt: skip
    assert check_recipes(configs, offer, strict=True) == {}


def test_report_lists_skipped_recipes_with_reason_and_fix(tmp_path):
    from mer.report import Results, _skipped_section

    assert _skipped_section(Results.load(tmp_path)) == []  # no skipped.csv (or header only): no section
    row = {"recipe": "regression", "role": "baseline", "folds": "main", "missing": "sentiment_score",
           "reason": "recipe regression needs a continuous sentiment score, which meld does not have",
           "fix": "remove regression from train.baselines"}  # fmt: skip
    pd.DataFrame([row]).to_csv(tmp_path / "skipped.csv", index=False)
    lines = _skipped_section(Results.load(tmp_path))
    assert lines[0] == "### Skipped recipes" and "1 listed recipe(s) did not train" in lines[2]
    row = next(line for line in lines if "`regression`" in line)
    assert "which meld does not have" in row and "remove regression from train.baselines" in row
