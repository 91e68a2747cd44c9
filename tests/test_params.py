"""params.yaml validation: unknown keys, wrong types and out-of-range values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mer.params import FUSION, SECTIONS, ParamsError, load_section, section_from_mapping, validate_all

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_validate():
    sections = validate_all(REPO / "params.yaml")
    assert set(sections) == {*SECTIONS, "recipes"}
    assert sections["fusion"]["mode"] == "crossmodal"


@pytest.mark.parametrize(
    ("section", "mapping", "message"),
    [
        ("fusion", {"betta": 0.3}, "fusion.betta: unknown key"),
        ("fusion", {"beta": "high"}, "fusion.beta: expected a number"),
        ("fusion", {"mode": "sum"}, "fusion.mode: 'sum' is not one of"),
        ("fusion", {"beta_learnable": 1}, "fusion.beta_learnable: expected true or false"),
        ("train", {"epochs": 0}, "train.epochs: 0 is out of range"),
        ("train", {"lr": 0.0}, "train.lr: 0.0 is out of range"),
        ("train", {"baselines": ["concat", "concat"]}, "lists a name twice"),
        ("transfer", {"fractions": [10, 120]}, "transfer.fractions[1]: 120 is out of range"),
        ("model", {"modalities": ["text", "smell"]}, "model.modalities"),
        ("synthetic", {"min_seconds": 3.0, "max_seconds": 2.0}, "synthetic.max_seconds"),
        ("adapt", {"pairing": "optimal"}, "adapt.pairing"),
    ],
)
def test_bad_values_name_the_key(section, mapping, message):
    with pytest.raises(ParamsError) as error:
        section_from_mapping(SECTIONS[section], mapping, section)
    assert message in str(error.value)


def test_int_where_float_is_accepted_but_not_bool():
    assert section_from_mapping(FUSION, {"beta": 1}, "fusion")["beta"] == 1.0
    with pytest.raises(ParamsError, match=r"fusion\.beta"):
        section_from_mapping(FUSION, {"beta": True}, "fusion")


def test_unknown_section_and_missing_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"fusoin": {"beta": 0.3}}))
    with pytest.raises(ParamsError, match="fusoin: unknown params section"):
        load_section("fusion", path)
    with pytest.raises(ParamsError, match="params file not found"):
        load_section("fusion", tmp_path / "absent.yaml")


def test_recipes_section_is_validated_and_referenced_names_exist(tmp_path):
    from mer.params import load_recipe, load_recipes, validate_all

    recipes = load_recipes()
    assert recipes["decoder"]["decoder_layers"] == 1 and recipes["concat"]["mode"] == "concat"
    assert recipes["full"]["micl_weight"] == 0.2 and recipes["full"]["beta"] == 0.5  # defaults underneath
    with pytest.raises(ParamsError, match=r"recipes\.x: no such recipe"):
        load_recipe("x")
    path = tmp_path / "params.yaml"
    raw = yaml.safe_load(open("params.yaml").read())
    raw["train"]["baselines"] = ["concat", "conact"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"train\.baselines: \['conact'\] not in the recipes section"):
        validate_all(path)
    raw["train"]["baselines"] = ["concat"]
    raw["recipes"]["concat"] = {"mode": "conkat"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"recipes\.concat\.mode"):
        validate_all(path)
    raw["recipes"]["concat"] = {"mode": "concat"}
    raw["model"]["modalities"] = ["text"]  # the main model fuses: model + fusion cannot hold
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"model \+ fusion: mode crossmodal needs at least two modalities"):
        validate_all(path)
    raw["model"].update(modalities=["text", "audio", "video"], d_model=30, num_heads=4)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"model \+ fusion: d_model \(30\) must be divisible by num_heads"):
        validate_all(path)
    raw["model"].update(d_model=32)
    raw["recipes"]["concat"] = {"mode": "concat"}
    raw["transfer"]["source_fold"] = 3
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"transfer\.source_fold: '3' is not in corpora\.folds"):
        validate_all(path)


def test_folds_default_to_main_and_sessions_need_iemocap():
    from mer.params import CorporaParams

    assert section_from_mapping(CorporaParams, {}, "corpora").folds == ("main",)
    loso = section_from_mapping(CorporaParams, {"source": "iemocap", "folds": [1, 2, 3, 4, 5]}, "corpora")
    assert loso.folds == ("1", "2", "3", "4", "5")
    with pytest.raises(ParamsError, match=r"needs corpora\.source: iemocap"):
        section_from_mapping(CorporaParams, {"folds": [1]}, "corpora")
    with pytest.raises(ParamsError, match=r"corpora\.folds is empty"):
        section_from_mapping(CorporaParams, {"folds": []}, "corpora")
