"""The privacy check in the graph: does every anonymized face still match its original (ArcFace)?

Thin V3 adapter over `faceanon.verify` (host-independent, documented there: what is compared, why a face missing
in the output fails, what the default threshold means).
"""

from __future__ import annotations

import logging

from ..faceanon import verify as identity_check
from ..faceanon.faces import IfNoFace, detect
from .faces import ui_payload
from .knobs import knob_input
from .types import FaceAnalysis, Faces, io

logger = logging.getLogger(__name__)

# The on_failure widget's labels and the action each stands for (saved workflows hold the labels).
ON_FAILURE = {
    "report only": identity_check.OnFailure.REPORT,
    "stop with error": identity_check.OnFailure.STOP,
    "blur failing faces": identity_check.OnFailure.BLUR,
    "pixelate failing faces": identity_check.OnFailure.PIXELATE,
}

CATEGORY = "FaceAnon/privacy"


class FaceAnonVerify(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonVerify",
            display_name="Verify Anonymization (FaceAnon)",
            category=CATEGORY,
            is_output_node=True,  # runs (and can stop the run) even when nothing uses its outputs
            description=(
                "Privacy check: for every face of the original, the ArcFace cosine similarity between the "
                "original face and the anonymized image at the same place (aligned on the original's keypoints in "
                "both). A face passes when it is still found in the output and its similarity is below the "
                "threshold; a face no longer found in the output fails (it cannot be verified). On failure: "
                "report only, stop the run with an error, or blur / pixelate the failing faces. Outputs the "
                "(possibly repaired) image, a mask of the failing faces and a JSON report. Passing proves only "
                "that this recognizer no longer matches the face; see the README's privacy section."),
            inputs=[
                FaceAnalysis.Input("face_analysis", tooltip="The insightface pack whose ArcFace recognizer judges "
                                                            "the faces (Load Face Analysis)"),
                io.Image.Input("original", tooltip="The images before anonymization"),
                io.Image.Input("anonymized", tooltip="The full-size results (after Paste Faces), same size as the "
                                                     "originals; one original may be checked against a batch of "
                                                     "variants"),
                Faces.Input("faces", optional=True,
                            tooltip="The faces found in the original (Detect Faces). Not connected: they are "
                                    "detected here with the settings below"),
                io.Float.Input("threshold", default=identity_check.DEFAULT_THRESHOLD, min=0.05, max=0.99, step=0.01,
                               tooltip="ArcFace cosine similarity at or above which a face FAILS (may still be "
                                       "recognisable). 0.25 is below common verification operating points "
                                       "(about 0.28 at 0.1 % false accepts on LFW, 0.38 LFW-optimal); unrelated "
                                       "people score about 0.0-0.2"),
                io.Combo.Input("on_failure", options=list(ON_FAILURE), default="report only",
                               tooltip="report only: pass the image through and report; stop with error: stop the "
                                       "run naming every failing face; blur / pixelate failing faces: replace "
                                       "only those faces' regions (the mask output)"),
                knob_input("detection_threshold", note="Used on the output, and on the original when `faces` "
                                                        "is not connected."),
                knob_input("min_face_size"),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The anonymized image, with failing faces blurred or "
                                                              "pixelated if that action was chosen"),
                io.Mask.Output(display_name="failing_mask", tooltip="1 = a face that failed the check (the region "
                                                                    "the repair actions replace)"),
                io.String.Output(display_name="report", tooltip="JSON: per face the similarity, found in the "
                                                                "output, pass/fail, repair"),
            ],
        )

    @classmethod
    def execute(cls, face_analysis, original, anonymized, faces=None, threshold=identity_check.DEFAULT_THRESHOLD,
                on_failure="report only", detection_threshold=0.5, min_face_size=24):
        if faces is None:
            faces = detect(face_analysis, original, threshold=detection_threshold, min_face_size=min_face_size,
                             landmarks=True, embeddings=False, if_no_face=IfNoFace.FLAG)
        image, mask, report = identity_check.verify(
            original, anonymized, faces, identity_check.analysis_embedder(face_analysis),
            identity_check.analysis_detector(face_analysis, detection_threshold, min_face_size), threshold=threshold,
            action=ON_FAILURE[on_failure], model=face_analysis.embedding_model)
        text = report.to_text()
        if report.passed:
            logger.info("FaceAnon Verify: %s", report.summary())
        else:
            logger.warning("FaceAnon Verify: %s", text)
        return io.NodeOutput(image, mask, report.to_json(), ui=ui_payload(text, report.to_dict()))


NODES = [FaceAnonVerify]
