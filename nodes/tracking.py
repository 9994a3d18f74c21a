"""FaceAnonTrackFaces: the faces of a clip (an IMAGE batch in frame order) grouped into one track per person.

Thin adapter over `faceanon.tracking` (host-independent, documented there): detection through the loaded face
analysis (every k-th frame, plus extra passes where tracks start and end), scene cuts, association, gap filling,
smoothing. The preview numbers every box by its track (one colour per person); interpolated faces say so.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..faceanon import faces as F  # noqa: N812
from ..faceanon.faces._image import as_bhwc
from ..faceanon.tracking import track_video
from .faces import progress_callback
from .types import FaceAnalysis, Tracks, io

logger = logging.getLogger(__name__)

CATEGORY = "FaceAnon/video"


def detector(analysis, frames, threshold: float, min_face_size: float, tick=None):
    """detect(frame indices) -> faces with `image_index` = frame, for `faceanon.tracking.track_video`."""
    done = []

    def detect(indices: list[int]):
        found = F.detect(analysis, frames[indices], threshold=threshold, min_face_size=min_face_size,
                         if_no_face="flag and pass through")
        done.extend(indices)
        if tick is not None:
            tick(len(done), len(frames))
        return [replace(f, image_index=indices[f.image_index]) for f in found]

    return detect


def track_clip(analysis, frames, threshold=0.5, min_face_size=24, detect_every=1, max_gap=8, scene_cut=0.5,
               smoothing=0.5, tick=None):
    """Validated tracking of an IMAGE batch (the node's work, also used by the anonymizer's still mode tests)."""
    frames = as_bhwc(frames, "Track Faces: image")
    if frames.shape[0] < 2:
        raise ValueError(
            f"Track Faces needs a clip of at least 2 frames in order, got {frames.shape[0]} image of "
            f"{frames.shape[2]}x{frames.shape[1]}: connect the frames of a video (Get Video Components' images, or "
            "a video loader's IMAGE batch). For a still photo, leave Anonymize People's tracks input unconnected.")
    return track_video(detector(analysis, frames, threshold, min_face_size, tick), frames,
                       detect_every=detect_every, scene_threshold=scene_cut, max_gap=max_gap, smoothing=smoothing)


def draw_tracks(frames, tracks):
    """Preview: every face box labelled 'T<track>' (and 'interp.' for interpolated faces), one colour per track."""
    faces, ids = tracks.faces()
    interpolated = {(t.id, f) for t in tracks for f in t.interpolated}
    labels = [f"T{tid}" + (" interp." if (tid, face.image_index) in interpolated else f" ({face.score:.2f})")
              for face, tid in zip(faces, ids, strict=True)]
    return F.draw_faces(frames, replace(faces, missing=()), labels=labels, colors=ids)


class FaceAnonTrackFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonTrackFaces",
            display_name="Track Faces (FaceAnon)",
            category=CATEGORY,
            description=(
                "Finds the faces of a video (an IMAGE batch in frame order) and follows each person through the "
                "clip: one track per person and shot, so Anonymize People gives each person one consistent "
                "stand-in. Scene cuts end every track; frames where the detector missed a face inside a track are "
                "filled (interpolated) up to max_gap frames; boxes and keypoints are smoothed so crops do not "
                "jitter. The report lists, per track, the frames where it was seen, interpolated or lost."),
            inputs=[
                FaceAnalysis.Input("face_analysis"),
                io.Image.Input("image", tooltip="The clip's frames, in order (e.g. Get Video Components' images)."),
                io.Float.Input("threshold", default=0.5, min=0.05, max=0.95, step=0.01,
                               tooltip="Detector score threshold: lower finds more (and more false) faces"),
                io.Int.Input("min_face_size", default=24, min=4, max=4096,
                             tooltip="Smallest face to find, in pixels (longer box side)"),
                io.Int.Input("detect_every", default=1, min=1, max=30,
                             tooltip="Run the detector on every k-th frame only (and on each shot's first and "
                                     "last frame); the frames between are interpolated. Where a track starts, "
                                     "ends or is lost, the skipped frames next to it are detected too. 1 = every "
                                     "frame (safest)"),
                io.Int.Input("max_gap", default=8, min=0, max=120,
                             tooltip="Interpolation window: a face missed for at most this many frames inside a "
                                     "track is filled in (and anonymized); longer gaps are reported as LOST. "
                                     "Raised to detect_every - 1 when smaller"),
                io.Float.Input("scene_cut", default=0.5, min=0.05, max=1.0, step=0.01,
                               tooltip="Colour-histogram change between consecutive frames that counts as a scene "
                                       "cut (a cut ends every track). Lower finds more cuts; 1 = never cut"),
                io.Float.Input("smoothing", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="Smoothing of boxes and keypoints along each track (zero-lag One-Euro "
                                       "filter): 0 = raw detections, 1 = strongest"),
            ],
            outputs=[
                Tracks.Output(display_name="tracks"),
                io.Image.Output(display_name="preview", tooltip="Boxes numbered by track (T0, T1...)"),
                io.String.Output(display_name="report"),
                io.Int.Output(display_name="track_count"),
            ],
        )

    @classmethod
    def execute(cls, face_analysis, image, threshold=0.5, min_face_size=24, detect_every=1, max_gap=8, scene_cut=0.5,
                smoothing=0.5):
        n = image.shape[0] if image is not None and image.ndim == 4 else 1
        tracks = track_clip(face_analysis, image, threshold, min_face_size, detect_every, max_gap, scene_cut,
                            smoothing, tick=progress_callback(n))
        report = tracks.report
        return io.NodeOutput(tracks, draw_tracks(image, tracks), report, len(tracks), ui={"text": [report]})


NODES = [FaceAnonTrackFaces]
