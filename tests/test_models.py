"""Fusion model and adapter: shapes, masks, gradients, config round trip (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from mer.models.adapter import AdapterConfig, FeatureAdapter
from mer.models.attention import AttentionBlock, VADGuidedBias
from mer.models.fusion import FusionConfig, FusionModel, sentiment_classes
from mer.models.losses import correlation_loss, info_nce, masked_mse, micl_loss
from mer.params import load_recipe as recipe
from mer.params import load_recipes

DIMS = {"text": 12, "audio": 10, "video": 8}


def _config(mode: str, **kwargs) -> FusionConfig:
    return FusionConfig(input_dims=DIMS, mode=mode, d_model=16, num_heads=2, num_classes=4, **kwargs)


def _is_missing_vector(name: str) -> bool:
    """Missing-modality vectors: used (and trained) only on rows where their modality is absent."""
    return ".missing.vectors." in name


def _batch(batch: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = {"text": 5, "audio": 7, "video": 4}
    features = {m: torch.randn(batch, lengths[m], DIMS[m], generator=generator) for m in DIMS}
    masks = {m: torch.ones(batch, lengths[m], dtype=torch.bool) for m in DIMS}
    masks["audio"][0, 4:] = False  # item 0 has 4 real audio frames
    return features, masks


@pytest.mark.parametrize("mode", ["crossmodal", "concat", "text", "audio", "video"])
def test_forward_shapes_and_backward(mode):
    torch.manual_seed(0)
    model = FusionModel(_config(mode))
    features, masks = _batch()
    output = model(features, masks, labels=torch.tensor([0, 1, 3]))
    assert output.logits.shape == (3, 4)
    assert output.loss is not None and output.loss.ndim == 0
    if mode == "crossmodal":
        assert output.gates.shape == (3, 3)
        assert torch.allclose(output.gates.sum(-1), torch.full((3,), 3.0))  # modality weights sum to M
    else:
        assert output.gates is None
    output.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is None for n, g in grads.items() if _is_missing_vector(n))  # every modality present
    assert all(g is not None for n, g in grads.items() if not _is_missing_vector(n))
    assert any(g.abs().sum() > 0 for g in grads.values() if g is not None)


@pytest.mark.parametrize("mode", ["crossmodal", "concat", "audio"])
def test_padding_is_ignored_and_real_positions_matter(mode):
    torch.manual_seed(0)
    model = FusionModel(_config(mode)).eval()
    features, masks = _batch()
    reference = model(features, masks).logits
    padded = {m: f.clone() for m, f in features.items()}
    padded["audio"][0, 4:] = 1e3  # change only padded positions of item 0
    assert torch.allclose(model(padded, masks).logits, reference, atol=1e-5)
    real = {m: f.clone() for m, f in features.items()}
    real["audio"][0, :4] += torch.linspace(-3, 3, DIMS["audio"])  # change real positions of item 0
    assert not torch.allclose(model(real, masks).logits[0], reference[0], atol=1e-3)


def test_vector_gate_is_per_dimension_sigmoid():
    torch.manual_seed(0)
    model = FusionModel(_config("crossmodal", gate="vector"))
    features, masks = _batch()
    gates = model(features, masks).gates
    assert gates.shape == (3, 3) and ((gates > 0) & (gates < 1)).all()
    assert not torch.allclose(gates.sum(-1), torch.full((3,), 3.0))


def test_modality_gate_follows_its_scores():
    torch.manual_seed(0)
    model = FusionModel(_config("crossmodal")).eval()
    features, masks = _batch()
    with torch.no_grad():
        model.fuser.fusion.scores["audio"][-1].bias.fill_(10.0)  # audio judged very reliable
    gates = model(features, masks).gates
    assert (gates[:, 1] > 2.9).all() and (gates[:, [0, 2]] < 0.05).all()


def test_beta_learnable_or_fixed():
    learnable = FusionModel(_config("crossmodal", beta=0.3, beta_learnable=True))
    fixed = FusionModel(_config("crossmodal", beta=0.3, beta_learnable=False))
    assert learnable.beta == pytest.approx(0.3) and fixed.beta == pytest.approx(0.3)
    assert any(name.endswith("fusion.beta") for name, _ in learnable.named_parameters())
    assert not any(name.endswith("fusion.beta") for name, _ in fixed.named_parameters())


def test_beta_scales_the_interaction_term():
    torch.manual_seed(0)
    zero = FusionModel(_config("crossmodal", beta=0.0, beta_learnable=False)).eval()
    one = FusionModel(_config("crossmodal", beta=1.0, beta_learnable=False)).eval()
    one.load_state_dict(zero.state_dict() | {"fuser.fusion.beta": torch.tensor(1.0)})
    features, masks = _batch()
    assert not torch.allclose(zero(features, masks).embeddings, one(features, masks).embeddings)


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        FusionConfig(input_dims=DIMS, mode="sum")
    with pytest.raises(ValueError, match="input_dims"):
        FusionConfig(input_dims={"text": 4}, mode="crossmodal")
    with pytest.raises(ValueError, match="gate"):
        FusionConfig(input_dims=DIMS, mode="crossmodal", gate="scalar")
    with pytest.raises(ValueError, match="two modalities"):
        FusionConfig(input_dims=DIMS, modalities=("text",), mode="crossmodal")


def test_unimodal_mode_reads_only_its_modality():
    model = FusionModel(_config("video"))
    features, masks = _batch()
    del features["text"], features["audio"]
    assert model(features, masks).logits.shape == (3, 4)


def test_adapter_shapes_and_transform_is_eval_mode():
    torch.manual_seed(0)
    adapter = FeatureAdapter(AdapterConfig(input_dim=6, output_dim=4, hidden_dim=8))
    assert adapter(torch.randn(5, 6)).shape == (5, 4)
    sequence = torch.randn(3, 6).numpy()
    first, second = adapter.transform(sequence), adapter.transform(sequence)
    assert first.shape == (3, 4) and (first == second).all()  # no dropout at transform time
    assert adapter.training  # transform restores the mode


# --- the model zoo: every recipe, each component's defining property ---------------------------


def _recipe_model(name: str, **overrides) -> FusionModel:
    fields = recipe(name) | overrides
    return FusionModel(FusionConfig(input_dims=DIMS, d_model=16, num_heads=2, num_classes=4, **fields))


def _targets(batch: int = 3):
    labels = torch.tensor([0, 1, 3])[:batch]
    vad = torch.tensor([[0.5, 0.2, -0.1], [float("nan")] * 3, [-0.5, 0.1, 0.3]])[:batch]
    sentiment = torch.tensor([1.5, -2.0, 0.0])[:batch]
    return {"labels": labels, "vad": vad, "sentiment": sentiment}


@pytest.mark.parametrize("name", sorted(load_recipes()))
def test_every_recipe_forward_backward_and_its_loss_terms(name):
    torch.manual_seed(0)
    model = _recipe_model(name)
    features, masks = _batch()
    output = model(features, masks, **_targets())
    width = 1 if recipe(name)["task"] == "regression" else 4
    assert output.logits.shape == (3, width)
    assert torch.isfinite(output.loss)
    expected = {"regression"} if width == 1 else {"cls"}
    expected |= {"vad"} if recipe(name)["vad_weight"] else set()
    expected |= {"micl"} if recipe(name)["micl_weight"] else set()
    expected |= {"sentiment"} if recipe(name)["sentiment_weight"] else set()
    assert set(output.losses) == expected
    output.loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None and not _is_missing_vector(n)]
    assert not unused, f"{name}: parameters without gradient {unused}"


@pytest.mark.parametrize("name", ["vad_guidance", "decoder", "late", "ensemble", "full"])
def test_recipes_ignore_padding(name):
    torch.manual_seed(0)
    model = _recipe_model(name).eval()
    features, masks = _batch()
    reference = model(features, masks).logits
    padded = {m: f.clone() for m, f in features.items()}
    padded["audio"][0, 4:] = 1e3
    assert torch.allclose(model(padded, masks).logits, reference, atol=1e-5)
    real = {m: f.clone() for m, f in features.items()}
    real["audio"][0, :4] += torch.linspace(-3, 3, DIMS["audio"])
    assert not torch.allclose(model(real, masks).logits[0], reference[0], atol=1e-4)


def test_vad_bias_is_minus_lambda_times_vad_distance():
    config = _config("crossmodal", vad_guidance=True, vad_lambda=2.0)
    bias = VADGuidedBias(config)
    queries, keys = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    expected = -2.0 * torch.cdist(bias.projection(queries), bias.projection(keys))
    assert torch.allclose(bias(queries, keys), expected, atol=1e-6)
    assert torch.allclose(bias(queries, queries).diagonal(dim1=1, dim2=2), torch.zeros(2, 3), atol=1e-5)


def test_vad_guidance_steers_attention_towards_close_vad_keys():
    torch.manual_seed(0)
    block = AttentionBlock(
        _config("crossmodal", vad_guidance=True, vad_lambda=0.0, dropout=0.0), vad_guided=True
    )
    block.eval()
    queries, keys = torch.randn(1, 2, 16), torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.bool)
    plain = block(queries, keys, mask)
    with torch.no_grad():
        block.vad_bias.vad_lambda.fill_(50.0)
    guided = block(queries, keys, mask)
    assert not torch.allclose(plain, guided, atol=1e-4)  # lambda changes the attention
    # a key masked out stays ignored under guidance
    masked = mask.clone()
    masked[0, 5] = False
    changed = keys.clone()
    changed[0, 5] = 100.0
    assert torch.allclose(block(queries, keys, masked), block(queries, changed, masked), atol=1e-5)


def test_decoder_query_i_scores_class_i():
    torch.manual_seed(0)
    model = _recipe_model("decoder", dropout=0.0).eval()
    features, masks = _batch()
    logits = model(features, masks).logits
    with torch.no_grad():
        model.fuser.decoder.queries[[0, 1]] = model.fuser.decoder.queries[[1, 0]].clone()
    swapped = model(features, masks).logits
    assert torch.allclose(swapped[:, [1, 0, 2, 3]], logits, atol=1e-5)


def test_late_fusion_is_a_weighted_average_of_per_modality_classifiers():
    torch.manual_seed(0)
    model = _recipe_model("late").eval()
    with torch.no_grad():
        model.fuser.late.weight_logits.copy_(torch.tensor([20.0, -20.0, -20.0]))  # all weight on text
    features, masks = _batch()
    text_only = {m: f.clone() for m, f in features.items()}
    text_only["audio"] += 5.0
    text_only["video"] -= 5.0
    assert torch.allclose(model.fuser.late.weights().sum(), torch.tensor(1.0))
    assert torch.allclose(model(features, masks).logits, model(text_only, masks).logits, atol=1e-4)
    assert set(model.fusion_weights()) == {"late_weight/text", "late_weight/audio", "late_weight/video"}


def test_ensemble_combines_early_and_late_with_sigmoid_weights():
    torch.manual_seed(0)
    model = _recipe_model("ensemble").eval()
    features, masks = _batch()
    with torch.no_grad():
        model.fuser.ensemble_logits.copy_(torch.tensor([30.0, -30.0]))  # early only
    early_only = model(features, masks).logits
    with torch.no_grad():
        model.fuser.ensemble_logits.copy_(torch.tensor([-30.0, 30.0]))  # late only
    late_only = model(features, masks).logits
    with torch.no_grad():
        model.fuser.ensemble_logits.copy_(torch.tensor([0.0, 0.0]))
    assert torch.allclose(model(features, masks).logits, (early_only + late_only) / 2, atol=1e-4)


def test_micl_prefers_aligned_pairs_and_is_symmetric():
    torch.manual_seed(0)
    text = torch.randn(8, 6)
    aligned = {"text": text, "audio": text + 0.01 * torch.randn(8, 6)}
    shuffled = {"text": text, "audio": aligned["audio"][torch.randperm(8)]}
    assert micl_loss(aligned, 0.1) < micl_loss(shuffled, 0.1)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.allclose(micl_loss({"x": a, "y": b}, 0.2), micl_loss({"y": b, "x": a}, 0.2))
    assert torch.allclose(micl_loss({"x": a, "y": b}, 0.2), 0.5 * (info_nce(a, b, 0.2) + info_nce(b, a, 0.2)))


def test_correlation_loss_rewards_correlation_and_scale():
    target = torch.tensor([-2.0, -1.0, 0.5, 2.5])
    assert float(correlation_loss(target, target, 0.3, 0.7)) == pytest.approx(0.0, abs=1e-6)
    anti = correlation_loss(-target, target, 0.3, 0.7)
    scaled = correlation_loss(2 * target, target, 0.3, 0.7)  # r = 1: only the MSE term
    assert anti > scaled > 0
    assert float(scaled) == pytest.approx(0.3 * float(((2 * target - target) ** 2).mean()), rel=1e-5)
    prediction = torch.zeros(4, requires_grad=True)
    correlation_loss(prediction + torch.tensor([0.1, 0.0, 0.0, 0.0]), target, 0.3, 0.7).backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()


def test_masked_mse_skips_unlabelled_rows_and_sentiment_classes_follow_the_sign():
    predictions = torch.zeros(3, 3)
    targets = torch.tensor([[1.0, 1.0, 1.0], [float("nan")] * 3, [2.0, 2.0, 2.0]])
    assert float(masked_mse(predictions, targets)) == pytest.approx(2.5)
    assert sentiment_classes(torch.tensor([-0.1, 0.0, 3.0, float("nan")])).tolist() == [0, 1, 2, -1]


def test_label_smoothing_raises_the_loss_of_confident_correct_predictions():
    torch.manual_seed(0)
    plain, smoothed = _recipe_model("beta"), _recipe_model("beta", label_smoothing=0.2)
    smoothed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for model in (plain, smoothed):
            model.fuser.head[-1].bias.copy_(torch.tensor([30.0, 0.0, 0.0, 0.0]))
    features, masks = _batch()
    labels = torch.zeros(3, dtype=torch.long)
    assert smoothed(features, masks, labels=labels).loss > plain(features, masks, labels=labels).loss + 0.5


def test_regression_head_and_nan_sentiment_rows_are_skipped():
    torch.manual_seed(0)
    model = _recipe_model("regression")
    features, masks = _batch()
    sentiment = torch.tensor([1.0, float("nan"), -1.0])
    output = model(features, masks, sentiment=sentiment)
    assert output.logits.shape == (3, 1) and torch.isfinite(output.loss)
    with pytest.raises(ValueError, match="sentiment"):
        model(features, masks, labels=torch.tensor([0, 1, 2]))


def test_zoo_config_validation():
    with pytest.raises(ValueError, match="decoder"):
        FusionConfig(input_dims=DIMS, mode="concat", decoder_layers=1)
    with pytest.raises(ValueError, match="two modalities"):
        FusionConfig(input_dims=DIMS, mode="late", modalities=("text",))
    with pytest.raises(ValueError, match="micl"):
        FusionConfig(input_dims=DIMS, mode="audio", micl_weight=0.2)
    with pytest.raises(ValueError, match="task"):
        FusionConfig(input_dims=DIMS, task="ordinal")


def test_gate_none_is_concatenation_without_beta():
    model = _recipe_model("cross_attention")
    assert model.beta is None and model.fuser.fusion.output_dim == 16 * 3
    assert not any("beta" in name for name, _ in model.named_parameters())
