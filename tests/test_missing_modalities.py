"""Scoring with absent modalities (mask rows all False, or left out of the inputs) and modality
dropout, for every fusion mode (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from mer.models.attention import AttentionBlock
from mer.models.fusion import FusionConfig, FusionModel
from mer.models.losses import micl_loss

DIMS = {"text": 12, "audio": 10, "video": 8}
LENGTHS = {"text": 5, "audio": 7, "video": 4}
CASES = {
    "modality_gate": {"mode": "crossmodal"},
    "vector_gate": {"mode": "crossmodal", "gate": "vector"},
    "no_gate": {"mode": "crossmodal", "gate": "none"},
    "vad_guidance": {"mode": "crossmodal", "gate": "vector", "vad_guidance": True},
    "decoder": {"mode": "crossmodal", "decoder_layers": 1},
    "decoder_no_gate": {"mode": "crossmodal", "gate": "none", "decoder_layers": 1},
    "full": {
        "mode": "crossmodal", "gate": "vector", "vad_guidance": True, "micl_weight": 0.2,
        "vad_weight": 0.3, "label_smoothing": 0.1, "num_cross_layers": 2,
    },
    "concat": {"mode": "concat"},
    "late": {"mode": "late"},
    "ensemble": {"mode": "ensemble", "sentiment_weight": 0.5},
}  # fmt: skip
#: Which modalities each row of :func:`_batch` has: all, no audio, text alone, video alone.
PRESENT = torch.tensor([[True, True, True], [True, False, True], [True, False, False], [False, False, True]])


def _model(seed: int = 0, **fields) -> FusionModel:
    torch.manual_seed(seed)
    return FusionModel(FusionConfig(input_dims=DIMS, d_model=16, num_heads=2, num_classes=4, **fields))


def _batch(present: torch.Tensor = PRESENT, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    batch = len(present)
    features = {m: torch.randn(batch, LENGTHS[m], DIMS[m], generator=generator) for m in DIMS}
    masks = {m: present[:, i, None].repeat(1, LENGTHS[m]) for i, m in enumerate(DIMS)}
    masks["text"][0, 3:] = False  # some padding on a present modality too
    return features, masks


def _targets(batch: int = 4) -> dict[str, torch.Tensor]:
    return {
        "labels": torch.arange(batch) % 4,
        "vad": torch.rand(batch, 3) * 2 - 1,
        "sentiment": torch.linspace(-2, 2, batch),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_absent_rows_give_finite_probabilities_loss_and_gradients(case):
    model = _model(**CASES[case])
    features, masks = _batch()
    output = model(features, masks, **_targets())
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.embeddings).all()
    assert torch.isfinite(output.loss)
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name
    missing = [p for n, p in model.named_parameters() if ".missing.vectors." in n]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in missing)  # each absent on a row
    model.eval()
    with torch.no_grad():
        probabilities = model(features, masks).logits.softmax(-1)
    assert torch.isfinite(probabilities).all()
    assert torch.allclose(probabilities.sum(-1), torch.ones(4))


@pytest.mark.parametrize("case", sorted(CASES))
def test_absent_modality_features_do_not_change_the_output(case):
    model = _model(**CASES[case]).eval()
    features, masks = _batch()
    reference = model(features, masks)
    changed = {m: f.clone() for m, f in features.items()}
    for i, modality in enumerate(DIMS):
        changed[modality][~PRESENT[:, i]] = 1e3  # only (row, modality) pairs that are absent
    output = model(changed, masks)
    assert torch.equal(output.logits, reference.logits)
    assert torch.equal(output.embeddings, reference.embeddings)
    # the present modalities still matter on those rows
    moved = {m: f.clone() for m, f in features.items()}
    moved["text"][2] += 1.0
    assert not torch.allclose(model(moved, masks).logits[2], reference.logits[2], atol=1e-4)


@pytest.mark.parametrize("case", ["modality_gate", "no_gate", "decoder", "concat", "late", "ensemble"])
def test_a_modality_left_out_of_the_inputs_is_absent_on_every_row(case):
    model = _model(**CASES[case]).eval()
    features, masks = _batch(PRESENT & torch.tensor([True, False, True]))  # no audio on any row
    with_masks = model(features, masks).logits
    del features["audio"], masks["audio"]
    assert torch.allclose(model(features, masks).logits, with_masks, atol=1e-6)
    with pytest.raises(ValueError, match="both hold each modality"):
        model(features, {**masks, "audio": torch.ones(4, 7, dtype=torch.bool)})


@pytest.mark.parametrize("case", ["modality_gate", "vector_gate", "decoder", "concat", "ensemble"])
def test_extra_padding_changes_nothing_when_all_are_present(case):
    model = _model(**CASES[case]).eval()
    features, masks = _batch(torch.ones(4, 3, dtype=torch.bool))
    reference = model(features, masks).logits
    longer_features = {**features, "audio": torch.cat([features["audio"], torch.randn(4, 3, 10)], dim=1)}
    longer_masks = {**masks, "audio": torch.cat([masks["audio"], torch.zeros(4, 3, dtype=torch.bool)], dim=1)}
    assert torch.allclose(model(longer_features, longer_masks).logits, reference, atol=1e-5)


@pytest.mark.parametrize("case", ["modality_gate", "vector_gate", "decoder", "full"])
def test_gates_of_absent_modalities_are_zero(case):
    model = _model(**CASES[case]).eval()
    gates = model(*_batch()).gates
    assert torch.equal(gates[~PRESENT], torch.zeros(int((~PRESENT).sum())))
    assert (gates[PRESENT] > 0).all()
    if CASES[case].get("gate", "modality") == "modality":  # the present ones sum to their number
        assert torch.allclose(gates.sum(-1), PRESENT.sum(-1).float())
        assert torch.equal(gates[2], torch.tensor([1.0, 0.0, 0.0]))  # text alone: all its weight


def test_late_weights_are_renormalised_over_the_present_modalities():
    model = _model(mode="late").eval()
    with torch.no_grad():
        model.fuser.late.weight_logits.copy_(torch.tensor([0.3, -0.4, 1.2]))
    # three copies of one utterance: text alone, audio alone, text + audio
    features, _ = _batch(torch.ones(1, 3, dtype=torch.bool))
    features = {m: f.expand(3, -1, -1) for m, f in features.items()}
    present = torch.tensor([[True, False, False], [False, True, False], [True, True, False]])
    masks = {m: present[:, i, None].repeat(1, LENGTHS[m]) for i, m in enumerate(DIMS)}
    text, audio, both = model(features, masks).logits
    weight_text, weight_audio = torch.softmax(torch.tensor([0.3, -0.4]), 0)
    assert torch.allclose(both, weight_text * text + weight_audio * audio, atol=1e-6)


def test_a_row_without_any_modality_raises():
    model = _model(mode="crossmodal")
    features, masks = _batch()
    masks = {m: mask.clone() for m, mask in masks.items()}
    for mask in masks.values():
        mask[3] = False
    with pytest.raises(ValueError, match=r"rows \[3\] have no modality present"):
        model(features, masks)
    with pytest.raises(ValueError, match="at least one"):
        model({}, {})
    unimodal = _model(mode="audio")
    with pytest.raises(ValueError, match=r"rows \[1, 2, 3\]"):
        unimodal(*_batch())


def test_attention_block_leaves_rows_without_keys_unchanged():
    config = FusionConfig(input_dims=DIMS, d_model=16, num_heads=2, vad_guidance=True)
    for vad_guided in (False, True):
        torch.manual_seed(0)
        block = AttentionBlock(config, vad_guided=vad_guided)
        queries = torch.randn(2, 3, 16, requires_grad=True)
        keys = torch.randn(2, 4, 16)
        key_mask = torch.tensor([[True, True, False, False], [False] * 4])
        output = block(queries, keys, key_mask)
        assert torch.equal(output[1], queries[1]) and not torch.allclose(output[0], queries[0])
        output.square().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)
        assert torch.isfinite(queries.grad).all()


def test_micl_scores_each_pair_on_the_rows_where_both_are_present():
    torch.manual_seed(0)
    embeddings = {m: torch.randn(6, 4) for m in ("text", "audio", "video")}
    present = {
        "text": torch.ones(6, dtype=torch.bool),
        "audio": torch.tensor([True, True, True, False, False, False]),
        "video": torch.tensor([True, False, False, False, False, False]),  # one row: pairs skipped
    }
    rows = present["audio"]
    expected = micl_loss({"text": embeddings["text"][rows], "audio": embeddings["audio"][rows]}, 0.1)
    assert torch.allclose(micl_loss(embeddings, 0.1, present), expected)
    everywhere = {m: torch.ones(6, dtype=torch.bool) for m in embeddings}
    assert torch.equal(micl_loss(embeddings, 0.1, everywhere), micl_loss(embeddings, 0.1))
    lonely = {**present, "audio": present["video"]}
    assert micl_loss(embeddings, 0.1, lonely) == 0.0


def test_missing_vectors_are_untouched_by_training_with_every_modality_present():
    model = _model(mode="ensemble")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    features, masks = _batch(torch.ones(4, 3, dtype=torch.bool))
    for _ in range(2):
        optimizer.zero_grad()
        model(features, masks, **_targets()).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    vectors = model.fuser.missing.vectors
    assert all(v.grad is None and torch.equal(v, torch.zeros(16)) for v in vectors.values())
    optimizer.zero_grad()
    model(*_batch(PRESENT[:3]), **_targets(3)).loss.backward()  # text everywhere, audio / video not
    optimizer.step()
    assert vectors["text"].grad is None and torch.equal(vectors["text"], torch.zeros(16))
    assert not torch.equal(vectors["audio"], torch.zeros(16)) and not torch.equal(
        vectors["video"], torch.zeros(16)
    )


def test_modality_dropout_drops_in_training_only_and_never_a_whole_row():
    model = _model(mode="crossmodal", modality_dropout=0.5, dropout=0.0)
    features, masks = _batch(torch.ones(64, 3, dtype=torch.bool))
    originals = {m: mask.clone() for m, mask in masks.items()}
    gates = model(features, masks).gates
    dropped = gates == 0
    assert dropped.any() and not dropped.all(-1).any()  # some modalities gone, never all of a row
    assert torch.allclose(gates.sum(-1), (~dropped).sum(-1).float())
    assert all(torch.equal(masks[m], originals[m]) for m in masks)  # inputs untouched
    assert not (model.eval()(features, masks).gates == 0).any()


def test_modality_dropout_keeps_a_random_present_modality_of_a_row_that_lost_all():
    model = _model(mode="crossmodal", modality_dropout=0.99).train()
    present = torch.ones(600, 3, dtype=torch.bool)
    present[:300, 0] = False  # these rows can only keep audio or video
    masks = {m: present[:, i, None].repeat(1, 2) for i, m in enumerate(DIMS)}
    _, kept = model._drop_modalities(masks, present)
    assert (kept.sum(-1) >= 1).all() and not (kept & ~present).any()
    assert (kept[:300, 1:].sum(0) > 110).all() and kept[:300, 0].sum() == 0  # audio / video: 150 each
    assert (kept[300:].sum(0) > 70).all()  # each of the three about a third of the time (100)


@pytest.mark.parametrize("training", [True, False])
def test_modality_dropout_zero_draws_no_random_numbers(training):
    model = _model(mode="crossmodal", dropout=0.0).train(training)
    features, masks = _batch(torch.ones(4, 3, dtype=torch.bool))
    state = torch.get_rng_state()
    model(features, masks)
    assert torch.equal(torch.get_rng_state(), state)
    model.config.modality_dropout = 0.3
    model(features, masks)
    assert torch.equal(torch.get_rng_state(), state) != training  # drawn in training only


def test_modality_dropout_config():
    assert "modality_dropout" in FusionConfig.FUSION_KEYS and FusionConfig().modality_dropout == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="modality_dropout"):
            FusionConfig(modality_dropout=bad)
