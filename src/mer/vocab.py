"""The names every part of mer agrees on: modalities, tasks, fusion modes, gates, emotions.

Both the model code (:mod:`mer.models`) and the params validation (:mod:`mer.params`) import
them from here, so neither depends on the other.
"""

from __future__ import annotations

#: The three input streams, in the order features, gates and tables list them.
MODALITIES = ("text", "audio", "video")
#: The synthetic corpus's (and IEMOCAP 4-class's) emotion classes, in label_id order.
EMOTIONS = ("anger", "happiness", "neutral", "sadness")
#: ``crossmodal`` / ``concat`` / ``late`` / ``ensemble`` fuse; a modality name is unimodal.
FUSION_MODES = ("crossmodal", "concat", "late", "ensemble", *MODALITIES)
#: Fusion after cross-modal attention (see :class:`mer.models.config.FusionConfig`).
GATES = ("modality", "vector", "none")
#: ``classification`` (emotion classes) or ``regression`` (sentiment score in [-3, 3]).
TASKS = ("classification", "regression")
#: Labels beside the emotion class that a corpus may carry and a model may train on:
#: ``sentiment_score`` (a continuous sentiment score in [-3, 3], MOSI / MOSEI), ``sentiment_polarity``
#: (negative / neutral / positive, e.g. MELD's Sentiment; a score has one by its sign) and ``vad``
#: (valence, arousal and dominance ratings, IEMOCAP).
LABEL_KINDS = ("sentiment_score", "sentiment_polarity", "vad")
