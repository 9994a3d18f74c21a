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
from .faces import progress_callback, ui_payload
from .knobs import knob_input
from .types import FaceAnalysis, Tracks, io

logger = logging.getLogger(__name__)

CATEGORY = "FaceAnon/video"


def detector(analysis, frames, threshold: float, min_face_size: float, tick=None):
    """detect(frame indices) -> faces with `image_index` = frame, for `faceanon.tracking.track_video`."""
    done = []

    def detect(indices: list[int]):
        found = F.detect(analysis, frames[indices], threshold=threshold, min_face_size=min_face_size,
                         if_no_face=F.IfNoFace.FLAG)
        done.extend(indices)
        if tick is not None:
            tick(len(done), len(frames))
        return [replace(f, image_index=indices[f.image_index]) for f in found]

    return detect


def track_clip(analysis, frames, threshold=0.5, min_face_size=24, detect_every=1, max_gap=8, scene_cut=0.5,
               smoothing=0.5, tick=None):
    """Validated tracking of an IMAGE batch (the node's work; a clip needs at least 2 frames)."""
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
                knob_input("detection_threshold", "threshold"),
                knob_input("min_face_size"),
                knob_input("detect_every"),
                knob_input("max_gap"),
                knob_input("scene_cut"),
                knob_input("smoothing"),
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
        fields = {"frames": tracks.frame_count, "cuts": list(tracks.cuts), "observed": len(tracks.observed),
                  "tracks": tracks.summary()}
        return io.NodeOutput(tracks, draw_tracks(image, tracks), report, len(tracks), ui=ui_payload(report, fields))


NODES = [FaceAnonTrackFaces]
