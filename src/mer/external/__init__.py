"""Released feature sets as a feature source: ``extract.<modality>.model: external:<path>``.

Most CMU-MOSI / CMU-MOSEI users work from features someone else extracted, often without the
videos. With an ``external:`` spec the extract stage builds no encoder: it reads the file, matches
its entries to the corpus role's utterances and writes mer's normal ragged shards and
``meta.json`` (``weights: "external"``, the file's sha256, format and feature dim), so every later
stage treats them like extracted features. Two formats, chosen by suffix
(:data:`mer.params.EXTERNAL_FORMATS`):

- ``.csd``: a CMU-MultimodalSDK computational sequence (:mod:`mer.external.csd`), e.g.
  ``CMU_MOSEI_VisualOpenFace2.csd``, ``CMU_MOSEI_COVAREP.csd``,
  ``CMU_MOSEI_TimestampedWordVectors.csd``;
- ``.pkl``: an MMSA processed pickle (:mod:`mer.external.mmsa_pickle`), e.g.
  ``Processed/unaligned_50.pkl``, whose ``text`` / ``audio`` / ``vision`` arrays serve the
  text / audio / video modalities.

:func:`mer.external.importer.import_features` does the work (one corpus role x modality; the
extract stage calls it for its role, and so can any stage that picks extractors per role).

Data problems never pass silently. Per utterance, quarantined with the reason (``quarantine.csv``,
as for media): no entry in the file, a clip interval outside the video's feature intervals, a
features / intervals or stored-length mismatch, no finite frame, values beyond float16. Per file:
entries no utterance matches are counted and listed (``unmatched_features.csv``, ``meta.json``).
Non-finite frames (COVAREP writes ``-inf`` log energies in silent frames) are *dropped* and
counted (frames and utterances in ``meta.json``): they are frames without a measurement, and
MMSA's own loader zeroes them, which would put an arbitrary value into the sequence; an utterance
left with no finite frame is quarantined.

This package module is light (no h5py): the metadata stage uses it to learn which modalities come
from released features, so the MMSA loader can build its table from ``label.csv`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mer.params import EXTERNAL_PREFIX, ExtractParams
from mer.vocab import MODALITIES

#: the metadata-table media modalities: with all of them external a corpus needs no media files
MEDIA_MODALITIES = ("audio", "video")


class ExternalFormatError(ValueError):
    """The released feature file is not in the format its suffix says (the stage fails)."""


@dataclass(frozen=True)
class Utterance:
    """One metadata row as the readers match it.

    Attributes:
        utt_id (str): mer's id (MMSA: ``{video_id}_{clip_id}``).
        video (str or None): the recording it was cut from (``video_id``; IEMOCAP's ``dialog``).
        clip (str or None): its segment id within the video (``clip_id``), if the corpus has one.
        start / end (float or None): its interval in the video, seconds (``video_start`` /
            ``video_end``, else ``start`` / ``end``); None when the corpus has none (MMSA).
    """

    utt_id: str
    video: str | None = None
    clip: str | None = None
    start: float | None = None
    end: float | None = None


class FeatureSource(Protocol):
    """A released feature file opened for matching (:class:`mer.external.csd.CsdSource`,
    :class:`mer.external.mmsa_pickle.MmsaPickleSource`); the importer asks it for one utterance
    at a time, so a corpus's features are never all in memory.

    Attributes:
        feature_dim (int): D.
        source (dict): what the file says about itself (root name, description, key read, ...).
        counts (dict[str, int]): reader-specific counts, kept in ``meta.json``.
    """

    feature_dim: int
    source: dict[str, Any]
    counts: dict[str, int]

    def match(self, utterance: Utterance) -> np.ndarray | str:
        """The utterance's raw ``(T, D)`` frames, or why it has none (its quarantine reason)."""
        ...

    def unmatched(self) -> list[str]:
        """The file's entries no :meth:`match` call used so far (sorted)."""
        ...


def is_external(spec: str) -> bool:
    """Whether a model spec names a released feature file.

    >>> is_external("external:MOSI/Processed/unaligned_50.pkl"), is_external("acoustic-74")
    (True, False)
    """
    return spec.startswith(EXTERNAL_PREFIX)


def external_modalities(cfg: ExtractParams) -> tuple[str, ...]:
    """The modalities whose ``extract.<modality>.model`` is an ``external:`` spec.

    >>> external_modalities(ExtractParams())
    ()
    """
    return tuple(m for m in MODALITIES if is_external(getattr(cfg, m).model))


def external_by_role(cfg: ExtractParams) -> dict[str, tuple[str, ...]]:
    """:func:`external_modalities` per corpus role, each under its own settings
    (:meth:`~mer.params.ExtractParams.for_corpus`: the target's ``extract.target`` overrides), so
    a features-only source does not make the target features-only too.

    >>> cfg = ExtractParams(target={"video": {"model": "facemesh-65"}})
    >>> external_by_role(cfg)
    {'source': (), 'target': ()}
    """
    return {role: external_modalities(cfg.for_corpus(role)) for role in ("source", "target")}


def media_needed(external: Iterable[str], modalities: Iterable[str] = MODALITIES) -> bool:
    """Whether a corpus's media files are read: some audio / video modality among ``modalities``
    (``model.modalities``) is extracted from media rather than read from released features.

    >>> media_needed(["audio", "video"]), media_needed(["video"], ["text", "audio"])
    (False, True)
    """
    return bool((set(modalities) & set(MEDIA_MODALITIES)) - set(external))
