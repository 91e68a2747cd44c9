"""Label maps: each corpus's native labels onto the class set an experiment trains on.

``corpora.<name>.labels`` names one map below. A map fixes the class names and their order
(``label_id`` = index), and which native labels feed each class; native labels it leaves out
are quarantined as ``label_outside_map`` and counted, never silently dropped.

``shared4`` exists for every categorical corpus and maps onto the same four classes
(``SHARED4``), so two corpora with ``shared4`` can be used as transfer source and target
(e.g. IEMOCAP -> CREMA-D on anger / happiness / neutral / sadness, seed 003).

>>> m = label_map("iemocap", "4class")
>>> m.classes, m.map("exc"), m.map("fru")
(('anger', 'happiness', 'neutral', 'sadness'), 'happiness', None)
>>> label_map("mosi", "7class").map(-2.6)
'strongly_negative'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SHARED4 = ("anger", "happiness", "neutral", "sadness")
SENTIMENT7 = (
    "strongly_negative", "negative", "weakly_negative", "neutral", "weakly_positive", "positive",
    "strongly_positive",
)  # fmt: skip


@dataclass(frozen=True)
class LabelMap:
    """Native label -> class name (``None``: outside the map).

    Attributes:
        classes: class names in ``label_id`` order.
        native: native label -> class name, for categorical corpora.
        score_bins: for sentiment-score corpora (MOSI / MOSEI): ``"2"``, ``"3"`` or ``"7"``.
    """

    classes: tuple[str, ...]
    native: dict[str, str] = field(default_factory=dict)
    score_bins: str | None = None

    def map(self, raw: str | float) -> str | None:
        if self.score_bins is not None:
            return _bin_score(float(raw), self.score_bins)
        return self.native.get(str(raw))

    def label_id(self, name: str) -> int:
        return self.classes.index(name)


def _bin_score(score: float, bins: str) -> str | None:
    if math.isnan(score):
        return None
    if bins == "2":  # the "has0" convention: negative vs non-negative
        return "negative" if score < 0 else "non_negative"
    if bins == "3":
        return "negative" if score < 0 else ("neutral" if score == 0 else "positive")
    return SENTIMENT7[round(min(max(score, -3.0), 3.0)) + 3]  # Acc-7: rounded, clipped


def _categorical(classes: tuple[str, ...], native: dict[str, str]) -> LabelMap:
    assert set(native.values()) <= set(classes), (classes, native)
    return LabelMap(classes, native)


LABEL_MAPS: dict[str, dict[str, LabelMap]] = {
    "iemocap": {
        # hap + exc merged: the 5,531-utterance 4-class protocol
        "4class": _categorical(
            SHARED4,
            {"ang": "anger", "hap": "happiness", "exc": "happiness", "neu": "neutral", "sad": "sadness"},
        ),
        "6class": _categorical(
            ("happiness", "sadness", "neutral", "anger", "excited", "frustrated"),
            {
                "hap": "happiness",
                "sad": "sadness",
                "neu": "neutral",
                "ang": "anger",
                "exc": "excited",
                "fru": "frustrated",
            },
        ),
        "shared4": _categorical(
            SHARED4,
            {"ang": "anger", "hap": "happiness", "exc": "happiness", "neu": "neutral", "sad": "sadness"},
        ),
    },
    "meld": {
        "7class": _categorical(
            ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
            {e: e for e in ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")},
        ),
        "sentiment3": _categorical(
            ("negative", "neutral", "positive"),
            {"negative": "negative", "neutral": "neutral", "positive": "positive"},
        ),
        "shared4": _categorical(
            SHARED4, {"anger": "anger", "joy": "happiness", "neutral": "neutral", "sadness": "sadness"}
        ),
    },
    "cremad": {
        "6class": _categorical(
            ("anger", "disgust", "fear", "happiness", "neutral", "sadness"),
            {
                "ANG": "anger",
                "DIS": "disgust",
                "FEA": "fear",
                "HAP": "happiness",
                "NEU": "neutral",
                "SAD": "sadness",
            },
        ),
        "shared4": _categorical(
            SHARED4, {"ANG": "anger", "HAP": "happiness", "NEU": "neutral", "SAD": "sadness"}
        ),
    },
    "ravdess": {
        "8class": _categorical(
            ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
            {
                f"{i:02d}": name
                for i, name in enumerate(
                    ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"), start=1
                )
            },
        ),
        "shared4": _categorical(
            SHARED4, {"01": "neutral", "03": "happiness", "04": "sadness", "05": "anger"}
        ),
    },
}
for _corpus in ("mosi", "mosei"):
    LABEL_MAPS[_corpus] = {
        "2class": LabelMap(("negative", "non_negative"), score_bins="2"),
        "3class": LabelMap(("negative", "neutral", "positive"), score_bins="3"),
        "7class": LabelMap(SENTIMENT7, score_bins="7"),
    }


def label_map(corpus: str, name: str) -> LabelMap:
    """The map ``name`` of ``corpus``; a ValueError lists the valid names."""
    if corpus not in LABEL_MAPS:
        raise ValueError(f"no label maps for corpus {corpus!r}; known: {sorted(LABEL_MAPS)}")
    maps = LABEL_MAPS[corpus]
    if name not in maps:
        raise ValueError(
            f"corpora.{corpus}.labels: {name!r} is not a label map of {corpus}; use one of {sorted(maps)}"
        )
    return maps[name]
