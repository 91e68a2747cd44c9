"""MMSA processed pickles (``Processed/unaligned_50.pkl``, ``aligned_50.pkl``) matched to mer's
utterances.

The pickle is a dict of splits ``train`` / ``valid`` / ``test``, each a dict of arrays over its N
utterances (as ``MMSA/data_loader.py`` reads them)::

    id                 (N,)   "video$_$clip"
    text               (N, L, D_text)   text features (BERT / GloVe vectors per token)
    text_bert          (N, 3, L)        BERT input ids, attention mask, segment ids: *not* features
    audio              (N, T_a, D_a)    COVAREP / librosa frames, zero-padded
    vision             (N, T_v, D_v)    Facet / OpenFace frames, zero-padded
    audio_lengths / vision_lengths      (N,) real frames (unaligned pickles)
    raw_text, regression_labels, classification_labels, annotations

Modality text / audio / video reads ``text`` / ``audio`` / ``vision``. Each utterance is trimmed to
its real length: ``audio_lengths`` / ``vision_lengths``; for text the real tokens, the attention
mask of ``text_bert`` (row 1) when present; where a length array is absent (aligned pickles: audio
and vision follow the text tokens) the text length, else the rows up to the last non-zero one.
``id`` ``video$_$clip`` is mer's ``{video}_{clip}``. A stored length of 0 or beyond the array
is a length mismatch (quarantined); an id twice in the file is quarantined as ambiguous.

A pickle runs code when loaded: read only files you trust (your own MMSA download).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np

from mer.external import ExternalFormatError, Utterance

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
#: mer modality -> the pickle's feature key and its length key
KEYS = {"text": ("text", None), "audio": ("audio", "audio_lengths"), "video": ("vision", "vision_lengths")}
ID_SEPARATOR = "$_$"


def mer_id(mmsa_id: str) -> str:
    """mer's utt_id for an MMSA id.

    >>> mer_id("03bSnISJMiM$_$1")
    '03bSnISJMiM_1'
    """
    return str(mmsa_id).replace(ID_SEPARATOR, "_")


def _trailing_zero_length(array: np.ndarray) -> int:
    """Rows up to the last row with a non-zero value (MMSA pads with zero rows at the end)."""
    nonzero = np.flatnonzero(np.any(array != 0, axis=1))
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


def _text_lengths(split: dict, name: str, path: Path) -> np.ndarray | None:
    """Real tokens per utterance from ``text_bert``'s attention mask, or None without it."""
    if "text_bert" not in split:
        return None
    bert = np.asarray(split["text_bert"])
    if bert.ndim != 3 or bert.shape[1] != 3:
        raise ExternalFormatError(
            f"{path}: {name}['text_bert'] has shape {bert.shape}, expected (N, 3, L): ids, mask, segments"
        )
    return bert[:, 1, :].sum(axis=1).astype(np.int64)


def load_pickle(path: str | Path) -> dict:
    """The pickle's split dicts, checked to be MMSA's layout.

    Raises:
        ExternalFormatError: not a pickle, or none of the splits ``train`` / ``valid`` / ``test``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
        raise ExternalFormatError(f"{path}: not a readable MMSA pickle ({error})") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(s), dict) for s in SPLITS):
        keys = list(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise ExternalFormatError(f"{path}: expected MMSA's dict of splits {list(SPLITS)}, found {keys}")
    return data


class MmsaPickleSource:
    """An MMSA pickle's ``modality`` features indexed by mer id (see the module doc); a
    :class:`mer.external.FeatureSource`. The arrays stay as loaded; :meth:`match` returns views.

    Raises:
        ExternalFormatError: the feature key is missing (for text: only ``text_bert``, which holds
            token ids), or a split's arrays disagree in length or dim.
    """

    def __init__(self, path: str | Path, modality: str) -> None:
        self.path = path = Path(path)
        data = load_pickle(path)
        key, length_key = KEYS[modality]
        # mer id -> [(split, features, length or why the length is unusable)]
        self.entries: dict[str, list[tuple[str, np.ndarray, int | str]]] = {}
        dims: set[int] = set()
        self.counts = {"length_from_array": 0, "length_from_text": 0, "length_from_zero_padding": 0}
        for name in SPLITS:
            split = data.get(name)
            if not isinstance(split, dict):
                continue
            if key not in split:
                hint = ""
                if modality == "text" and "text_bert" in split:
                    hint = (
                        "; 'text_bert' holds BERT token ids and masks, not features: use a pickle with "
                        "'text' features, or a text encoder on label.csv's text (extract.text.model)"
                    )
                raise ExternalFormatError(f"{path}: {name} has no {key!r} array (keys {sorted(split)}){hint}")
            if "id" not in split:
                raise ExternalFormatError(f"{path}: {name} has no 'id' array")
            features = np.asarray(split[key])
            ids = [mer_id(i) for i in np.asarray(split["id"]).tolist()]
            if features.ndim != 3 or len(features) != len(ids):
                raise ExternalFormatError(
                    f"{path}: {name}[{key!r}] has shape {features.shape}, expected ({len(ids)}, frames, dim)"
                )
            dims.add(int(features.shape[2]))
            width = features.shape[1]
            text_lengths = _text_lengths(split, name, path)
            lengths, source = None, "length_from_zero_padding"
            if length_key and length_key in split:
                lengths, source = np.asarray(split[length_key]).astype(np.int64), "length_from_array"
            elif text_lengths is not None and (
                modality == "text" or width == np.shape(split["text_bert"])[2]
            ):
                lengths, source = text_lengths, "length_from_text"  # aligned: one frame per token
            if lengths is not None and len(lengths) != len(ids):
                raise ExternalFormatError(f"{path}: {name} has {len(lengths)} lengths for {len(ids)} ids")
            what = {"length_from_array": length_key, "length_from_text": "text_bert's mask"}.get(source)
            for i, utt_id in enumerate(ids):
                length = int(lengths[i]) if lengths is not None else _trailing_zero_length(features[i])
                usable: int | str = length
                if not 1 <= length <= width:
                    usable = (
                        f"length mismatch: {what} says {length} frames, the {key!r} array holds {width}"
                        if what
                        else f"no non-zero {key!r} frame in {path.name}"
                    )
                else:
                    self.counts[source] += 1
                self.entries.setdefault(utt_id, []).append((name, features[i], usable))
        if len(dims) > 1:
            raise ExternalFormatError(
                f"{path}: the splits' {key!r} arrays have different dims {sorted(dims)}"
            )
        self.feature_dim = dims.pop() if dims else 0
        self.used: set[str] = set()
        self.source = {"key": key, "splits": [s for s in SPLITS if isinstance(data.get(s), dict)],
                       "entries": sum(len(v) for v in self.entries.values())}  # fmt: skip

    def __enter__(self) -> MmsaPickleSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.entries = {}

    def match(self, utterance: Utterance) -> np.ndarray | str:
        """The utterance's frames trimmed to its length, or why it has none."""
        matches = self.entries.get(utterance.utt_id)
        if not matches:
            clip = utterance.clip
            mmsa_id = f"{utterance.video}{ID_SEPARATOR}{clip}" if clip else utterance.utt_id
            return f"no features in {self.path.name} (no id {mmsa_id!r})"
        self.used.add(utterance.utt_id)
        if len(matches) > 1:
            splits = [name for name, _, _ in matches]
            return f"ambiguous: its id is {len(matches)} times in {self.path.name} (splits {splits})"
        _, features, usable = matches[0]
        return usable if isinstance(usable, str) else features[:usable]

    def unmatched(self) -> list[str]:
        return sorted(set(self.entries) - self.used)
