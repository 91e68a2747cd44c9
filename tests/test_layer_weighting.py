"""SUPERB layer weighting: stored layers (``extract.audio.layers``, ``pooling: mean_per_layer``),
``fusion.layer_weighting`` / ``fusion.head: superb``, and the checkpoint / predict round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mer import extract
from mer.checkpoints import encoder_records, load_model, save_model
from mer.data import MultimodalData
from mer.encoders import build_encoder
from mer.features import FeatureStore
from mer.models.attention import masked_mean
from mer.models.config import FusionConfig
from mer.models.fusion import FusionModel
from mer.models.layer_weighting import LayerWeighting
from mer.params import ExtractParams, ParamsError, section_from_mapping
from mer.predict import predict
from mer.seeding import seed_everything
from mer.train import LoopConfig, build_model, fit, stored_layers
from tests.corpus_media import write_wav

SUPERB = {"mode": "audio", "modalities": ("audio",), "head": "superb", "d_model": 16, "num_heads": 2}


def _cfg(**audio) -> ExtractParams:
    return section_from_mapping(ExtractParams, {"audio": audio, "device": "cpu"}, "extract")


def _clips(tmp_path: Path, n: int = 6) -> pd.DataFrame:
    paths = [write_wav(tmp_path / f"clip{i}.wav", 0.5 + 0.1 * i, 150.0 + 40 * i, seed=i) for i in range(n)]
    return pd.DataFrame({"utt_id": [f"u{i}" for i in range(n)], "audio_path": [str(p) for p in paths]})


def test_params_take_a_list_or_all_and_name_bad_values() -> None:
    assert _cfg(layers="all").audio.layers == "all" and _cfg().audio.layers == (-1,)
    assert _cfg(layers=[0, -1], pooling="mean_per_layer").audio.layers == (0, -1)
    for audio, message in (
        ({"layers": "some"}, r"extract\.audio\.layers: expected a list"),
        ({"layers": []}, r"extract\.audio\.layers: list at least one hidden-state index"),
        ({"layers": [99]}, r"extract\.audio\.layers\[0\]: 99 is out of range"),
        ({"pooling": "max"}, r"extract\.audio\.pooling: 'max' is not one of \['none', 'mean_per_layer'\]"),
    ):
        with pytest.raises(ParamsError, match=message):
            _cfg(**audio)


def test_layers_are_checked_against_the_encoder_before_any_work(tmp_path: Path) -> None:
    wavlm = build_encoder("audio", "random-init:wavlm")
    assert extract.stored_layers(wavlm, "audio", _cfg(layers="all")) == (0, 1, 2, 3, 4)
    with pytest.raises(
        ParamsError, match=r"extract\.audio\.layers: .*index 7 out of range for 5 hidden states"
    ):
        extract.stored_layers(wavlm, "audio", _cfg(layers=[7]))
    with pytest.raises(
        ParamsError, match=r"extract\.audio\.layers: acoustic-74 has no hidden layers.*\[-1\]"
    ):
        extract.extract_modality(
            _clips(tmp_path, 2), "audio", _cfg(model="acoustic-74", layers="all"), tmp_path / "f"
        )
    assert not (tmp_path / "f" / "meta.json").exists()


def test_pooled_per_layer_storage_equals_pooling_the_weighted_sequence(tmp_path: Path) -> None:
    """Extracted by the extract stage (random-init:wavlm, every hidden state), the pooled store's
    vector is each layer's mean of the sequence store's frames, and SUPERB's model (weighted sum ->
    projector -> mean pool -> linear) gives the same logits on either, to float16 tolerance."""
    table = _clips(tmp_path)
    stores = {}
    for pooling in ("none", "mean_per_layer"):
        out = tmp_path / pooling
        extract.extract_modality(table, "audio", _cfg(layers="all", pooling=pooling), out)
        stores[pooling] = FeatureStore(out)
        meta = json.loads((out / "meta.json").read_text())
        assert meta["layers"] == [0, 1, 2, 3, 4] and meta["num_layers"] == 5 and meta["pooling"] == pooling
        assert meta["hidden_dim"] == 5 * meta["layer_dim"] == 5 * 192
    for utt_id in table["utt_id"]:
        sequence, pooled = stores["none"][utt_id], stores["mean_per_layer"][utt_id]
        assert sequence.shape[0] > 10 and pooled.shape == (1, 5 * 192)
        np.testing.assert_allclose(pooled[0], sequence.astype(np.float32).mean(0), rtol=2e-3, atol=2e-3)
    # the model: random layer weights (not the equal start), the same standardisation
    seed_everything(0)
    config = FusionConfig(
        **SUPERB, layer_weighting="weighted", input_dims={"audio": 960}, input_layers={"audio": 5}
    )
    model = FusionModel(config).eval()
    with torch.no_grad():
        model.projections["audio"].layers.weights.copy_(torch.tensor([2.0, -1.0, 0.5, 0.0, 1.0]))
        frames = np.concatenate([stores["none"][u] for u in table["utt_id"]]).astype(np.float32)
        model.set_feature_statistics({"audio": (frames.mean(0), frames.std(0))})
    logits = {}
    for pooling, store in stores.items():
        data = MultimodalData.from_arrays(
            table.assign(label_id=0), {"audio": [store[u] for u in table["utt_id"]]}
        )
        batch = data.batch(torch.arange(len(table)))
        with torch.no_grad():
            logits[pooling] = model(batch.features, batch.masks).logits
    torch.testing.assert_close(logits["mean_per_layer"], logits["none"], rtol=1e-2, atol=1e-2)
    # and the layer mixer alone, on float32 frames: mean pool and weighted sum commute
    mixer = model.projections["audio"].layers
    batch = MultimodalData.from_arrays(
        table.assign(label_id=0), {"audio": [stores["none"][u] for u in table["utt_id"]]}
    ).batch(torch.arange(len(table)))
    with torch.no_grad():
        pooled_after = masked_mean(mixer(batch.features["audio"]), batch.masks["audio"])  # (B, D)
        pooled_first = mixer(masked_mean(batch.features["audio"], batch.masks["audio"])[:, None])[:, 0]
    torch.testing.assert_close(pooled_first, pooled_after, rtol=1e-5, atol=1e-5)


def _planted(n: int, rng: np.random.Generator, centres: np.ndarray, informative: int = 2, layers: int = 4):
    """``layers`` blocks of ``dim`` per frame: block ``informative`` carries the class (its mean,
    ``centres[label]``), the others are noise of the same scale."""
    labels = np.arange(n) % len(centres)
    sequences = []
    for label in labels:
        frames = rng.normal(size=(5, layers, centres.shape[1]))
        frames[:, informative] += centres[label]
        sequences.append(frames.reshape(5, -1).astype(np.float32))
    table = pd.DataFrame({"utt_id": [f"u{i}" for i in range(n)], "label_id": labels})
    return MultimodalData.from_arrays(table, {"audio": sequences})


def test_layer_weighting_learns_to_prefer_the_informative_layer() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 1.5
    train, dev = _planted(160, rng, centres), _planted(64, rng, centres)
    seed_everything(0)
    config = FusionConfig(**SUPERB, layer_weighting="weighted", dropout=0.0)
    model = build_model(config, train.dims(), 4, {"audio": 4})
    model.set_feature_statistics(train.frame_statistics())
    start = model.projections["audio"].layers.layer_weights()
    assert torch.equal(start, torch.full((4,), 0.25))  # s3prl: zeros -> equal weights
    loop = LoopConfig(epochs=20, batch_size=16, lr=1e-2, weight_decay=0.0, patience=20, grad_clip=1.0, seed=0,
                      device="cpu")  # fmt: skip
    result = fit(model, train, dev, loop)
    weights = model.projections["audio"].layers.layer_weights().detach()
    others = torch.cat([weights[:2], weights[3:]])
    assert int(weights.argmax()) == 2 and weights[2] > 2 * others.max(), weights
    assert result.best_dev_score > 0.9
    logged = model.fusion_weights()
    assert logged["layer_weight/audio/2"] == pytest.approx(float(weights[2]), abs=1e-4)


def test_last_with_one_layer_is_the_unchanged_model_and_last_of_several_reads_the_last() -> None:
    """``last`` over K stored layers draws the same random numbers and computes what the
    one-layer model computes on the last block; ``weighted`` starts with the same parameters
    (its layer weights are zeros, no random draw). One layer: no layer module at all."""
    inputs = torch.randn(3, 5, 4 * 6)  # (B, L, K * D)
    masks = torch.ones(3, 5, dtype=torch.bool)
    models = {}
    for name, layers, weighting in (("one", {}, "last"), ("last", {"audio": 4}, "last"),
                                    ("weighted", {"audio": 4}, "weighted")):  # fmt: skip
        seed_everything(0)
        dims = {"audio": 6 if name == "one" else 24}
        config = FusionConfig(mode="audio", d_model=8, num_heads=2, layer_weighting=weighting,
                              input_dims=dims, input_layers=layers)  # fmt: skip
        models[name] = FusionModel(config).eval()
        models[name].rng_after = torch.random.get_rng_state()
    assert not any("layers" in n for n, _ in models["one"].named_parameters())
    assert set(models["one"].state_dict()) == {n for n in models["last"].state_dict()}
    weighted = dict(models["weighted"].named_parameters())
    assert set(weighted) - set(dict(models["one"].named_parameters())) == {"projections.audio.layers.weights"}
    for name in ("last", "weighted"):
        assert torch.equal(models[name].rng_after, models["one"].rng_after)
        for key, value in models["one"].named_parameters():
            assert torch.equal(value, dict(models[name].named_parameters())[key]), (name, key)
    with torch.no_grad():
        one = models["one"]({"audio": inputs[..., -6:]}, {"audio": masks}).logits
        last = models["last"]({"audio": inputs}, {"audio": masks}).logits
        same = models["weighted"]({"audio": inputs[..., -6:].repeat(1, 1, 4)}, {"audio": masks}).logits
    assert torch.equal(one, last)
    torch.testing.assert_close(same, one)


def test_weighted_with_one_stored_layer_fails_naming_the_extract_key(tmp_path: Path) -> None:
    config = FusionConfig(mode="audio", layer_weighting="weighted", d_model=8, num_heads=2)
    with pytest.raises(ParamsError, match=r"fusion\.layer_weighting: weighted needs several stored layers.*"
                       r"extract\.audio\.layers \(all"):  # fmt: skip
        build_model(config, {"audio": 12}, 4, {"audio": 1})
    with pytest.raises(ParamsError, match=r"head: superb .* needs a unimodal mode"):
        FusionConfig(head="superb")
    with pytest.raises(ParamsError, match=r"input_layers\['audio'\] = 5 does not divide its input dim 12"):
        build_model(dataclasses.replace(config, layer_weighting="last"), {"audio": 12}, 4, {"audio": 5})
    assert isinstance(
        build_model(config, {"audio": 12}, 4, {"audio": 3}).projections["audio"].layers, LayerWeighting
    )


def test_a_weighted_superb_model_round_trips_and_predicts_a_new_clip(tmp_path: Path) -> None:
    """config.json keeps the stored layers and the extraction params (layers: all, pooled):
    ``mer predict`` re-creates the pooled features of a new clip and scores it as the model
    scores the stored features of that clip."""
    table = _clips(tmp_path, 4)
    feature_root = tmp_path / "features"
    extract.extract_modality(
        table, "audio", _cfg(layers="all", pooling="mean_per_layer"), feature_root / "audio"
    )
    store = FeatureStore(feature_root / "audio")
    seed_everything(0)
    config = FusionConfig(**SUPERB, layer_weighting="weighted")
    layers = stored_layers(feature_root, ("audio",))
    assert layers == {"audio": 5}
    model = build_model(config, {"audio": store.hidden_dim}, 4, layers)
    with torch.no_grad():
        model.projections["audio"].layers.weights.copy_(torch.linspace(-1.0, 1.0, 5))
    save_model(tmp_path / "model", model, encoders=encoder_records(feature_root, ("audio",)))
    trained = load_model(tmp_path / "model")
    assert trained.config.input_layers == {"audio": 5} and trained.config.head == "superb"
    assert trained.encoders["audio"]["params"]["audio"]["layers"] == "all"
    torch.testing.assert_close(
        trained.first().projections["audio"].layers.weights, torch.linspace(-1.0, 1.0, 5)
    )
    result = predict(trained, audio=table["audio_path"][1])
    features = torch.from_numpy(store["u1"].astype(np.float32))[None]  # (1, 1, K * D)
    with torch.no_grad():
        expected = torch.softmax(
            trained.first()({"audio": features}, {"audio": torch.ones(1, 1, dtype=torch.bool)}).logits[0], -1
        )
    assert list(result["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-5)
