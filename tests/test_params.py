"""params.yaml validation: unknown keys, wrong types and out-of-range values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mer.params import SECTIONS, FusionParams, ParamsError, load_section, section_from_mapping, validate_all

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_validate():
    sections = validate_all(REPO / "params.yaml")
    assert set(sections) == set(SECTIONS)
    assert sections["fusion"].mode == "crossmodal"


@pytest.mark.parametrize(
    ("section", "mapping", "message"),
    [
        ("fusion", {"betta": 0.3}, "fusion.betta: unknown key"),
        ("fusion", {"beta": "high"}, "fusion.beta: expected a number"),
        ("fusion", {"mode": "sum"}, "fusion.mode: 'sum' is not one of"),
        ("fusion", {"beta_learnable": 1}, "fusion.beta_learnable: expected true or false"),
        ("train", {"epochs": 0}, "train.epochs: 0 is out of range"),
        ("train", {"lr": 0.0}, "train.lr: 0.0 is out of range"),
        ("train", {"baselines": ["concat", "sum"]}, "train.baselines"),
        ("transfer", {"fractions": [10, 120]}, "transfer.fractions[1]: 120 is out of range"),
        ("model", {"d_model": 30, "num_heads": 4}, "model.d_model (30) must be divisible"),
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
    assert section_from_mapping(FusionParams, {"beta": 1}, "fusion").beta == 1.0
    with pytest.raises(ParamsError, match=r"fusion\.beta"):
        section_from_mapping(FusionParams, {"beta": True}, "fusion")


def test_unknown_section_and_missing_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"fusoin": {"beta": 0.3}}))
    with pytest.raises(ParamsError, match="fusoin: unknown params section"):
        load_section("fusion", path)
    with pytest.raises(ParamsError, match="params file not found"):
        load_section("fusion", tmp_path / "absent.yaml")


def test_recipe_names_in_params_match_the_recipes_module():
    from mer.recipes import RECIPES, recipe

    from mer.params import RECIPE_NAMES

    assert set(RECIPE_NAMES) == set(RECIPES)
    for name in RECIPES:
        recipe(name)  # every recipe is a valid FusionParams
    from mer.params import TrainParams

    with pytest.raises(ParamsError, match=r"train\.baselines"):
        section_from_mapping(TrainParams, {"baselines": ["concat", "conact"]}, "train")
    with pytest.raises(ParamsError, match="unknown recipe 'x'"):
        recipe("x")
