"""FaceAnonReferenceFaces: reference photos -> the identities of the people to exempt (or to target).

Each reference photo must show the person's face; the largest face of each photo is used. The identities feed
Anonymize People's policy ("everyone except the reference people" / "only the reference people"); matching is
explained in `faceanon.reference`.
"""

from __future__ import annotations

from ..faceanon import faces as F  # noqa: N812
from ..faceanon.faces._image import as_bhwc
from .faces import progress_callback, ui_payload
from .knobs import knob_input
from .types import FaceAnalysis, Identity, io

COMBINE = {"one person per photo": "batch", "all photos show one person": "average"}


def reference_identities(analysis, photos, combine: str = "one person per photo", threshold: float = 0.5,
                         min_face_size: float = 24, tick=None):
    """(Identity [R, 512], faces, report). Raises when a photo has no face or the pack has no recognizer."""
    photos = as_bhwc(photos, "Reference Faces: image")
    faces = F.detect(analysis, photos, threshold=threshold, min_face_size=min_face_size,
                     if_no_face=F.IfNoFace.FLAG, progress=tick)
    if faces.missing:
        raise ValueError(
            f"Reference Faces: no face found in reference photo(s) {', '.join(map(str, faces.missing))} of "
            f"{faces.batch_size}: every reference photo must show the person's face, clearly and large enough "
            f"(at least {min_face_size:g} px). Use another photo, crop it around the face, or lower threshold / "
            "min_face_size.")
    if not faces.embedding_model:
        raise ValueError(f"Reference Faces: the face analysis pack {faces.model!r} has no recognizer (ArcFace), so "
                         "people cannot be recognised; use buffalo_l or antelopev2")
    largest = faces.largest()
    ident = F.face_identity(faces, select="largest", combine=COMBINE[combine])
    extra = [n - 1 for n in faces.counts()]
    lines = [f"{len(ident)} reference identit{'y' if len(ident) == 1 else 'ies'} from {faces.batch_size} photo(s) "
             f"({faces.embedding_model})"]
    lines += [f"  photo {i}: {n} other face(s) ignored (the largest face is the reference)"
              for i, n in enumerate(extra) if n > 0]
    return ident, largest, "\n".join(lines)


class FaceAnonReferenceFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonReferenceFaces",
            display_name="Reference Faces (FaceAnon)",
            category="FaceAnon/video",
            description=(
                "Photos of the people to keep (e.g. those who agreed to be filmed) or to target -> their ArcFace "
                "identities, for Anonymize People's policy. The largest face of each photo is used; a photo "
                "without a face is an error."),
            inputs=[
                FaceAnalysis.Input("face_analysis"),
                io.Image.Input("image", tooltip="One or more reference photos (an IMAGE batch; same size)."),
                io.Combo.Input("combine", options=list(COMBINE), default="one person per photo",
                               tooltip="one person per photo = one identity per photo (several people); all "
                                       "photos show one person = their average (one identity, more robust)"),
                knob_input("detection_threshold", "threshold"),
                knob_input("min_face_size"),
            ],
            outputs=[Identity.Output(display_name="references"), io.Image.Output(display_name="preview"),
                     io.String.Output(display_name="report")],
        )

    @classmethod
    def execute(cls, face_analysis, image, combine="one person per photo", threshold=0.5, min_face_size=24):
        ident, faces, report = reference_identities(face_analysis, image, combine, threshold, min_face_size,
                                                    progress_callback(int(image.shape[0]) if image.ndim == 4 else 1))
        preview = F.draw_faces(image, faces)
        return io.NodeOutput(ident, preview, report, ui=ui_payload(report, {"references": len(ident)}))


NODES = [FaceAnonReferenceFaces]
