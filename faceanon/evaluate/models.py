"""The face tools of the harness, loaded once: detection, dlib's 128-D descriptor and mediapipe's face mesh.

Independence: the re-identification model is dlib's ResNet (trained by Davis King on a face-scrub/VGG mix, 128-D,
Euclidean threshold 0.6), not the ArcFace/insightface model the pack uses for conditioning, so an anonymizer that
merely fools its own conditioning network is not graded by that same network.

Detection is the union of dlib's HOG detector (good on groups, scores >= `hog_min_score`) and mediapipe's
full-range BlazeFace (`mp_min_score`), merged by IoU; boxes are in pixels of the full image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from .mesh import MeshFeatures

logger = logging.getLogger(__name__)

NOSE_TIP = 1


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0
    source: str = ""

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float, shape: tuple[int, ...] | None = None) -> Box:
        """The box scaled about its centre (each side times `factor`), clamped to `shape` (H, W, ...) if given."""
        cx, cy = self.center
        hw, hh = self.width * factor / 2, self.height * factor / 2
        x0, y0, x1, y1 = round(cx - hw), round(cy - hh), round(cx + hw), round(cy + hh)
        if shape is not None:
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = min(shape[1], x1), min(shape[0], y1)
        return Box(x0, y0, x1, y1, self.score, self.source)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1


class FaceTools:
    """dlib + mediapipe models, created on first use (about 1 s), deterministic on CPU."""

    def __init__(self, hog_min_score: float = 0.3, mp_min_score: float = 0.6, detect_max_side: int = 1024,
                 mesh_crop_scale: float = 2.0, mesh_size: int = 256):
        self.hog_min_score = hog_min_score
        self.mp_min_score = mp_min_score
        self.detect_max_side = detect_max_side
        self.mesh_crop_scale = mesh_crop_scale
        self.mesh_size = mesh_size
        self._dlib = None
        self._mp = None

    # -- loading ---------------------------------------------------------------------------------------------
    def _dlib_models(self):
        if self._dlib is None:
            import dlib
            import face_recognition_models as frm

            # The 5-point predictor (CC0) gives the same distances as the non-commercial 68-point one here.
            self._dlib = (
                dlib,
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
                dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
            )
        return self._dlib

    def _mp_models(self):
        if self._mp is None:
            os.environ.setdefault("GLOG_minloglevel", "2")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import mediapipe as mp

            self._mp = (
                mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                          min_detection_confidence=self.mp_min_score),
                mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                                                min_detection_confidence=0.5),
            )
        return self._mp

    def close(self) -> None:
        if self._mp is not None:
            for solution in self._mp:
                solution.close()
            self._mp = None

    # -- detection -------------------------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Faces in an RGB uint8 image, sorted left to right (then top to bottom)."""
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        _, hog, _, _ = self._dlib_models()
        rects, scores, _ = hog.run(np.ascontiguousarray(small), 1, 0.0)
        boxes = []
        for rect, score in zip(rects, scores, strict=True):
            if score < self.hog_min_score:
                continue
            box = Box(round(rect.left() / scale), round(rect.top() / scale), round((rect.right() + 1) / scale),
                      round((rect.bottom() + 1) / scale), float(score), "hog").scaled(1.0, rgb.shape)
            if box.width > 1 and box.height > 1:
                boxes.append(box)

        detector, _ = self._mp_models()
        found = detector.process(rgb)
        for det in found.detections or []:
            rel = det.location_data.relative_bounding_box
            box = Box(round(rel.xmin * w), round(rel.ymin * h), round((rel.xmin + rel.width) * w),
                      round((rel.ymin + rel.height) * h), float(det.score[0]), "mediapipe").scaled(1.0, rgb.shape)
            if box.width <= 1 or box.height <= 1:
                continue
            overlaps = [i for i, b in enumerate(boxes) if b.iou(box) >= 0.3]
            if overlaps:
                i = overlaps[0]
                if "mediapipe" not in boxes[i].source:
                    b = boxes[i]
                    boxes[i] = Box(b.x0, b.y0, b.x1, b.y1, b.score, b.source + "+mediapipe")
            else:
                boxes.append(box)
        boxes.sort(key=lambda b: (round(b.center[0]), round(b.center[1])))
        return boxes

    # -- identity --------------------------------------------------------------------------------------------
    def landmarks5(self, rgb: np.ndarray, box: Box):
        """dlib's 5-point shape (a `full_object_detection`) inside `box`."""
        dlib, _, sp5, _ = self._dlib_models()
        return sp5(rgb, dlib.rectangle(box.x0, box.y0, box.x1 - 1, box.y1 - 1))

    def descriptor(self, rgb: np.ndarray, shape) -> np.ndarray:
        """dlib's 128-D face descriptor of the face chip aligned on `shape` (no jitter: deterministic)."""
        _, _, _, rec = self._dlib_models()
        return np.array(rec.compute_face_descriptor(rgb, shape, 0, 0.25), dtype=np.float64)

    # -- mesh ------------------------------------------------------------------------------------------------
    def mesh_crop(self, rgb: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
        """A square crop around `box` (side = `mesh_crop_scale` x the box's longer side, zero-padded at borders),
        resized to `mesh_size`. The same crop is used for an original and its result."""
        import cv2

        side = round(max(box.width, box.height) * self.mesh_crop_scale)
        cx, cy = box.center
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        region = Box(x0, y0, x0 + side, y0 + side)
        h, w = rgb.shape[:2]
        pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
        src = rgb if pad == 0 else cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        crop = src[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
        interp = cv2.INTER_AREA if side > self.mesh_size else cv2.INTER_LINEAR
        return np.ascontiguousarray(cv2.resize(crop, (self.mesh_size, self.mesh_size), interpolation=interp)), region

    def mesh(self, rgb: np.ndarray, box: Box) -> MeshFeatures | None:
        """Pose/gaze/expression features of the face in `box`, or None when the mesh finds no face there."""
        crop, region = self.mesh_crop(rgb, box)
        _, face_mesh = self._mp_models()
        found = face_mesh.process(crop)
        if not found.multi_face_landmarks:
            return None
        s = float(self.mesh_size)
        points = np.array([(p.x * s, p.y * s, p.z * s) for p in found.multi_face_landmarks[0].landmark])
        # Reject a mesh on a neighbouring face: the nose tip must lie inside the face's own box.
        k = s / region.width
        nx, ny = points[NOSE_TIP, 0] / k + region.x0, points[NOSE_TIP, 1] / k + region.y0
        margin = 0.15 * max(box.width, box.height)
        if not (box.x0 - margin <= nx <= box.x1 + margin and box.y0 - margin <= ny <= box.y1 + margin):
            return None
        return MeshFeatures.from_points(points)
