"""Fusion model and adapter: shapes, masks, gradients, config round trip (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from mer.models.adapter import AdapterConfig, FeatureAdapter
from mer.models.fusion import FusionConfig, FusionModel

DIMS = {"text": 12, "audio": 10, "video": 8}


def _config(mode: str, **kwargs) -> FusionConfig:
    return FusionConfig(input_dims=DIMS, mode=mode, d_model=16, num_heads=2, num_classes=4, **kwargs)


def _batch(batch: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = {"text": 5, "audio": 7, "video": 4}
    features = {m: torch.randn(batch, lengths[m], DIMS[m], generator=generator) for m in DIMS}
    masks = {m: torch.ones(batch, lengths[m], dtype=torch.bool) for m in DIMS}
    masks["audio"][0, 4:] = False  # item 0 has 4 real audio frames
    return features, masks


@pytest.mark.parametrize("mode", ["beta", "concat", "text", "audio", "video"])
def test_forward_shapes_and_backward(mode):
    torch.manual_seed(0)
    model = FusionModel(_config(mode))
    features, masks = _batch()
    output = model(features, masks, labels=torch.tensor([0, 1, 3]))
    assert output.logits.shape == (3, 4)
    assert output.loss is not None and output.loss.ndim == 0
    if mode == "beta":
        assert output.gates.shape == (3, 3)
        assert torch.allclose(output.gates.sum(-1), torch.full((3,), 3.0))  # modality weights sum to M
    else:
        assert output.gates is None
    output.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("mode", ["beta", "concat", "audio"])
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
    model = FusionModel(_config("beta", gate="vector"))
    features, masks = _batch()
    gates = model(features, masks).gates
    assert gates.shape == (3, 3) and ((gates > 0) & (gates < 1)).all()
    assert not torch.allclose(gates.sum(-1), torch.full((3,), 3.0))


def test_modality_gate_follows_its_scores():
    torch.manual_seed(0)
    model = FusionModel(_config("beta")).eval()
    features, masks = _batch()
    with torch.no_grad():
        model.fusion.scores["audio"][-1].bias.fill_(10.0)  # audio judged very reliable
    gates = model(features, masks).gates
    assert (gates[:, 1] > 2.9).all() and (gates[:, [0, 2]] < 0.05).all()


def test_beta_learnable_or_fixed():
    learnable = FusionModel(_config("beta", beta=0.3, beta_learnable=True))
    fixed = FusionModel(_config("beta", beta=0.3, beta_learnable=False))
    assert learnable.beta == pytest.approx(0.3) and fixed.beta == pytest.approx(0.3)
    assert any(name.endswith("fusion.beta") for name, _ in learnable.named_parameters())
    assert not any(name.endswith("fusion.beta") for name, _ in fixed.named_parameters())


def test_beta_scales_the_interaction_term():
    torch.manual_seed(0)
    zero = FusionModel(_config("beta", beta=0.0, beta_learnable=False)).eval()
    one = FusionModel(_config("beta", beta=1.0, beta_learnable=False)).eval()
    one.load_state_dict(zero.state_dict() | {"fusion.beta": torch.tensor(1.0)})
    features, masks = _batch()
    assert not torch.allclose(zero(features, masks).embeddings, one(features, masks).embeddings)


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        FusionConfig(input_dims=DIMS, mode="sum")
    with pytest.raises(ValueError, match="input_dims"):
        FusionConfig(input_dims={"text": 4}, mode="beta")
    with pytest.raises(ValueError, match="gate"):
        FusionConfig(input_dims=DIMS, mode="beta", gate="scalar")
    with pytest.raises(ValueError, match="two modalities"):
        FusionConfig(input_dims=DIMS, modalities=("text",), mode="beta")


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
