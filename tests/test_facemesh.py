"""facemesh-65: MediaPipe's detector + FaceMesh (LiteRT) on a photographed face, seed 002's 65
features, masking of faceless frames and quarantine of faceless clips through the extract stage.

The face is scikit-image's ``data.astronaut()`` (Eileen Collins, NASA: public domain), moved,
scaled and rotated across frames; its mouth is opened / closed by warping the photo.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
import skimage.transform

from mer import extract, media
from mer.encoders import NAMED_SPECS, Encoder, build_encoder
from mer.encoders.facemesh import (
    FACEMESH_DIM,
    FEATURE_NAMES,
    MEDIAPIPE_VERSION,
    MODEL_FILES,
    Detections,
    FaceDetectorConfig,
    FaceMeshEncoder,
    decode_detections,
    facemesh_features,
    model_paths,
    ssd_anchors,
    weighted_nms,
)
from mer.features import FeatureStore
from mer.params import ExtractParams, VideoExtractParams
from tests.face_media import FRAME_SHAPE, astronaut_frame, write_mp4

REPO = Path(__file__).resolve().parents[1]
FEATURE = {name: i for i, name in enumerate(FEATURE_NAMES)}


@pytest.fixture(scope="module")
def encoder() -> FaceMeshEncoder:
    return FaceMeshEncoder.from_spec("facemesh-65")


def shift_jaw(photo: np.ndarray, landmarks: np.ndarray, pixels: float) -> np.ndarray:
    """The photo with everything below the lips moved down by ``pixels`` (> 0: the mouth opens, the
    gap is filled with a dark mouth cavity) or up (< 0: the lips close), tapering to 0 beyond the
    mouth corners, column by column with linear interpolation."""
    out = photo.copy()
    upper_inner, lower_inner = landmarks[13, 1], landmarks[14, 1]
    lip_line = upper_inner if pixels < 0 else (upper_inner + lower_inner) / 2
    left, right = landmarks[61, 0], landmarks[291, 0]
    center, half = (left + right) / 2, (right - left) / 2 * 1.3
    rows = np.arange(photo.shape[0], dtype=float)
    for x in range(int(center - half), int(center + half) + 2):
        source = rows - pixels * max(0.0, 1 - ((x - center) / half) ** 2)
        below = rows >= lip_line
        gap = below & (source < lip_line)
        moved = below & ~gap & (source <= photo.shape[0] - 1)
        start = np.floor(source[moved]).astype(int)
        weight = (source[moved] - start)[:, None]
        column = photo[:, x].astype(float)
        mixed = column[start] * (1 - weight) + column[np.minimum(start + 1, photo.shape[0] - 1)] * weight
        out[moved, x] = np.round(mixed).astype(np.uint8)
        out[gap, x] = (60, 20, 25)
    return out


# ---------------------------------------------------------------------------------------------
# The graph's pieces
# ---------------------------------------------------------------------------------------------


def test_anchors_follow_the_short_range_graph():
    """896 anchors: a 16 x 16 map with 2 anchors per cell (stride 8), then an 8 x 8 map with 6
    (three stride-16 layers x 2), centres at (cell + 0.5) / cells, fixed size 1."""
    anchors = ssd_anchors()
    assert anchors.shape == (896, 4)
    assert np.all(anchors[:, 2:] == 1.0)
    fine, coarse = anchors[:512].reshape(16, 16, 2, 4), anchors[512:].reshape(8, 8, 6, 4)
    expected_fine = (np.arange(16) + 0.5) / 16
    assert np.allclose(fine[0, :, 0, 0], expected_fine) and np.allclose(fine[:, 0, 1, 1], expected_fine)
    expected_coarse = (np.arange(8) + 0.5) / 8
    assert np.allclose(coarse[3, :, 5, 0], expected_coarse) and np.allclose(
        coarse[:, 2, 0, 1], expected_coarse
    )
    assert np.all(coarse == coarse[:, :, :1])  # the 6 anchors of a cell coincide
    # a model with another anchor count is refused
    with pytest.raises(ValueError, match="anchors for a model with 900 boxes"):
        ssd_anchors(FaceDetectorConfig(num_boxes=900))


def test_decoding_scales_offsets_by_the_anchor_and_nms_merges_by_score():
    anchors = ssd_anchors()
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -5.0, np.float32)
    # anchor 600 (8 x 8 map): box centre +6.4 px, 32 px wide; keypoint 2 at -12.8 px in x
    anchor = anchors[600]
    regressors[600, :4] = [6.4, 0.0, 32.0, 16.0]
    regressors[600, 4 + 2 * 2] = -12.8
    logits[600] = 2.0
    regressors[601] = regressors[600] + [1.28, 0, 0, 0, *[0] * 12]  # the same anchor cell, shifted
    logits[601] = 0.5
    logits[602] = 0.1  # sigmoid 0.525 >= 0.5, but a box of size 0: no overlap with the others
    found = decode_detections(regressors, logits, anchors)
    assert len(found) == 3
    first = np.flatnonzero(np.isclose(found.scores, 1 / (1 + np.exp(-2.0))))[0]
    center = anchor[:2] + np.array([6.4 / 128, 0.0])
    half_size = np.array([0.125, 0.0625])  # (32 / 128, 16 / 128) / 2
    assert np.allclose(found.boxes[first], np.concatenate([center - half_size, center + half_size]))
    assert np.allclose(found.keypoints[first, 2], anchor[:2] + np.array([-0.1, 0.0]))
    assert np.allclose(found.keypoints[first, 0], anchor[:2])
    merged = weighted_nms(found)
    assert len(merged) == 2 and merged.scores[0] == found.scores[first]
    weights = np.array([1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-0.5))])
    expected_x = (weights * [center[0], center[0] + 0.01]).sum() / weights.sum()
    assert np.isclose((merged.boxes[0, 0] + merged.boxes[0, 2]) / 2, expected_x)
    nothing = decode_detections(regressors, np.full(896, -5.0), anchors)
    assert len(nothing) == 0 and len(weighted_nms(nothing)) == 0
    assert isinstance(
        weighted_nms(Detections(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))), Detections
    )


def test_makefile_pins_the_same_models_as_the_code():
    """`make setup` fetches exactly the files the encoder accepts (one version, two sha256)."""
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^MEDIAPIPE_VERSION := {re.escape(MEDIAPIPE_VERSION)}$", makefile, re.M)
    pinned = dict(re.findall(r"face_\w+/(\w+\.tflite)=([0-9a-f]{64})", makefile))
    assert pinned == dict(MODEL_FILES.values())


def test_missing_or_different_model_files_are_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_MEDIAPIPE_DIR", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"face_detection_short_range\.tflite is missing; run `make setup`"
    ):
        FaceMeshEncoder.from_spec("facemesh-65")
    for name, _ in MODEL_FILES.values():
        (tmp_path / name).write_bytes(b"not the model")
    with pytest.raises(ValueError, match=r"has sha256 .* expected bbff11ce.*delete it and run `make setup`"):
        model_paths()


def test_registered_as_a_video_spec(encoder):
    assert NAMED_SPECS["facemesh-65"] == ("video", FaceMeshEncoder)
    assert isinstance(encoder, Encoder) and encoder.info.model == "facemesh-65"
    assert encoder.info.extra["model_sha256"] == dict(MODEL_FILES.values())
    with pytest.raises(ValueError, match="'facemesh-65' is an video encoder, not a audio one"):
        build_encoder("audio", "facemesh-65")
    assert ExtractParams(video=VideoExtractParams(model="facemesh-65")).video.model == "facemesh-65"


# ---------------------------------------------------------------------------------------------
# On a photographed face
# ---------------------------------------------------------------------------------------------


def test_moved_scaled_rotated_face_gives_the_same_finite_features_on_every_frame(encoder, tmp_path):
    """An mp4 of the face moved, scaled (0.8-1.3x) and rotated (+-0.3 rad), decoded as the extract
    stage decodes video: a face on every frame, and features that describe the face, not where it
    is: only head_roll follows the rotation."""
    moves = [(1.0, (128, 96), 0.0), (0.8, (140, 80), 0.0), (1.3, (120, 100), 0.0),
             (1.1, (100, 90), 0.3), (0.9, (150, 105), -0.3), (1.2, (128, 100), 0.15)]  # fmt: skip
    path = write_mp4(tmp_path / "astronaut.mp4", np.stack([astronaut_frame(*move) for move in moves]))
    row = {"utt_id": "a", "video_path": str(path), "video_start": None, "video_end": None}
    frames, _ = extract.load_input(row, "video", ExtractParams(video=VideoExtractParams(frames_per_clip=6)))
    assert frames.shape == (6, *FRAME_SHAPE, 3)  # full resolution: nothing resized before FaceMesh
    (features,) = encoder.encode([frames])
    assert features.shape == (6, FACEMESH_DIM) and features.dtype == np.float32
    assert np.isfinite(features).all()
    roll = features[:, FEATURE["head_roll"]]
    assert np.allclose(roll - roll[0], [rotation for _, _, rotation in moves], atol=0.06)
    others = np.delete(features, FEATURE["head_roll"], axis=1)
    assert np.abs(others - others[0]).max() < 0.06
    # a face: the mouth is about half the face width, the eyes a fifth, both of equal size
    assert 0.4 < features[:, FEATURE["mouth_width"]].mean() < 0.6
    assert np.allclose(
        features[:, FEATURE["eye_width_right"]], features[:, FEATURE["eye_width_left"]], atol=0.02
    )
    assert encoder.info.weights == "pretrained" and encoder.info.hidden_dim == 65


def test_open_mouth_has_a_larger_mouth_height_than_a_closed_one(encoder):
    """Warping the photo's jaw moves the landmark model's inner-lip points: open > closed in
    mouth_height (the 13-14 gap), while the eyes do not change."""
    photo = skimage.data.astronaut()
    landmarks = encoder.landmarker(photo).landmarks
    closed, opened = shift_jaw(photo, landmarks, -8), shift_jaw(photo, landmarks, 20)
    clips = [np.stack([astronaut_frame(s, c, photo=image) for s, c in ((1.0, (128, 96)), (1.2, (120, 90)))])
             for image in (closed, opened)]  # fmt: skip
    closed_features, open_features = encoder.encode(clips)
    mouth, eye = FEATURE["mouth_height"], FEATURE["eye_width_right"]
    assert closed_features[:, mouth].max() < 0.05
    assert open_features[:, mouth].min() > 0.1
    assert (
        open_features[:, FEATURE["mouth_aspect"]].min()
        > 2 * closed_features[:, FEATURE["mouth_aspect"]].max()
    )
    assert np.abs(open_features[:, eye] - closed_features[:, eye]).max() < 0.02
    # and the landmarks themselves moved apart in the frame
    gap_closed = np.diff(encoder.landmarker(closed).landmarks[[13, 14], 1])[0]
    gap_open = np.diff(encoder.landmarker(opened).landmarks[[13, 14], 1])[0]
    assert gap_open > 3 * gap_closed > 0


def test_features_are_invariant_to_position_scale_and_in_plane_rotation():
    landmarks = np.random.default_rng(1).normal(size=(468, 3)) * 20
    moved = landmarks.copy()
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved[:, :2] = 2.5 * landmarks[:, :2] @ rotation.T + [300, -40]
    changed = ~np.isclose(facemesh_features(moved), facemesh_features(landmarks), atol=1e-4)
    assert [FEATURE_NAMES[i] for i in np.flatnonzero(changed)] == ["head_roll"]
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 65


# ---------------------------------------------------------------------------------------------
# Masking and quarantine through the extract stage
# ---------------------------------------------------------------------------------------------


def test_faceless_frames_are_dropped_and_faceless_clips_quarantined_by_extract(tmp_path):
    """The real extract path: a face clip with two faceless frames keeps its 4 face frames, a
    noise clip and a flat-colour clip are quarantined with "no face" (alone: the other clips of
    their batch are stored), and meta.json identifies the weights by the .tflite files."""
    rng = np.random.default_rng(0)
    face = np.stack(
        [astronaut_frame(s, c) for s, c in ((1.0, (128, 96)), (0.9, (110, 90)), (1.1, (140, 100)))]
    )
    flat = np.full((6, *FRAME_SHAPE, 3), 90, np.uint8)
    noise = rng.integers(0, 256, size=(6, *FRAME_SHAPE, 3), dtype=np.uint8)
    mixed = np.concatenate([face[:2], flat[:1], face[2:], noise[:1], face[:1]])  # 4 faces of 6
    clips = {"face_a": np.concatenate([face, face]), "mixed": mixed, "noise": noise, "flat": flat,
             "face_b": np.concatenate([face[::-1], face])}  # fmt: skip
    rows = []
    for utt_id, frames in clips.items():
        path = write_mp4(tmp_path / f"{utt_id}.mp4", frames)
        rows.append({"utt_id": utt_id, "video_path": str(path), "duration": 0.6})
    table = pd.DataFrame(rows)
    cfg = ExtractParams(video=VideoExtractParams(model="facemesh-65", frames_per_clip=6), num_workers=0,
                        device="cpu", batch_size=8)  # fmt: skip
    encoder = build_encoder("video", "facemesh-65")
    record = extract.extract_modality(table, "video", cfg, tmp_path / "features", encoder=encoder)

    assert record["n_stored"] == 3 and record["n_quarantined"] == 2
    quarantine = pd.read_csv(tmp_path / "features" / "quarantine.csv")
    assert sorted(quarantine["utt_id"]) == ["flat", "noise"]
    assert quarantine["reason"].str.contains("no face in any of the 6 frames").all()
    store = FeatureStore(tmp_path / "features")
    assert {u: np.asarray(store[u]).shape for u in store.ids} == {
        "face_a": (6, 65), "mixed": (4, 65), "face_b": (6, 65)}  # fmt: skip
    assert np.isfinite(np.asarray(store["mixed"], np.float32)).all()
    # the batch was retried item by item after the faceless clips: the models ran once per clip
    assert encoder.counts == {"clips": 5, "frames": 30, "frames_with_face": 16, "clips_without_face": 2}
    meta = (tmp_path / "features" / "meta.json").read_text()
    assert '"weights": "pretrained"' in meta and '"hidden_dim": 65' in meta
    assert extract.weights_hash(encoder) != "none"
    assert f'"weights_hash": "{extract.weights_hash(encoder)}"' in meta
    # stored = the encoder's own output on the decoded clip, in the shards' float16
    direct = encoder.encode([media.read_video_frames(rows[1]["video_path"], 6)])[0]
    assert np.allclose(np.asarray(store["mixed"], np.float32), direct, atol=2e-3)
