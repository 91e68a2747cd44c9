"""CMU-MultimodalSDK computational sequences (``.csd``) matched to mer's utterances.

A ``.csd`` file is HDF5 with one top-level group per sequence (its "root name")::

    <root name>/data/<entry>/features    (T, D) float, one row per frame / word / phone
    <root name>/data/<entry>/intervals   (T, 2) float, each row's [start, end] in seconds
    <root name>/metadata/<key>           (1,) str: "root name", "computational sequence
                                         description", "dataset name", "dimension names", ...

as ``mmsdk.mmdatasdk.computational_sequence.file_ops.writeCSD`` writes it. The released sequences
(``CMU_MOSEI_COVAREP.csd``, ``CMU_MOSEI_VisualOpenFace2.csd``, ...) have one entry per *video*,
intervals on the video's clock. After ``mmdataset.align(<labels>)`` the SDK names an entry per
*segment* ``f"{video}[{i}]"`` (``i`` the segment's row in the reference sequence, from 0), with
the features of the frames that overlap the segment.

An utterance gets its frames, first match wins:

1. a segmented entry: ``utt_id``, ``{video}[{clip}]``, ``{video}_{clip}`` or ``{video}$_${clip}``
   (MMSA's id) -> all of its frames;
2. the video's entry and the utterance's interval -> the frames whose interval overlaps it by
   more than the SDK's epsilon (as the SDK's ``__intersect_and_copy``); none -> quarantined ("clip
   interval outside the video's feature intervals"); one partly outside is kept and counted;
3. the video's entry, no interval (MMSA's label.csv has no times): the whole video if it is the
   video's only utterance, else quarantined (a segmented sequence is needed).

``{video}[{clip}]`` matches MMSA's ``clip_id`` only where the two numberings agree: the SDK
numbers a video's segments from 0 in the order of the reference sequence's rows, MMSA's MOSI
clip ids count from 1. Re-key such a file to mer's utt_ids (``{video}_{clip}``) to be sure.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from mer.external import ExternalFormatError, Utterance

logger = logging.getLogger(__name__)

EPSILON = 1e-5  # the SDK's alignment epsilon (10e-6 in mmsdk.mmdatasdk.dataset)


def segment_keys(utterance: Utterance) -> list[str]:
    """The entry names an already segmented sequence may give the utterance, in match order.

    >>> segment_keys(Utterance("vid_3", video="vid", clip="3"))
    ['vid_3', 'vid[3]', 'vid$_$3']
    """
    keys = [utterance.utt_id]
    if utterance.video and utterance.clip:
        v, c = utterance.video, utterance.clip
        keys += [f"{v}[{c}]", f"{v}_{c}", f"{v}$_${c}"]
    return list(dict.fromkeys(keys))


def _text(value: object) -> str:
    value = value[0] if isinstance(value, np.ndarray) and value.shape else value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def open_sequence(handle: h5py.File, path: Path) -> tuple[h5py.Group, dict[str, str]]:
    """The file's one sequence group's ``data`` group and its metadata as strings.

    Raises:
        ExternalFormatError: not one top-level group, or no ``data`` group in it.
    """
    roots = list(handle.keys())
    if len(roots) != 1 or not isinstance(handle[roots[0]], h5py.Group):
        raise ExternalFormatError(
            f"{path}: expected one computational sequence (one top-level HDF5 group), found {roots[:5]}"
        )
    root = handle[roots[0]]
    if "data" not in root or not isinstance(root["data"], h5py.Group):
        raise ExternalFormatError(f"{path}: group {roots[0]!r} has no 'data' group; not a .csd sequence")
    metadata = {}
    if "metadata" in root and isinstance(root["metadata"], h5py.Group):
        for key, dataset in root["metadata"].items():
            if isinstance(dataset, h5py.Dataset):
                metadata[key] = _text(dataset[()])
    metadata.setdefault("root name", roots[0])
    return root["data"], metadata


class CsdSource:
    """An open computational sequence matching utterances to its entries (see the module doc);
    a :class:`mer.external.FeatureSource`. Use as a context manager (closes the HDF5 file).

    Args:
        path: the ``.csd`` file.
        utterances: every utterance that will be matched (to know which videos have one only).

    Raises:
        ExternalFormatError: not a computational sequence, or its features are not numbers (a
            words / phones sequence: use the word-vector one).
    """

    def __init__(self, path: str | Path, utterances: list[Utterance]) -> None:
        self.path = Path(path)
        try:
            self.handle = h5py.File(self.path, "r")
        except OSError as error:
            raise ExternalFormatError(f"{self.path}: not an HDF5 computational sequence ({error})") from None
        try:
            self.data, metadata = open_sequence(self.handle, self.path)
            self.entries = set(self.data.keys())
            self.per_video: dict[str, int] = {}
            for utterance in utterances:
                if utterance.video:
                    self.per_video[utterance.video] = self.per_video.get(utterance.video, 0) + 1
            self.used: set[str] = set()
            self._cached: tuple[str, tuple[np.ndarray, np.ndarray] | str] | None = None
            self.counts = {"segmented_matches": 0, "interval_matches": 0, "whole_video_matches": 0,
                           "clips_partly_outside": 0}  # fmt: skip
            # one dim per sequence: the first usable entry's (in name order) is the sequence's
            first = next((e for e in map(self._entry, sorted(self.entries)) if not isinstance(e, str)), None)
            self.feature_dim = int(first[0].shape[1]) if first is not None else 0
            kept = {k: v for k, v in metadata.items() if len(v) <= 2000}
            self.source = {"metadata": kept, "entries": len(self.entries)}
        except BaseException:
            self.handle.close()
            raise

    def __enter__(self) -> CsdSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.handle.close()

    def _entry(self, key: str) -> tuple[np.ndarray, np.ndarray] | str:
        """(features, intervals) of an entry, or why they are unusable; the last one read is
        kept, as the utterances of one video come one after another (ids sort by video)."""
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._read(key))
        return self._cached[1]

    def _read(self, key: str) -> tuple[np.ndarray, np.ndarray] | str:
        group = self.data[key]
        if not isinstance(group, h5py.Group) or "features" not in group:
            return f"entry {key!r} has no features"
        features = group["features"][()]
        if not np.issubdtype(features.dtype, np.number):
            raise ExternalFormatError(
                f"{self.path}: entry {key!r} holds {features.dtype} features, not numbers (a words / "
                "phones sequence); use a feature sequence, e.g. the TimestampedWordVectors one"
            )
        intervals = group["intervals"][()] if "intervals" in group else None
        if features.ndim != 2:
            return f"entry {key!r}: features of shape {features.shape}, expected (frames, dim)"
        if intervals is None or intervals.ndim != 2 or intervals.shape[1] != 2:
            shape = None if intervals is None else intervals.shape
            return f"entry {key!r}: intervals of shape {shape}, expected (frames, 2)"
        if len(intervals) != len(features):
            rows = f"{len(features)} feature rows but {len(intervals)} intervals"
            return f"length mismatch in entry {key!r}: {rows}"
        return features, intervals.astype(np.float64)

    def match(self, utterance: Utterance) -> np.ndarray | str:
        """The utterance's frames (a segmented entry, its interval of its video's entry, or its
        video's whole entry), or why it has none."""
        name = self.path.name
        key = next((k for k in segment_keys(utterance) if k in self.entries), None)
        mode = "segmented_matches"
        if key is None and utterance.video in self.entries:
            key = utterance.video
            mode = "interval_matches" if utterance.start is not None else "whole_video_matches"
        if key is None:
            tried = [*segment_keys(utterance), *([utterance.video] if utterance.video else [])]
            return f"no features in {name} (no entry {tried})"
        self.used.add(key)
        read = self._entry(key)
        if isinstance(read, str):
            return read
        features, intervals = read
        if mode == "whole_video_matches" and self.per_video.get(utterance.video, 0) > 1:
            return (
                f"{name} has one entry for video {key!r} and the metadata gives its "
                f"{self.per_video[utterance.video]} utterances no clip interval: use a sequence "
                "segmented per utterance (entries video[i], SDK align) or a corpus with clip times"
            )
        if mode == "interval_matches":
            start, end = utterance.start, utterance.end
            overlap = (intervals[:, 0] < end - EPSILON) & (intervals[:, 1] > start + EPSILON)
            first, last = np.nanmin(intervals[:, 0]), np.nanmax(intervals[:, 1])
            if not overlap.any():
                return (
                    f"clip interval [{start:.3f}, {end:.3f}] s outside the video's feature "
                    f"intervals [{first:.3f}, {last:.3f}] s in {name} (entry {key!r})"
                )
            step = float(np.nanmedian(intervals[:, 1] - intervals[:, 0]))
            if start < first - step - EPSILON or end > last + step + EPSILON:
                self.counts["clips_partly_outside"] += 1
                logger.warning(
                    "%s: clip [%.3f, %.3f] s extends beyond the video's feature intervals "
                    "[%.3f, %.3f] s in %s; kept the overlapping frames",
                    utterance.utt_id, start, end, first, last, name,
                )  # fmt: skip
            features = features[overlap]
        if features.shape[1] != self.feature_dim:
            dims = f"{features.shape[1]} of entry {key!r} differs from the sequence's {self.feature_dim}"
            return f"feature dim {dims}"
        self.counts[mode] += 1
        return features

    def unmatched(self) -> list[str]:
        return sorted(self.entries - self.used)
