"""Head pose, gaze and expression proxies from mediapipe's 478-point face mesh (refined: iris points 468-477).

All functions take `points`, a (478, 3) float array in pixels: x right, y down, z = mediapipe's relative depth
times the crop width (same scale as x). They return plain floats; differences between an original and its result
are what the harness reports, because every proxy has a person-specific offset.

Index conventions (mediapipe canonical mesh; "right" is the subject's right = the image's left):
- eye corners: right eye outer 33 / inner 133, left eye outer 263 / inner 362; iris centres 468 (right), 473 (left);
- eyelids for the eye aspect ratio: right [33, 160, 158, 133, 153, 144], left [362, 385, 387, 263, 373, 380];
- mouth: inner lip midpoints 13 (upper) / 14 (lower), corners 61 / 291; forehead 10, chin 152.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIGHT_EYE = (33, 133, 468)  # outer corner, inner corner, iris centre
LEFT_EYE = (263, 362, 473)
EAR_RIGHT = (33, 160, 158, 133, 153, 144)
EAR_LEFT = (362, 385, 387, 263, 373, 380)
MOUTH_UPPER, MOUTH_LOWER, MOUTH_RIGHT, MOUTH_LEFT = 13, 14, 61, 291
FOREHEAD, CHIN = 10, 152
N_POINTS = 478


@dataclass
class MeshFeatures:
    """What the harness compares between an original face and its result."""

    pitch: float  # degrees
    yaw: float
    roll: float
    gaze: np.ndarray  # (2, 2): per eye (right, left) the iris position (u along the eye axis, v across), eye widths
    ear_right: float
    ear_left: float
    mouth_open: float  # inner-lip gap / inter-ocular distance
    mouth_width: float  # mouth-corner distance / inter-ocular distance

    @classmethod
    def from_points(cls, points: np.ndarray) -> MeshFeatures:
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (N_POINTS, 3):
            raise ValueError(f"expected a refined mediapipe mesh of shape ({N_POINTS}, 3), got {points.shape}")
        pitch, yaw, roll = head_pose(points)
        iod = inter_ocular(points)
        return cls(
            pitch=pitch, yaw=yaw, roll=roll,
            gaze=np.stack([iris_position(points, *RIGHT_EYE), iris_position(points, *LEFT_EYE)]),
            ear_right=eye_aspect_ratio(points, EAR_RIGHT),
            ear_left=eye_aspect_ratio(points, EAR_LEFT),
            mouth_open=float(np.linalg.norm(points[MOUTH_UPPER, :2] - points[MOUTH_LOWER, :2]) / iod),
            mouth_width=float(np.linalg.norm(points[MOUTH_RIGHT, :2] - points[MOUTH_LEFT, :2]) / iod),
        )

    def expression(self) -> np.ndarray:
        return np.array([self.ear_right, self.ear_left, self.mouth_open, self.mouth_width])


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees from the mesh's own axes, no camera model.

    x axis: right eye outer corner -> left eye outer corner; y axis: forehead -> chin, made orthogonal to x;
    z = x cross y. The rotation matrix is decomposed as OpenCV's RQDecomp3x3 does. Within about 1-3 degrees of a
    known in-plane rotation on real photos (shared research eval_tools.md §5.3).
    """
    import cv2

    xa = points[LEFT_EYE[0]] - points[RIGHT_EYE[0]]
    xa = xa / np.linalg.norm(xa)
    ya = points[CHIN] - points[FOREHEAD]
    ya = ya - (ya @ xa) * xa
    ya = ya / np.linalg.norm(ya)
    rot = np.stack([xa, ya, np.cross(xa, ya)], axis=1)
    pitch, yaw, roll = cv2.RQDecomp3x3(rot)[0]
    return float(pitch), float(yaw), float(roll)


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the two eye centres (mean of each eye's corners), in the points' 2D units."""
    right = (points[RIGHT_EYE[0], :2] + points[RIGHT_EYE[1], :2]) / 2
    left = (points[LEFT_EYE[0], :2] + points[LEFT_EYE[1], :2]) / 2
    return float(np.linalg.norm(left - right))


def iris_position(points: np.ndarray, outer: int, inner: int, iris: int) -> np.ndarray:
    """Iris centre in eye coordinates: u = 0 at the outer corner, 1 at the inner one; v = offset across, in eye widths.

    Not calibrated to degrees (no offline gaze network exists); stable to about +-0.03 under flips and rotations of
    the same photo, so differences well above that are real gaze changes.
    """
    o, n, i = points[outer, :2], points[inner, :2], points[iris, :2]
    axis = n - o
    denom = float(axis @ axis)
    rel = i - o
    u = float(rel @ axis) / denom
    v = float(axis[0] * rel[1] - axis[1] * rel[0]) / denom
    return np.array([u, v])


def eye_aspect_ratio(points: np.ndarray, idx: tuple[int, ...]) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) on the 2D points: about 0.3 open, below 0.15 closed."""
    p = points[list(idx), :2]
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * np.linalg.norm(p[0] - p[3])))


def angle_difference(a: float, b: float) -> float:
    """|a - b| in degrees, wrapped to [0, 180]."""
    d = (a - b + 180.0) % 360.0 - 180.0
    return abs(d)


def compare(orig: MeshFeatures, result: MeshFeatures) -> dict[str, float]:
    """Absolute differences of every attribute between an original face and its result."""
    d_pitch = angle_difference(orig.pitch, result.pitch)
    d_yaw = angle_difference(orig.yaw, result.yaw)
    d_roll = angle_difference(orig.roll, result.roll)
    expr = np.abs(orig.expression() - result.expression())
    return {
        "yaw_diff_deg": d_yaw,
        "pitch_diff_deg": d_pitch,
        "roll_diff_deg": d_roll,
        "pose_diff_deg": (d_yaw + d_pitch + d_roll) / 3.0,
        "gaze_diff": float(np.linalg.norm(orig.gaze - result.gaze, axis=1).mean()),
        "ear_diff": float(expr[:2].mean()),
        "mouth_open_diff": float(expr[2]),
        "mouth_width_diff": float(expr[3]),
        "expr_diff": float(expr.mean()),
    }
