"""End to end, seed 002's machinery with existing specs: the target corpus extracted by its own
extractor (``extract.target.audio: {model: acoustic-74}``, 74-d frames) while the model trains
on the source's (``random-init:wavlm``, other dims); the adapters map target -> source across
dims (plain MLP there, residual where dims match) and the transfer stage scores the model on
adapted target features only, fine-tuning on the dev-selected adapter's features."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from mer.params import ExtractParams, ParamsError, load_section, section_from_mapping
from tests.pipeline_utils import REPO, make_tiny_repo, ran_stages, run


def test_the_default_target_extracts_as_the_source_does():
    cfg = load_section("extract", REPO / "params.yaml")
    target = cfg.for_corpus("target")
    assert (target.text, target.audio, target.video) == (cfg.text, cfg.audio, cfg.video)
    assert cfg.for_corpus("source") is cfg


def test_a_target_override_changes_only_the_target_and_only_its_keys():
    raw = {"audio": {"max_seconds": 20.0}, "target": {"audio": {"model": "acoustic-74"}}}
    cfg = section_from_mapping(ExtractParams, raw, "extract")
    source, target = cfg.for_corpus("source"), cfg.for_corpus("target")
    assert (source.audio.model, target.audio.model) == ("random-init:wavlm", "acoustic-74")
    assert target.audio.max_seconds == source.audio.max_seconds == 20.0  # the rest is the source's
    assert target.text == source.text and target.video == source.video


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"speech": {}}, r"extract.target.speech: unknown modality \(known: text, audio, video\)"),
        ({"audio": {"modle": "x"}}, r"extract.target.audio.modle: unknown key .*model"),
        ({"audio": {"max_seconds": 0.1}}, r"extract.target.audio.max_seconds: 0.1 is out of range"),
        ({"video": "facemesh-65"}, r"extract.target.video: expected a mapping of extract.video keys"),
    ],
)
def test_a_bad_target_override_is_named_before_any_work(target, message):
    with pytest.raises(ParamsError, match=message):
        section_from_mapping(ExtractParams, {"target": target}, "extract")


@pytest.mark.slow
def test_target_read_by_another_extractor_of_other_dims_transfers_through_adapters(tmp_path):
    root = make_tiny_repo(tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["extract"]["target"]["audio"] = {"model": "acoustic-74"}
    params["model"]["modalities"] = ["text", "audio"]  # video adds nothing here but minutes
    params["adapt"]["methods"] = ["seed002", "coral"]
    params["transfer"].update(fractions=[100], shots=[], seeds=[0], strategies=["full", "scratch"])
    params["train"]["seeds"] = [0]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    output = run(["dvc", "repro", "transfer"], root)
    expected = {"extract@source-audio", "extract@target-audio", "adapt", "train@main", "transfer"}
    assert expected <= ran_stages(output)

    # the two corpora's audio: two extractors, two dims
    source_meta = json.loads((root / "data/features/source/audio/meta.json").read_text())
    target_meta = json.loads((root / "data/features/target/audio/meta.json").read_text())
    assert target_meta["model"] == "acoustic-74" and target_meta["hidden_dim"] == 74, target_meta
    assert source_meta["model"] == "random-init:wavlm" and source_meta["hidden_dim"] != 74, source_meta
    text_models = {
        json.loads((root / f"data/features/{corpus}/text/meta.json").read_text())["model"]
        for corpus in ("source", "target")
    }
    assert text_models == {params["extract"]["text"]["model"]}  # no override: the same extractor

    # adapters: 74 -> source dims as a plain MLP; text (same extractor) residual
    adapt = json.loads((root / "results/adapt.json").read_text())
    assert adapt["adapt/coral/audio/residual"] is False
    assert adapt["adapt/coral/audio/input_dim"] == 74
    assert adapt["adapt/coral/audio/output_dim"] == source_meta["hidden_dim"]
    assert adapt["adapt/coral/text/residual"] is True
    assert adapt["adapt/coral/audio/mmd_after"] < adapt["adapt/coral/audio/mmd_before"], adapt

    # transfer: no raw zero-shot (dims differ, recorded); each adapter's; fine-tuning on adapted inputs
    transfer = root / "data/predictions/transfer"
    records = json.loads((transfer / "records.json").read_text())
    assert "dims differ" in records["zeroshot/none"]["skipped"]
    assert records["fewshot_inputs"]["adapter"] in {"seed002", "coral"}
    assert records["fewshot_inputs"]["dims"]["audio"] == [74, source_meta["hidden_dim"]]
    assert not (transfer / "zeroshot/none").exists()
    for method in ("seed002", "coral"):
        frame = pd.read_parquet(transfer / "zeroshot" / method / "seed0.parquet")
        assert len(frame) > 0 and frame["pred_id"].notna().all()
    for strategy in ("full", "scratch"):
        assert (transfer / "fraction/100" / strategy / "seed0.parquet").is_file()
        assert records["fraction/100"][strategy]["0"]["n_train"] > 0
