"""MediaPipe FaceMesh landmarks turned into seed 002's 65 facial features per frame: the
``facemesh-65`` video encoder (:class:`FaceMeshEncoder`).

Per frame, as MediaPipe's ``FaceLandmarkFrontCpu`` graph with ``static_image_mode`` (every frame
detected on its own: mer samples ``frames_per_clip`` frames spread over an utterance, too far
apart for the graph's landmark tracking):

1. **Detect** (``face_detection_short_range.tflite``, BlazeFace): the whole frame letterboxed to
   128 x 128 in [-1, 1] (:func:`letterbox_roi`), 896 SSD anchors (:func:`ssd_anchors`) decode the
   16 regressors into a box + 6 keypoints (:func:`decode_detections`), sigmoid score >= 0.5,
   weighted NMS (:func:`weighted_nms`); the best face is kept (FaceMesh's ``max_num_faces=1``).
2. **Crop** (:func:`detection_to_roi`): the box squared on its long side, scaled 1.5 and rotated
   so the eye keypoints are level; warped to 192 x 192 in [0, 1] (:func:`warp_roi`).
3. **Landmarks** (``face_landmark.tflite``): 468 x (x, y, z) plus a face-presence logit; frames
   whose presence (sigmoid) is below 0.5 have no face. Landmarks are mapped back to frame pixels
   (:func:`project_landmarks`).
4. **Features** (:func:`facemesh_features`): 65 numbers per frame (:data:`FEATURE_NAMES`).

Each constant cites the MediaPipe graph it comes from (``mediapipe/modules/face_detection/`` and
``mediapipe/modules/face_landmark/``; mediapipe 0.10.x). The two ``.tflite`` files come from the
``mediapipe==0.10.21`` wheel (``make setup``; see the Makefile), are pinned by sha256
(:data:`MODEL_FILES`) and run with Google's LiteRT runtime (``ai-edge-litert``): mediapipe itself
is not installed (it needs numpy < 2).

Frames without a face are dropped from the clip's sequence (its mask), so a clip gives
``(T_face, 65)`` with ``T_face`` <= frames read; a clip with no face in any frame is rejected
(``ValueError("no face ...")``) and the extract stage quarantines that item alone.

Shape legend: F = frames, H x W = frame size, A = anchors (896), N = detections, K = detection
keypoints (6), L = landmarks (468), D = features (65).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mer.encoders.base import EncoderInfo

logger = logging.getLogger(__name__)

FACEMESH_SPEC = "facemesh-65"
FACEMESH_DIM = 65
MEDIAPIPE_VERSION = "0.10.21"
#: the model files taken from the mediapipe 0.10.21 wheel and their sha256 (the Makefile pins the
#: same values; tests/test_facemesh.py checks that both agree)
MODEL_FILES = {
    "detector": (
        "face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "landmarks": (
        "face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
}
MEDIAPIPE_DIR_ENV = "MER_MEDIAPIPE_DIR"


def mediapipe_dir() -> Path:
    """Where the ``.tflite`` files are: ``$MER_MEDIAPIPE_DIR``, else
    ``sys.prefix/share/mer/mediapipe`` (``.venv/share/mer/mediapipe``, filled by ``make setup``)."""
    override = os.environ.get(MEDIAPIPE_DIR_ENV)
    return Path(override) if override else Path(sys.prefix) / "share" / "mer" / "mediapipe"


def model_paths(directory: Path | None = None) -> dict[str, Path]:
    """The two model files, checked: present and with the pinned sha256.

    Raises:
        FileNotFoundError: a file is missing (the message names it and ``make setup``).
        ValueError: a file's sha256 differs from :data:`MODEL_FILES` (other weights would silently
            change every feature).
    """
    directory = mediapipe_dir() if directory is None else Path(directory)
    paths = {}
    for role, (name, expected) in MODEL_FILES.items():
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(
                f"facemesh-65: {path} is missing; run `make setup` (it takes the MediaPipe models "
                f"out of the mediapipe=={MEDIAPIPE_VERSION} wheel), or set {MEDIAPIPE_DIR_ENV} to "
                "a folder holding face_detection_short_range.tflite and face_landmark.tflite"
            )
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ValueError(
                f"facemesh-65: {path} has sha256 {actual}, expected {expected} (the {role} model of "
                f"mediapipe {MEDIAPIPE_VERSION}); delete it and run `make setup`"
            )
        paths[role] = path
    return paths


# ---------------------------------------------------------------------------------------------
# Configs: the graph constants
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceDetectorConfig:
    """BlazeFace short range, as ``face_detection_short_range.pbtxt`` (``FaceDetectionOptions``)
    and ``face_detection.pbtxt`` (its ``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``
    and ``NonMaxSuppressionCalculator`` options) configure it.

    Attributes:
        input_size (int, 128): tensor width = height (``tensor_width`` / ``tensor_height``).
        num_layers (int, 4) / strides (tuple[int, ...], (8, 16, 16, 16)): SSD feature maps.
        min_scale (float, 0.1484375) / max_scale (float, 0.75): anchor scales (unused with
            ``fixed_anchor_size``, kept for the anchor count).
        anchor_offset (float, 0.5): anchor centre within its cell (x and y).
        aspect_ratios (tuple[float, ...], (1.0,)) / interpolated_scale_aspect_ratio (float, 1.0):
            one anchor per aspect ratio plus one interpolated-scale anchor per layer.
        num_boxes (int, 896): anchors = model outputs.
        num_keypoints (int, 6): right eye, left eye, nose tip, mouth, right ear, left ear.
        box_scale (float, 128.0): ``x_scale`` = ``y_scale`` = ``w_scale`` = ``h_scale``.
        score_clipping (float, 100.0): logits are clipped to +-this before the sigmoid.
        min_score (float, 0.5): ``min_score_thresh``.
        nms_threshold (float, 0.3): IoU above which detections are merged (weighted NMS).
    """

    input_size: int = 128
    num_layers: int = 4
    strides: tuple[int, ...] = (8, 16, 16, 16)
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    num_boxes: int = 896
    num_keypoints: int = 6
    box_scale: float = 128.0
    score_clipping: float = 100.0
    min_score: float = 0.5
    nms_threshold: float = 0.3


@dataclass(frozen=True)
class FaceLandmarkConfig:
    """The face-landmark model and its ROI, as ``face_detection_front_detection_to_roi.pbtxt``
    (``DetectionsToRectsCalculator``: rotation from keypoint 0 to 1, target angle 0;
    ``RectTransformationCalculator``: ``scale_x`` = ``scale_y`` = 1.5, ``square_long``) and
    ``face_landmark_cpu.pbtxt`` (``ImageToTensorCalculator`` 192 x 192 in [0, 1] with the default
    replicate border; presence: sigmoid then ``ThresholdingCalculator``; the FaceMesh solution's
    ``min_tracking_confidence`` default 0.5) configure it.

    Attributes:
        input_size (int, 192): tensor width = height.
        num_landmarks (int, 468): canonical mesh points, 3 values each.
        roi_scale (float, 1.5): the squared detection box is enlarged by this.
        rotation_keypoints (tuple[int, int], (0, 1)): detection keypoints (right eye, left eye)
            whose line is made horizontal.
        min_presence (float, 0.5): face-presence probability below which a frame has no face.
    """

    input_size: int = 192
    num_landmarks: int = 468
    roi_scale: float = 1.5
    rotation_keypoints: tuple[int, int] = (0, 1)
    min_presence: float = 0.5


# ---------------------------------------------------------------------------------------------
# Detector: anchors, decoding, NMS
# ---------------------------------------------------------------------------------------------


def ssd_anchors(config: FaceDetectorConfig = FaceDetectorConfig()) -> np.ndarray:
    """MediaPipe's ``SsdAnchorsCalculator`` for ``fixed_anchor_size: true``: ``(A, 4)`` float32
    rows ``(x_center, y_center, width, height)`` in [0, 1] tensor coordinates.

    Consecutive layers with the same stride share one feature map; each of its cells gets one
    anchor per aspect ratio plus one interpolated-scale anchor per layer. Short range: 16 x 16
    cells x 2 (stride 8) + 8 x 8 cells x 6 (three stride-16 layers) = 896.

    >>> anchors = ssd_anchors()
    >>> anchors.shape
    (896, 4)
    >>> anchors[0].tolist(), anchors[1].tolist()  # first cell of the 16 x 16 map, 2 anchors
    ([0.03125, 0.03125, 1.0, 1.0], [0.03125, 0.03125, 1.0, 1.0])
    >>> anchors[512].tolist()  # first cell of the 8 x 8 map
    [0.0625, 0.0625, 1.0, 1.0]
    """
    rows: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < config.num_layers:
        per_cell = 0
        last = layer
        while last < len(config.strides) and config.strides[last] == config.strides[layer]:
            per_cell += len(config.aspect_ratios) + (config.interpolated_scale_aspect_ratio > 0)
            last += 1
        stride = config.strides[layer]
        cells = math.ceil(config.input_size / stride)
        for y in range(cells):
            for x in range(cells):
                center = ((x + config.anchor_offset) / cells, (y + config.anchor_offset) / cells)
                rows += [(*center, 1.0, 1.0)] * per_cell  # fixed_anchor_size: w = h = 1
        layer = last
    anchors = np.asarray(rows, dtype=np.float32)
    if len(anchors) != config.num_boxes:
        raise ValueError(f"{len(anchors)} anchors for a model with {config.num_boxes} boxes")
    return anchors


@dataclass
class Detections:
    """Decoded face detections in [0, 1] coordinates of the detector's input tensor.

    Attributes:
        boxes (np.ndarray): ``(N, 4)`` rows ``(xmin, ymin, xmax, ymax)``.
        keypoints (np.ndarray): ``(N, K, 2)`` rows ``(x, y)``: right eye, left eye, nose tip,
            mouth centre, right ear tragion, left ear tragion (the subject's sides).
        scores (np.ndarray): ``(N,)`` sigmoid scores.
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def decode_detections(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    config: FaceDetectorConfig = FaceDetectorConfig(),
) -> Detections:
    """MediaPipe's ``TensorsToDetectionsCalculator`` (``reverse_output_order: true``: boxes are
    ``(x, y, w, h)``; keypoints from offset 4): the detections scoring >= ``min_score``.

    Args:
        regressors: ``(A, 16)`` raw box + keypoint offsets (pixels of the 128 tensor).
        logits: ``(A,)`` or ``(A, 1)`` raw scores.
        anchors: ``(A, 4)`` from :func:`ssd_anchors`.

    >>> anchors = ssd_anchors()
    >>> regressors = np.zeros((896, 16), np.float32); logits = np.full(896, -9.0, np.float32)
    >>> regressors[0, :4] = [12.8, 0.0, 25.6, 38.4]; logits[0] = 3.0
    >>> found = decode_detections(regressors, logits, anchors)
    >>> len(found), np.round(found.boxes[0], 4).tolist(), round(float(found.scores[0]), 4)
    (1, [0.0312, -0.1188, 0.2313, 0.1813], 0.9526)
    """
    scale = config.box_scale
    logits = np.clip(
        np.asarray(logits, np.float64).reshape(-1), -config.score_clipping, config.score_clipping
    )
    scores = 1.0 / (1.0 + np.exp(-logits))  # (A,)
    keep = np.flatnonzero(scores >= config.min_score)
    raw = np.asarray(regressors, np.float64)[keep]  # (N, 16)
    anchor = np.asarray(anchors, np.float64)[keep]  # (N, 4)
    center_x = raw[:, 0] / scale * anchor[:, 2] + anchor[:, 0]
    center_y = raw[:, 1] / scale * anchor[:, 3] + anchor[:, 1]
    width = raw[:, 2] / scale * anchor[:, 2]
    height = raw[:, 3] / scale * anchor[:, 3]
    boxes = np.stack(
        [center_x - width / 2, center_y - height / 2, center_x + width / 2, center_y + height / 2], axis=1
    )  # (N, 4)
    points = raw[:, 4 : 4 + 2 * config.num_keypoints].reshape(len(keep), config.num_keypoints, 2)
    keypoints = points / scale * anchor[:, None, 2:4] + anchor[:, None, 0:2]  # (N, K, 2)
    return Detections(boxes, keypoints, scores[keep])


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box with ``(N, 4)`` boxes (``xmin, ymin, xmax, ymax``)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    intersection = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def weighted_nms(detections: Detections, threshold: float = 0.3) -> Detections:
    """MediaPipe's ``NonMaxSuppressionCalculator`` with ``algorithm: WEIGHTED`` and IoU overlap:
    the best remaining detection absorbs every detection overlapping it by more than
    ``threshold``; its box and keypoints become their score-weighted mean, its score stays the
    best one. Returns the merged detections, best first.

    >>> found = Detections(np.array([[0, 0, 1, 1], [0, 0, 1, 0.9], [2, 2, 3, 3.0]]),
    ...                    np.zeros((3, 6, 2)), np.array([0.9, 0.6, 0.8]))
    >>> merged = weighted_nms(found)
    >>> np.round(merged.boxes, 2).tolist(), merged.scores.tolist()
    ([[0.0, 0.0, 1.0, 0.96], [2.0, 2.0, 3.0, 3.0]], [0.9, 0.8])
    """
    remaining = np.argsort(-detections.scores, kind="stable")
    boxes, keypoints, scores = [], [], []
    while len(remaining):
        best = remaining[0]
        overlap = _iou(detections.boxes[best], detections.boxes[remaining]) > threshold
        overlap[0] = True  # best absorbs itself, even a degenerate box (IoU 0 with itself)
        merged = remaining[overlap]  # includes best itself (IoU 1)
        weights = detections.scores[merged]
        boxes.append((detections.boxes[merged] * weights[:, None]).sum(0) / weights.sum())
        keypoints.append((detections.keypoints[merged] * weights[:, None, None]).sum(0) / weights.sum())
        scores.append(detections.scores[best])
        remaining = remaining[~overlap]
    if not scores:
        return detections
    return Detections(np.stack(boxes), np.stack(keypoints), np.asarray(scores))


# ---------------------------------------------------------------------------------------------
# Regions of interest: letterbox, face crop, warping, projection
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    """A rotated rectangle in frame pixels (MediaPipe's ``NormalizedRect`` times the frame size).

    Attributes:
        center_x, center_y (float): centre (pixels; pixel centres are integers).
        width, height (float): size (pixels).
        rotation (float): radians, clockwise on screen (y points down): the rectangle's x axis is
            ``(cos, sin)`` in the frame.
    """

    center_x: float
    center_y: float
    width: float
    height: float
    rotation: float = 0.0

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` points in [0, 1] ROI coordinates -> frame pixels."""
        local_x = (points[..., 0] - 0.5) * self.width
        local_y = (points[..., 1] - 0.5) * self.height
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        return np.stack(
            [self.center_x + cos * local_x - sin * local_y, self.center_y + sin * local_x + cos * local_y],
            axis=-1,
        )


def letterbox_roi(height: int, width: int) -> Roi:
    """The whole frame padded to a centred square (``ImageToTensorCalculator`` with
    ``keep_aspect_ratio: true`` and no ROI, as the detector graph runs it).

    >>> letterbox_roi(360, 640)
    Roi(center_x=320.0, center_y=180.0, width=640.0, height=640.0, rotation=0.0)
    """
    side = float(max(height, width))
    return Roi(width / 2.0, height / 2.0, side, side)


def warp_roi(frame: torch.Tensor, roi: Roi, size: int, border: str) -> torch.Tensor:
    """Sample ``roi`` of a frame into a ``size`` x ``size`` image, bilinearly.

    As MediaPipe's OpenCV ``ImageToTensorCalculator``: the ROI's corners map onto the tensor's
    corners (``getPerspectiveTransform`` of the box points onto ``(0, 0) .. (size, size)``), so
    output pixel ``(u, v)`` samples the ROI point ``(u / size, v / size)``; ``warpPerspective``
    is bilinear without antialiasing.

    Args:
        frame: float ``(3, H, W)``.
        roi: the region (frame pixels).
        size: output edge.
        border: ``"zeros"`` (``BORDER_ZERO``, the detector) or ``"border"`` (replicate, the
            landmark model).

    Returns:
        float ``(size, size, 3)``.
    """
    _, height, width = frame.shape
    steps = np.arange(size, dtype=np.float64) / size
    grid_u, grid_v = np.meshgrid(steps, steps)  # (S, S) ROI coordinates of the output pixels
    points = roi.to_frame(np.stack([grid_u, grid_v], axis=-1))  # (S, S, 2) frame pixels
    # grid_sample with align_corners=True: -1 and 1 are the centres of the first / last pixel
    normalised = 2 * points / [max(width - 1, 1), max(height - 1, 1)] - 1  # (S, S, 2)
    grid = torch.from_numpy(normalised.astype(np.float32)).to(device=frame.device, dtype=frame.dtype)
    sampled = F.grid_sample(
        frame[None], grid[None], mode="bilinear", padding_mode=border, align_corners=True
    )  # (1, 3, S, S)
    return sampled[0].permute(1, 2, 0)  # (S, S, 3)


def detection_to_roi(
    box: np.ndarray,
    keypoints: np.ndarray,
    height: int,
    width: int,
    config: FaceLandmarkConfig = FaceLandmarkConfig(),
) -> Roi:
    """The landmark model's face ROI from one detection in [0, 1] frame coordinates
    (``face_detection_front_detection_to_roi.pbtxt``): the box's centre, rotated so the line from
    the right eye to the left eye keypoint is horizontal, squared on its long side (pixels) and
    scaled by ``roi_scale``.

    >>> roi = detection_to_roi(np.array([0.25, 0.25, 0.75, 0.75]),
    ...                        np.array([[0.4, 0.4], [0.6, 0.4]]), 100, 200)
    >>> roi.center_x, roi.center_y, roi.width, roi.height, roi.rotation
    (100.0, 50.0, 150.0, 150.0, 0.0)
    """
    start, end = config.rotation_keypoints
    dx = (keypoints[end, 0] - keypoints[start, 0]) * width
    dy = (keypoints[end, 1] - keypoints[start, 1]) * height
    rotation = -math.atan2(-dy, dx)  # target angle 0; DetectionsToRectsCalculator::ComputeRotation
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi  # NormalizeRadians
    side = max((box[2] - box[0]) * width, (box[3] - box[1]) * height) * config.roi_scale
    center_x = (box[0] + box[2]) / 2 * width
    center_y = (box[1] + box[3]) / 2 * height
    return Roi(float(center_x), float(center_y), float(side), float(side), float(rotation) + 0.0)


def project_landmarks(raw: np.ndarray, roi: Roi, input_size: int = 192) -> np.ndarray:
    """Landmarks from the model's ``(L, 3)`` tensor pixels to frame pixels
    (``TensorsToLandmarksCalculator`` normalises by the 192 input, ``LandmarkProjectionCalculator``
    rotates and scales by the ROI; z is scaled by the ROI width, so it is in pixels too).

    The rotation is applied in pixels (exact for any frame shape; MediaPipe rotates normalised
    coordinates, which is the same for square frames or upright faces).

    >>> raw = np.array([[96.0, 96.0, 0.0], [192.0, 0.0, 19.2]])
    >>> np.round(project_landmarks(raw, Roi(50.0, 40.0, 20.0, 20.0)), 6).tolist()
    [[50.0, 40.0, 0.0], [60.0, 30.0, 2.0]]
    """
    normalised = np.asarray(raw, np.float64) / input_size  # (L, 3)
    xy = roi.to_frame(normalised[:, :2])  # (L, 2)
    return np.concatenate([xy, normalised[:, 2:3] * roi.width], axis=1)  # (L, 3)


# ---------------------------------------------------------------------------------------------
# The 65 features
# ---------------------------------------------------------------------------------------------

# MediaPipe canonical face mesh indices (mediapipe/modules/face_geometry/data/canonical_face_model
# and face_mesh_connections.py). "Right" / "left" are the subject's sides, as MediaPipe names them
# (FACEMESH_RIGHT_EYE holds 33 / 133: the eye on the image's left in an unmirrored video).
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 61, 291  # FACEMESH_LIPS outer corners
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17  # outer lip contour, on the midline
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14  # inner lip contour, on the midline: the opening
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_TOP, RIGHT_EYE_BOTTOM = 33, 133, 159, 145
LEFT_EYE_OUTER, LEFT_EYE_INNER, LEFT_EYE_TOP, LEFT_EYE_BOTTOM = 263, 362, 386, 374
# upper eyebrow contour, outer -> inner (FACEMESH_RIGHT_EYEBROW / FACEMESH_LEFT_EYEBROW)
RIGHT_BROW = (70, 63, 105, 66, 107)
LEFT_BROW = (300, 293, 334, 296, 336)
NOSE_TIP, NOSE_BRIDGE, NOSE_RIGHT_ALA, NOSE_LEFT_ALA = 1, 168, 98, 327
CHIN, FOREHEAD = 152, 10  # bottom / top of FACEMESH_FACE_OVAL on the midline
CHEEK_RIGHT, CHEEK_LEFT = 234, 454  # widest points of FACEMESH_FACE_OVAL: the face width

# landmarks whose (x, y) position in the face frame is a feature: lips, brows, lids
POSITION_LANDMARKS = (
    ("mouth_corner_right", MOUTH_CORNER_RIGHT),
    ("mouth_corner_left", MOUTH_CORNER_LEFT),
    ("upper_lip_top", UPPER_LIP_TOP),
    ("lower_lip_bottom", LOWER_LIP_BOTTOM),
    ("upper_lip_inner", UPPER_LIP_INNER),
    ("lower_lip_inner", LOWER_LIP_INNER),
    ("brow_mid_right", RIGHT_BROW[2]),
    ("brow_mid_left", LEFT_BROW[2]),
    ("brow_inner_right", RIGHT_BROW[-1]),
    ("brow_inner_left", LEFT_BROW[-1]),
    ("eyelid_top_right", RIGHT_EYE_TOP),
    ("eyelid_top_left", LEFT_EYE_TOP),
    ("eyelid_bottom_right", RIGHT_EYE_BOTTOM),
    ("eyelid_bottom_left", LEFT_EYE_BOTTOM),
)
# distances between two landmarks (face widths)
DISTANCES = (
    ("upper_lip_thickness", UPPER_LIP_TOP, UPPER_LIP_INNER),
    ("lower_lip_thickness", LOWER_LIP_INNER, LOWER_LIP_BOTTOM),
    ("outer_lip_height", UPPER_LIP_TOP, LOWER_LIP_BOTTOM),
    ("brow_inner_gap", RIGHT_BROW[-1], LEFT_BROW[-1]),
    ("brow_inner_to_eye_right", RIGHT_BROW[-1], RIGHT_EYE_INNER),
    ("brow_inner_to_eye_left", LEFT_BROW[-1], LEFT_EYE_INNER),
    ("brow_outer_to_eye_right", RIGHT_BROW[0], RIGHT_EYE_OUTER),
    ("brow_outer_to_eye_left", LEFT_BROW[0], LEFT_EYE_OUTER),
    ("nose_to_upper_lip", NOSE_TIP, UPPER_LIP_TOP),
    ("nose_to_chin", NOSE_TIP, CHIN),
    ("nose_width", NOSE_RIGHT_ALA, NOSE_LEFT_ALA),
    ("mouth_corner_to_eye_right", MOUTH_CORNER_RIGHT, RIGHT_EYE_OUTER),
    ("mouth_corner_to_eye_left", MOUTH_CORNER_LEFT, LEFT_EYE_OUTER),
    ("mouth_corner_to_nose_right", MOUTH_CORNER_RIGHT, NOSE_TIP),
    ("mouth_corner_to_nose_left", MOUTH_CORNER_LEFT, NOSE_TIP),
    ("lower_lip_to_chin", LOWER_LIP_BOTTOM, CHIN),
    ("face_height", FOREHEAD, CHIN),
)

#: the 65 features, in storage order (seed 002's groups: mouth 5, eyes 3, eyebrows 2, symmetry 2,
#: further distances and positions 53)
FEATURE_NAMES: tuple[str, ...] = (
    # mouth (5)
    "mouth_width",
    "mouth_height",
    "mouth_corner_right_height",
    "mouth_corner_left_height",
    "mouth_angle",
    # eyes (3)
    "eye_width_right",
    "eye_width_left",
    "eye_distance",
    # eyebrows (2)
    "brow_height_right",
    "brow_height_left",
    # symmetry (2)
    "eye_asymmetry",
    "mouth_asymmetry",
    # further distances and ratios (22)
    "eye_opening_right",
    "eye_opening_left",
    "eye_aspect_right",
    "eye_aspect_left",
    "mouth_aspect",
    *(name for name, _, _ in DISTANCES),
    # head pose (3)
    "head_roll",
    "head_yaw",
    "head_pitch",
    # positions in the face frame (28)
    *(f"{name}_{axis}" for name, _ in POSITION_LANDMARKS for axis in ("x", "y")),
)


def facemesh_features(landmarks: np.ndarray) -> np.ndarray:
    """Seed 002's 65 emotion features of one face: ``(L, 3)`` landmarks (frame pixels) ->
    ``(65,)`` float32 named by :data:`FEATURE_NAMES`.

    Every feature is measured in the **face frame**: origin at the nose bridge (168, between the
    eyes, which expressions barely move), x along the line from the right to the left eye centre
    (so head roll is removed), y perpendicular to it pointing up (forehead), lengths divided by
    the face width (|234 - 454|, the widest face-oval points), so the features do not change with
    the face's position, size or in-plane rotation. Only x and y are used: MediaPipe's z is a
    relative depth, weaker than the image-plane geometry.

    Heights are positive upwards; angles are radians. ``mouth_height`` is the inner-lip gap
    (13 - 14), so it is ~0 for a closed mouth; ``eye_opening_*`` the lid gap (159 - 145,
    386 - 374); ``brow_height_*`` the mean height of the upper brow contour above the eye
    centre; ``eye_asymmetry`` = right - left eye opening; ``mouth_asymmetry`` = right - left
    corner distance from the midline (the line from the nose bridge through the chin);
    ``head_yaw`` = x of the nose tip relative to the cheeks' midpoint, ``head_pitch`` = y of the
    nose tip relative to the eye centres, ``head_roll`` = the eye line's angle in the frame.

    >>> grid = np.random.default_rng(0).normal(size=(468, 3)) * 10
    >>> features = facemesh_features(grid)
    >>> features.shape, features.dtype, bool(np.isfinite(features).all())
    ((65,), dtype('float32'), True)
    >>> turned = grid.copy(); turned[:, :2] = 3 * grid[:, :2] @ [[0.6, -0.8], [0.8, 0.6]] + 50
    >>> changed = ~np.isclose(facemesh_features(turned), features, atol=1e-4)
    >>> [FEATURE_NAMES[i] for i in np.flatnonzero(changed)]  # moved, scaled, rotated: only roll
    ['head_roll']
    """
    points = np.asarray(landmarks, np.float64)[:, :2]  # (L, 2) pixels, y down
    eye_right = (points[RIGHT_EYE_OUTER] + points[RIGHT_EYE_INNER]) / 2
    eye_left = (points[LEFT_EYE_OUTER] + points[LEFT_EYE_INNER]) / 2
    axis_x = eye_left - eye_right
    roll = math.atan2(axis_x[1], axis_x[0])
    axis_x = axis_x / max(np.linalg.norm(axis_x), 1e-9)
    axis_up = np.array([axis_x[1], -axis_x[0]])  # x rotated a quarter turn towards the forehead
    face_width = max(float(np.linalg.norm(points[CHEEK_LEFT] - points[CHEEK_RIGHT])), 1e-6)
    relative = points - points[NOSE_BRIDGE]
    frame = np.stack([relative @ axis_x, relative @ axis_up], axis=1) / face_width  # (L, 2) face frame

    def distance(a: int, b: int) -> float:
        return float(np.linalg.norm(frame[a] - frame[b]))

    eye_center_right = (frame[RIGHT_EYE_OUTER] + frame[RIGHT_EYE_INNER]) / 2
    eye_center_left = (frame[LEFT_EYE_OUTER] + frame[LEFT_EYE_INNER]) / 2
    mouth_center = (frame[UPPER_LIP_INNER] + frame[LOWER_LIP_INNER]) / 2
    corner_right, corner_left = frame[MOUTH_CORNER_RIGHT], frame[MOUTH_CORNER_LEFT]
    mouth_width = distance(MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT)
    mouth_height = distance(UPPER_LIP_INNER, LOWER_LIP_INNER)
    eye_width_right = distance(RIGHT_EYE_OUTER, RIGHT_EYE_INNER)
    eye_width_left = distance(LEFT_EYE_OUTER, LEFT_EYE_INNER)
    eye_opening_right = distance(RIGHT_EYE_TOP, RIGHT_EYE_BOTTOM)
    eye_opening_left = distance(LEFT_EYE_TOP, LEFT_EYE_BOTTOM)
    # midline: nose bridge (origin) -> chin; a corner's distance from it is |cross| / |direction|
    midline = frame[CHIN] / max(float(np.linalg.norm(frame[CHIN])), 1e-9)

    def off_midline(point: np.ndarray) -> float:
        return abs(float(point[0] * midline[1] - point[1] * midline[0]))

    cheeks_mid = (frame[CHEEK_RIGHT] + frame[CHEEK_LEFT]) / 2
    eyes_mid = (eye_center_right + eye_center_left) / 2
    values = [
        mouth_width,
        mouth_height,
        corner_right[1] - mouth_center[1],
        corner_left[1] - mouth_center[1],
        math.atan2(corner_left[1] - corner_right[1], corner_left[0] - corner_right[0]),
        eye_width_right,
        eye_width_left,
        float(np.linalg.norm(eye_center_left - eye_center_right)),
        float(np.mean(frame[list(RIGHT_BROW), 1])) - eye_center_right[1],
        float(np.mean(frame[list(LEFT_BROW), 1])) - eye_center_left[1],
        eye_opening_right - eye_opening_left,
        off_midline(corner_right) - off_midline(corner_left),
        eye_opening_right,
        eye_opening_left,
        eye_opening_right / max(eye_width_right, 1e-6),
        eye_opening_left / max(eye_width_left, 1e-6),
        mouth_height / max(mouth_width, 1e-6),
        *(distance(a, b) for _, a, b in DISTANCES),
        roll,
        frame[NOSE_TIP, 0] - cheeks_mid[0],
        frame[NOSE_TIP, 1] - eyes_mid[1],
        *(float(value) for _, index in POSITION_LANDMARKS for value in frame[index]),
    ]
    return np.asarray(values, dtype=np.float32)


if len(FEATURE_NAMES) != FACEMESH_DIM:  # pragma: no cover - a definition error, caught on import
    raise AssertionError(f"{len(FEATURE_NAMES)} FaceMesh feature names, expected {FACEMESH_DIM}")


# ---------------------------------------------------------------------------------------------
# Runtime: the two LiteRT models
# ---------------------------------------------------------------------------------------------


@dataclass
class FaceResult:
    """One frame's face: ``landmarks`` ``(L, 3)`` frame pixels, the detector ``score``, the
    landmark model's ``presence`` probability and the ``roi`` it was read from."""

    landmarks: np.ndarray
    score: float
    presence: float
    roi: Roi


class _Model:
    """A LiteRT interpreter with one float input and named outputs."""

    def __init__(self, path: Path, num_threads: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        self.outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        self.input_shape = tuple(int(n) for n in self.input["shape"])

    def __call__(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self.interpreter.set_tensor(self.input["index"], tensor[None].astype(np.float32))
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(index)[0] for name, index in self.outputs.items()}


class FaceMeshLandmarker:
    """BlazeFace short range + the 468-point face-landmark model on single RGB frames.

    Args:
        paths: ``{"detector": ..., "landmarks": ...}`` model files (:func:`model_paths`).
        detector / landmark: the graph constants.
        num_threads: LiteRT CPU threads (None: its default).
    """

    def __init__(
        self,
        paths: dict[str, Path],
        detector: FaceDetectorConfig = FaceDetectorConfig(),
        landmark: FaceLandmarkConfig = FaceLandmarkConfig(),
        num_threads: int | None = None,
    ) -> None:
        self.detector_config, self.landmark_config = detector, landmark
        self.detector = _Model(paths["detector"], num_threads)
        self.landmark_model = _Model(paths["landmarks"], num_threads)
        expected = {
            "detector": (1, detector.input_size, detector.input_size, 3),
            "landmarks": (1, landmark.input_size, landmark.input_size, 3),
        }
        for role, model in (("detector", self.detector), ("landmarks", self.landmark_model)):
            if model.input_shape != expected[role]:
                raise ValueError(f"{paths[role]}: input {model.input_shape}, expected {expected[role]}")
        self.anchors = ssd_anchors(detector)

    def detect(self, frame: torch.Tensor) -> Detections:
        """Faces in a float ``(3, H, W)`` frame in [0, 255]: boxes and keypoints in [0, 1] frame
        coordinates, best first (after weighted NMS)."""
        _, height, width = frame.shape
        roi = letterbox_roi(height, width)
        size = self.detector_config.input_size
        tensor = warp_roi(frame, roi, size, border="zeros") / 127.5 - 1.0  # (128, 128, 3) in [-1, 1]
        outputs = self.detector(tensor.numpy())
        found = decode_detections(
            outputs["regressors"], outputs["classificators"], self.anchors, self.detector_config
        )
        found = weighted_nms(found, self.detector_config.nms_threshold)
        if not len(found):
            return found
        # DetectionProjectionCalculator: letterboxed tensor [0, 1] -> frame [0, 1]
        scale = np.array([roi.width / width, roi.height / height])
        offset = np.array([(roi.center_x - roi.width / 2) / width, (roi.center_y - roi.height / 2) / height])
        boxes = found.boxes * np.tile(scale, 2) + np.tile(offset, 2)
        return Detections(boxes, found.keypoints * scale + offset, found.scores)

    def __call__(self, frame: np.ndarray) -> FaceResult | None:
        """The best face of a uint8 ``(H, W, 3)`` RGB frame, or None (no detection, or the
        landmark model says no face)."""
        pixels = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).to(torch.float32)  # (3, H, W)
        found = self.detect(pixels)
        if not len(found):
            return None
        _, height, width = pixels.shape
        roi = detection_to_roi(found.boxes[0], found.keypoints[0], height, width, self.landmark_config)
        size = self.landmark_config.input_size
        crop = warp_roi(pixels, roi, size, border="border") / 255.0  # (192, 192, 3) in [0, 1]
        outputs = self.landmark_model(crop.numpy())
        raw_landmarks, presence_logit = None, None
        for values in outputs.values():
            if values.size == 3 * self.landmark_config.num_landmarks:
                raw_landmarks = values.reshape(self.landmark_config.num_landmarks, 3)
            elif values.size == 1:
                presence_logit = float(values.reshape(()))
        if raw_landmarks is None or presence_logit is None:
            raise ValueError(f"face-landmark model outputs {[v.shape for v in outputs.values()]}")
        presence = 1.0 / (1.0 + math.exp(-max(min(presence_logit, 100.0), -100.0)))
        if presence < self.landmark_config.min_presence:
            return None
        landmarks = project_landmarks(raw_landmarks, roi, size)
        return FaceResult(landmarks, float(found.scores[0]), presence, roi)


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


class FaceMeshEncoder:
    """``facemesh-65``: seed 002's 65 FaceMesh features for every frame with a face.

    Args:
        landmarker: the two LiteRT models.
        paths: their files (hashed into ``meta.json``'s ``weights_hash`` by
            :func:`mer.extract.weights_hash` through :attr:`weight_files`).
        info: its :class:`~mer.encoders.base.EncoderInfo`.
    """

    def __init__(self, landmarker: FaceMeshLandmarker, paths: dict[str, Path], info: EncoderInfo) -> None:
        self.landmarker = landmarker
        self.weight_files = [paths[role] for role in MODEL_FILES]
        self.info = info
        self.counts = {"clips": 0, "frames": 0, "frames_with_face": 0, "clips_without_face": 0}
        # the last batch's results, found by identity: the extract stage retries a batch item by
        # item when one clip has no face, and must not run the models twice on the others
        self._last: list[tuple[np.ndarray, np.ndarray | None]] = []

    @classmethod
    def from_spec(
        cls, spec: str = FACEMESH_SPEC, *, init_seed: int = 0, device: str = "cpu"
    ) -> FaceMeshEncoder:
        """Load the pinned MediaPipe models (``init_seed`` is ignored: pretrained; LiteRT runs on
        the CPU whatever ``device`` says).

        Raises:
            ValueError: ``spec`` is not ``facemesh-65``, or a model file has another sha256.
            FileNotFoundError: a model file is missing (run ``make setup``).
        """
        if spec != FACEMESH_SPEC:
            raise ValueError(f"FaceMeshEncoder serves {FACEMESH_SPEC!r}, not {spec!r}")
        if device != "cpu":
            logger.info("facemesh-65 runs on the CPU (LiteRT), not on %s", device)
        paths = model_paths()
        detector, landmark = FaceDetectorConfig(), FaceLandmarkConfig()
        # as many LiteRT threads as torch uses (the extract stage divides the cores among ranks);
        # 2 threads: 1.9 vs 3.5 ms per landmark call on the 2-core CPU
        landmarker = FaceMeshLandmarker(
            paths, detector, landmark, num_threads=max(1, torch.get_num_threads())
        )
        model_sha256 = {name: sha for name, sha in MODEL_FILES.values()}
        described = {
            "models": model_sha256,
            "detector": asdict(detector),
            "landmark": asdict(landmark),
            "features": FEATURE_NAMES,
        }
        info = EncoderInfo(
            model=spec,
            weights="pretrained",
            hidden_dim=FACEMESH_DIM,
            config_hash=hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16],
            extra={
                "source": f"mediapipe=={MEDIAPIPE_VERSION} wheel, run with ai-edge-litert",
                "model_sha256": model_sha256,
                "detector": asdict(detector),
                "landmark": asdict(landmark),
                "features": list(FEATURE_NAMES),
                "frames": "frames without a face are dropped (T_face <= frames read)",
            },
        )
        return cls(landmarker, paths, info)

    def frame_features(self, clip: np.ndarray) -> np.ndarray:
        """``(F, H, W, 3)`` uint8 -> ``(T_face, 65)`` float32, one row per frame with a face (in
        frame order)."""
        rows = []
        for frame in clip:
            face = self.landmarker(frame)
            if face is not None:
                rows.append(facemesh_features(face.landmarks))
        if not rows:
            return np.zeros((0, FACEMESH_DIM), np.float32)
        return np.stack(rows)  # (T_face, D)

    def encode(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Encode a batch of clips.

        Args:
            clips: B uint8 arrays of shape ``(F_i, H, W, 3)`` (RGB, full resolution).

        Returns:
            B float32 arrays of shape ``(T_face_i, 65)``: the frames where a face was found.

        Raises:
            ValueError: a malformed clip, or a clip with no face in any frame (the extract stage
                then encodes the batch item by item and quarantines that clip: "no face").
        """
        for index, clip in enumerate(clips):
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 1:
                raise ValueError(f"clip {index} must be (F, H, W, 3) with F >= 1, got {clip.shape}")
            if clip.dtype != np.uint8:
                raise ValueError(f"clip {index} must be uint8 RGB, got {clip.dtype}")
        results, computed = [], False
        for clip in clips:
            features = next((known for seen, known in self._last if seen is clip), None)
            if features is None:
                features, computed = self.frame_features(clip), True
                self.counts["clips"] += 1
                self.counts["frames"] += len(clip)
                self.counts["frames_with_face"] += len(features)
                self.counts["clips_without_face"] += not len(features)
            results.append(features)
        if computed:  # a new batch (item-by-item retries of the last one only read it)
            self._last = list(zip(clips, results, strict=True))
        self.info.extra["counts_this_run"] = dict(self.counts)
        faceless = [i for i, features in enumerate(results) if not len(features)]
        if faceless:
            frames = clips[faceless[0]].shape[0]
            raise ValueError(
                f"no face in any of the {frames} frames (clip {faceless[0]} of the batch; "
                "MediaPipe face detector + landmark presence)"
            )
        return results
