"""Named fusion settings ("recipes"): the baselines (``train.baselines``) and the ablation
variants (``ablation.variants``).

Each recipe is :class:`~mer.params.FusionParams`' defaults with a few overrides, so a recipe means
the same thing whatever the ``fusion`` section says, and changing the main model never re-runs
them.
"""

from __future__ import annotations

from typing import Any

from mer.params import FusionParams, ParamsError

_SEED003 = {"mode": "crossmodal", "gate": "none"}  # seed 003's baseline: standard cross-attention
RECIPES: dict[str, dict[str, Any]] = {
    # seeds 001 / 004: early, late and their ensemble; unimodal baselines
    "concat": {"mode": "concat"},
    "late": {"mode": "late"},
    "ensemble": {"mode": "ensemble"},
    "multitask": {"mode": "ensemble", "sentiment_weight": 0.5},
    "text": {"mode": "text"},
    "audio": {"mode": "audio"},
    "video": {"mode": "video"},
    # seed 002: cross-modal attention + fusion MLP, regression on sentiment, correlation loss
    "regression": {**_SEED003, "task": "regression"},
    # seed 000: beta fusion and the emotion-query decoder
    "beta": {"mode": "crossmodal", "gate": "modality"},
    "decoder": {"mode": "crossmodal", "gate": "modality", "decoder_layers": 1},
    # seed 003's ablation: each component alone on the baseline, then all of them
    "cross_attention": _SEED003,
    "vad_guidance": {**_SEED003, "vad_guidance": True},
    "adaptive_fusion": {**_SEED003, "gate": "vector"},
    "micl": {**_SEED003, "micl_weight": 0.2},
    "full": {
        "mode": "crossmodal",
        "gate": "vector",
        "vad_guidance": True,
        "micl_weight": 0.2,
        "vad_weight": 0.3,
        "label_smoothing": 0.1,
    },
}


def recipe(name: str) -> FusionParams:
    """The FusionParams of a named recipe (:data:`RECIPES`).

    >>> recipe("decoder").decoder_layers
    1
    """
    if name not in RECIPES:
        raise ParamsError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return FusionParams(**RECIPES[name])
