"""Feature adapters from the target domain's feature space into the source's, one per modality and
method, applied position-wise (``adapt.methods``, compared side by side by the transfer stage):

- ``seed002``: seed 002's adapter (Linear -> BN -> ReLU -> Dropout x2 -> Linear, hidden width
  ``expansion`` x input dim) trained by MSE on random (target, source) pairs. The minimiser of
  that MSE is the constant source mean, so it mostly recentres; kept for fidelity and as the
  reference the others are measured against.
- ``coral``: a residual adapter ``x + f(x)`` (``f``'s last layer starts at zero, so training
  starts from the identity) trained to match the source's first and second moments (mean MSE +
  Deep CORAL).
- ``mmd``: the residual adapter trained by squared MMD (multi-bandwidth RBF) to the source.
- ``adversarial``: the residual adapter trained to fool a domain classifier through gradient
  reversal (DANN).

``adapt.level``: ``frame`` trains on frames / tokens; ``utterance`` on mean-pooled utterance
vectors (the adapter is then applied to every frame, as seed 002 applies it to its vectors).

Across dimensions (seed 002: the target corpus read by another extractor, FaceMesh 65 -> OpenFace2
713, BERT 768 -> GloVe 300; ``extract.target``): every loss is computed in the output (source)
space, the residual form needs equal dims, so where they differ the methods train the plain MLP
(``residual: false`` in the adapter's saved config and in its record), and the identity penalty,
undefined across dims, becomes a structure penalty ``1 - CKA(inputs, adapted)``
(:func:`structure_loss`). "Before" distances across dims are those of the untrained adapter.

Each record reports the training loss per epoch (first / last) and feature-space distances to
the source before and after adaptation: CORAL distance, MMD, and the linear CKA between the
target features before and after (how much of their structure the adapter keeps).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from mer import schema
from mer.data import MultimodalData, load_splits
from mer.models.adapter import AdapterConfig, FeatureAdapter
from mer.models.domain import DomainClassifier, coral_distance, coral_loss, dann_loss, linear_cka, mmd_loss
from mer.optim import AdamW
from mer.params import AdaptParams
from mer.seeding import seed_everything

logger = logging.getLogger(__name__)

DISTANCE_SAMPLE = 1024  # rows per domain for the reported MMD (its cost is quadratic)
RESIDUAL_METHODS = ("coral", "mmd", "adversarial")  # residual where dims match, plain MLP elsewhere


@dataclass
class AdapterResult:
    """A trained adapter and its training record."""

    adapter: FeatureAdapter
    record: dict


def feature_rows(data: MultimodalData, modality: str, level: str) -> np.ndarray:
    """All frames `(N_frames, D)` (``frame``) or mean-pooled utterance vectors `(N_utt, D)`."""
    sequences = [np.asarray(s, dtype=np.float32) for s in data.sequences[modality]]
    if level == "utterance":
        return np.stack([s.mean(0) for s in sequences])
    return np.concatenate(sequences)


def _standardiser(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rows.mean(0), rows.std(0) + 1e-6


def structure_loss(inputs: torch.Tensor, adapted: torch.Tensor) -> torch.Tensor:
    """``1 - linear CKA`` of `(B, D_in)` inputs and `(B, D_out)` adapted rows (differentiable; the
    dims may differ): 0 when the adapted rows keep the inputs' similarity structure.

    >>> x = torch.randn(32, 5)
    >>> round(float(structure_loss(x, torch.cat([2 * x, x], dim=1))), 4)
    0.0
    """
    inputs, adapted = inputs - inputs.mean(0), adapted - adapted.mean(0)
    cross = (adapted.T @ inputs).pow(2).sum()
    scale = (inputs.T @ inputs).norm() * (adapted.T @ adapted).norm()
    return 1 - cross / scale.clamp_min(1e-12)


def adaptation_loss(
    method: str,
    adapted: torch.Tensor,
    source: torch.Tensor,
    inputs: torch.Tensor,
    identity_weight: float,
    classifier: DomainClassifier | None = None,
) -> torch.Tensor:
    """One step's objective of ``method`` on adapted target rows, source rows and the (standardised)
    target rows before adaptation, all `(B, D)`.

    The residual methods add ``identity_weight`` x the mean squared correction: without it the
    adversarial adapter wins by sending features anywhere the domain classifier is wrong, and
    nothing ties a moment-matching map to the features' meaning. Across dims (``inputs`` `(B,
    D_in)`, the others `(B, D_out)`) no correction is defined: the weight is on
    :func:`structure_loss` instead.
    """
    if method in ("seed002", "paired"):
        return functional.mse_loss(adapted, source)
    if method == "coral":
        alignment = functional.mse_loss(adapted.mean(0), source.mean(0)) + coral_loss(source, adapted)
    elif method == "mmd":
        alignment = mmd_loss(source, adapted)
    elif method == "adversarial":
        alignment = dann_loss(classifier, source, adapted)
    else:
        raise ValueError(f"unknown adapt method {method!r}; known: seed002, paired, coral, mmd, adversarial")
    if adapted.shape[1] != inputs.shape[1]:
        return alignment + identity_weight * structure_loss(inputs, adapted)
    return alignment + identity_weight * functional.mse_loss(adapted, inputs)


def build_adapter(inputs: np.ndarray, targets: np.ndarray, method: str, cfg: AdaptParams) -> FeatureAdapter:
    """A fresh ``method`` adapter from raw ``inputs`` `(N, D_in)` to raw ``targets``' `(M, D_out)`
    space. The residual methods (:data:`RESIDUAL_METHODS`) are residual where the dims match and
    work in the targets' standardised space (identity = no change); the plain MLP (``seed002``,
    ``paired``, and every method across dims) standardises each side with its own statistics."""
    if method not in (*RESIDUAL_METHODS, "seed002", "paired"):
        known = ", ".join(("seed002", "paired", *RESIDUAL_METHODS))
        raise ValueError(f"unknown adapt method {method!r}; known: {known}")
    residual = method in RESIDUAL_METHODS and inputs.shape[1] == targets.shape[1]
    out_mean, out_std = _standardiser(targets)
    in_mean, in_std = (out_mean, out_std) if residual else _standardiser(inputs)
    config = AdapterConfig(
        input_dim=inputs.shape[1],
        output_dim=targets.shape[1],
        hidden_dim=max(1, round(cfg.expansion * inputs.shape[1])),
        dropout=cfg.dropout,
        residual=residual,
        input_mean=in_mean.tolist(),
        input_std=in_std.tolist(),
        output_mean=out_mean.tolist(),
        output_std=out_std.tolist(),
    )
    return FeatureAdapter(config)


def fit_adapter(
    adapter: FeatureAdapter,
    inputs: np.ndarray,
    targets: np.ndarray,
    method: str,
    cfg: AdaptParams,
    rng: np.random.Generator,
) -> list[float]:
    """Train ``adapter`` by ``method`` on raw rows; return the mean loss per epoch.

    Each step draws ``cfg.batch_size`` input rows and as many target rows: the same positions for
    ``paired`` (row i of both is the same frame), random ones otherwise.
    """
    classifier = DomainClassifier(targets.shape[1]) if method == "adversarial" else None
    parameters = list(adapter.parameters()) + (list(classifier.parameters()) if classifier else [])
    optimizer = AdamW(parameters, lr=cfg.lr, weight_decay=0.0)  # Adam (seed 002), multi-tensor
    inputs_t = torch.from_numpy(inputs)  # (N, D_in) raw: the adapter standardises
    targets_t = (torch.from_numpy(targets) - adapter.output_mean) / adapter.output_std  # (M, D_out)
    losses = []
    steps = max(1, cfg.pairs_per_epoch // cfg.batch_size)
    for _ in range(cfg.epochs):
        adapter.train()
        total = 0.0
        for _ in range(steps):
            index = torch.from_numpy(rng.integers(len(inputs_t), size=cfg.batch_size))
            partner = index
            if method != "paired":
                partner = torch.from_numpy(rng.integers(len(targets_t), size=cfg.batch_size))
            batch = inputs_t[index]
            adapted = adapter.standardised(batch)  # (B, D_out) in standardised space
            loss = adaptation_loss(
                method, adapted, targets_t[partner], (batch - adapter.input_mean) / adapter.input_std,
                cfg.identity_weight, classifier,
            )  # fmt: skip
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        losses.append(round(total / steps, 5))
    return losses


def train_adapter(
    source: MultimodalData, target: MultimodalData, modality: str, method: str, cfg: AdaptParams
) -> AdapterResult:
    """Train one ``method`` adapter mapping ``target``'s ``modality`` features into ``source``'s.

    Labels are never used: every method is unsupervised domain adaptation of the features. The
    rows are standardised with the source's per-dimension statistics while training (so one
    learning rate fits every encoder's scale); the saved adapter works on raw features.
    """
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    source_rows = feature_rows(source, modality, cfg.level)
    target_rows = feature_rows(target, modality, cfg.level)
    adapter = build_adapter(target_rows, source_rows, method, cfg)
    # across dims the raw target rows are not in the source space: "before" is the untrained adapter
    same_dims = target_rows.shape[1] == source_rows.shape[1]
    unadapted_rows = target_rows if same_dims else adapter.transform(target_rows)
    losses = fit_adapter(adapter, target_rows, source_rows, method, cfg, rng)
    mean, std = adapter.output_mean.numpy(), adapter.output_std.numpy()
    source_t = torch.from_numpy((source_rows - mean) / std)  # (N_s, D_out) standardised

    adapted_rows = adapter.transform(target_rows)
    sample = lambda rows: torch.from_numpy(rows[rng.permutation(len(rows))[:DISTANCE_SAMPLE]])  # noqa: E731
    standard = lambda rows: (rows - mean) / std  # noqa: E731

    def mmd_to_source(rows: np.ndarray) -> float:  # a source sample, then one of ``rows``
        return round(float(mmd_loss(sample(standard(source_rows)), sample(standard(rows)))), 5)

    before_t, after_t = torch.from_numpy(standard(unadapted_rows)), torch.from_numpy(standard(adapted_rows))
    inputs_t = before_t  # (N_t, D_in) the target rows, for the structure kept (CKA)
    if not same_dims:
        inputs_t = torch.from_numpy((target_rows - adapter.input_mean.numpy()) / adapter.input_std.numpy())
    record = {
        "method": method,
        "level": cfg.level,
        "residual": adapter.config.residual,
        "input_dim": adapter.config.input_dim,
        "output_dim": adapter.config.output_dim,
        "loss_first_epoch": losses[0],
        "loss_last_epoch": losses[-1],
        "coral_before": round(coral_distance(before_t, source_t), 5),
        "coral_after": round(coral_distance(after_t, source_t), 5),
        "mmd_before": mmd_to_source(unadapted_rows),
        "mmd_after": mmd_to_source(adapted_rows),
        "cka_kept": round(linear_cka(inputs_t, after_t), 4),
    }
    logger.info("adapter %s/%s: %s", method, modality, record)
    return AdapterResult(adapter=adapter, record=record)


def save_adapter(adapter: FeatureAdapter, path: str | Path) -> None:
    """Save an adapter with its config."""
    torch.save({"config": adapter.config.to_dict(), "state_dict": adapter.state_dict()}, path)


def load_adapter(path: str | Path) -> FeatureAdapter:
    """Reload an adapter saved by :func:`save_adapter` (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: adapter not found; run `dvc repro adapt`")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    adapter = FeatureAdapter(AdapterConfig(**checkpoint["config"]))
    adapter.load_state_dict(checkpoint["state_dict"])
    return adapter.eval()


def load_adapters(adapters_dir: str | Path, method: str, modalities: list[str]) -> dict[str, FeatureAdapter]:
    """The ``method`` adapters saved by :func:`train_adapters`, one per modality."""
    return {m: load_adapter(Path(adapters_dir) / method / f"{m}.pt") for m in modalities}


def train_adapters(
    cfg: AdaptParams,
    modalities: list[str],
    source_metadata: str | Path,
    target_metadata: str | Path,
    source_features: str | Path,
    target_features: str | Path,
    out_dir: str | Path,
) -> dict:
    """Train and save one adapter per method and modality (``out_dir/<method>/<modality>.pt``)
    on the two train splits; return ``{method: {modality: record}}`` (``{}`` without a target
    corpus, ``corpora.target: none``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if schema.read(target_metadata).empty:
        logger.info("%s: no target corpus, no domain adapters", target_metadata)
        return {}
    source = load_splits(source_metadata, source_features, modalities)["train"]
    target = load_splits(target_metadata, target_features, modalities)["train"]
    records: dict = {}
    for method in cfg.methods:
        (out_dir / method).mkdir(parents=True, exist_ok=True)
        for modality in modalities:
            result = train_adapter(source, target, modality, method, cfg)
            save_adapter(result.adapter, out_dir / method / f"{modality}.pt")
            records.setdefault(method, {})[modality] = result.record
    return records
