"""Adapters across feature dimensions (seed 002: FaceMesh 65 -> OpenFace2 713): the residual
form only where dims match, the losses in the output space, alignment that improves on planted
data, and the transfer stage's use of them (zero-shot without raw features, fine-tuning on
adapted ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.adapt import build_adapter, load_adapter, save_adapter, structure_loss, train_adapter
from mer.data import MultimodalData
from mer.models.adapter import FeatureAdapter
from mer.params import AdaptParams
from tests.conftest import make_table

ADAPT = AdaptParams(epochs=8, batch_size=48, pairs_per_epoch=768, dropout=0.1, expansion=2.0)
SOURCE_DIM, TARGET_DIM = 713, 65  # OpenFace2 (the model's space) <- FaceMesh (the target's)


def _planted(dim: int, seed: int, scale: float, shift: float) -> MultimodalData:
    """Frames of a 4-d latent factor mapped into ``dim`` dims by a fixed matrix (seeded by ``dim``),
    then scaled and shifted: the two extractors see the same kind of signal in different spaces."""
    table = make_table(6, ("train",))
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(dim).normal(size=(4, dim)) / 2.0
    sequences = [
        ((rng.normal(size=(int(rng.integers(3, 8)), 4)) @ mixing + 0.1 * rng.normal(size=(1, dim))) * scale
         + shift).astype(np.float32)
        for _ in range(len(table))
    ]  # fmt: skip
    return MultimodalData.from_arrays(table, {"video": sequences})


@pytest.mark.parametrize("method", ["seed002", "coral", "mmd", "adversarial"])
def test_adapter_across_dims_maps_65_to_713_and_improves_alignment(tmp_path, method):
    source, target = _planted(SOURCE_DIM, 0, 1.0, 0.0), _planted(TARGET_DIM, 1, 3.0, 5.0)
    result = train_adapter(source, target, "video", method, ADAPT)
    record, adapter = result.record, result.adapter
    assert (record["input_dim"], record["output_dim"], record["residual"]) == (TARGET_DIM, SOURCE_DIM, False)
    assert adapter.config.residual is False  # recorded in the saved config too
    sequence = target.sequences["video"][0]
    adapted = adapter.transform(sequence)
    assert adapted.shape == (len(sequence), SOURCE_DIM) and adapted.dtype == np.float32
    assert np.isfinite(adapted).all()
    if method != "adversarial":  # a min-max objective need not decrease
        assert record["loss_last_epoch"] < record["loss_first_epoch"], record
    # "before" across dims is the untrained adapter; each method moves the target towards the source
    own = "coral" if method == "coral" else "mmd"
    assert record[f"{own}_after"] < record[f"{own}_before"], record
    path = tmp_path / "video.pt"
    save_adapter(adapter, path)
    reloaded = load_adapter(path)
    assert reloaded.config.residual is False
    assert np.allclose(reloaded.transform(sequence), adapted, atol=1e-5)


def test_residual_form_only_where_dims_match():
    rng = np.random.default_rng(0)
    rows = lambda n, dim: rng.normal(size=(n, dim)).astype(np.float32)  # noqa: E731
    same_in, same_out, wide_in, narrow_out = rows(50, 74), rows(60, 74), rows(50, 768), rows(60, 300)
    for method in ("coral", "mmd", "adversarial"):
        assert build_adapter(same_in, same_out, method, ADAPT).config.residual  # 74 -> 74
        assert not build_adapter(wide_in, narrow_out, method, ADAPT).config.residual  # 768 -> 300
    assert not build_adapter(same_in, same_out, "seed002", ADAPT).config.residual  # seed 002's MLP
    with pytest.raises(ValueError, match="unknown adapt method 'cycle'"):
        build_adapter(same_in, same_out, "cycle", ADAPT)
    # 74 -> 74 residual adapters start at the identity
    adapter: FeatureAdapter = build_adapter(same_in, same_out, "coral", ADAPT)
    assert np.allclose(adapter.transform(same_in[:5]), same_in[:5], atol=1e-4)


def test_structure_loss_is_zero_for_a_linear_map_and_grows_for_noise():
    torch.manual_seed(0)
    x = torch.randn(64, 65)
    expanded = x @ torch.linalg.qr(torch.randn(713, 65))[0].T * 3.0  # an isometry into 713 dims
    assert float(structure_loss(x, expanded)) < 1e-4
    # unrelated rows: CKA with 64 rows in 713 dims is biased upwards, still far from a linear map
    assert float(structure_loss(x, torch.randn(64, 713))) > 0.2
    weights = torch.randn(65, 713, requires_grad=True)
    structure_loss(x, x @ weights).backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()


def test_the_report_says_why_there_is_no_zero_shot_row_without_an_adapter():
    from mer.report import _across_dims_sentence

    adapt = {
        "adapt/coral/audio/input_dim": 74, "adapt/coral/audio/output_dim": 192,
        "adapt/coral/text/input_dim": 384, "adapt/coral/text/output_dim": 384,
        "adapt/swap/seed002/loss_last_epoch": 0.5,
    }  # fmt: skip
    sentence = _across_dims_sentence(adapt)
    assert "(audio 74 → 192: plain MLP adapters)" in sentence and "text" not in sentence
    assert "`extract.target`" in sentence
