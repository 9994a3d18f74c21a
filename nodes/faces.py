"""Face nodes: load an insightface pack, detect faces, identity embeddings, aligned crops, paste-back, region masks.

Thin V3 adapters over `faceanon.faces` (host-independent, documented there). This layer adds ComfyUI's model
folders (models/insightface and extra_model_paths.yaml), progress bars and interruption checks.

MASK convention everywhere: 1 = change (anonymize), 0 = keep as is.
"""

from __future__ import annotations

import json
import logging
import os

import comfy.model_management
import comfy.utils
import folder_paths
import torch

from ..faceanon import faces as face_api
from .knobs import knob_input
from .types import FaceAnalysis, FaceCrops, Faces, Identity, io

logger = logging.getLogger(__name__)

CATEGORY = "FaceAnon/faces"
MASK_TOOLTIP = "1 = change (anonymize), 0 = keep as is (ComfyUI MASK convention)."
# The if_no_face widget's labels and the policy each stands for (saved workflows hold the labels).
IF_NO_FACE = {"error": face_api.IfNoFace.ERROR, "flag and pass through": face_api.IfNoFace.FLAG}
# UI payload key read by js/faceanon.js: one JSON object of structured report fields.
UI_REPORT = "faceanon_report"


def ui_payload(text: str, fields: dict) -> dict:
    """A node's UI result: the report text, and its structured fields (JSON) for the frontend extension."""
    return {"text": [text], UI_REPORT: [json.dumps(fields)]}


def insightface_roots() -> list[str]:
    """Every folder registered as 'insightface' (models/insightface and extra_model_paths.yaml entries)."""
    try:
        roots = list(folder_paths.get_folder_paths("insightface"))
    except KeyError:
        roots = []
    default = os.path.join(folder_paths.models_dir, "insightface")
    if default not in roots:
        roots.append(default)
    return roots


def progress_callback(total: int):
    """A callback (done, total) that ticks ComfyUI's progress bar and honours Cancel."""
    bar = comfy.utils.ProgressBar(max(total, 1))

    def tick(done: int, total_now: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, max(total_now, 1))

    return tick


class FaceAnonLoadFaceAnalysis(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonLoadFaceAnalysis",
            display_name="Load Face Analysis (FaceAnon)",
            category=CATEGORY,
            description=(
                "Loads an insightface model pack (face detector, ArcFace recognizer, 106-point landmarks) from "
                "models/insightface/models/<pack>/ on onnxruntime. buffalo_l and antelopev2 are the packs other "
                "face nodes use; their models are for non-commercial research use only. A missing pack or file "
                "gives an error that lists the expected files and folder."),
            inputs=[
                io.Combo.Input("model_pack", options=face_api.list_packs(insightface_roots()), default="buffalo_l",
                               tooltip="Folder in models/insightface/models/ (buffalo_l: det_10g, w600k_r50, "
                                       "2d106det; antelopev2: scrfd_10g_bnkps, glintr100, 2d106det)"),
                io.Combo.Input("provider", options=list(face_api.PROVIDERS), default="auto",
                               tooltip="onnxruntime execution provider. auto = CUDA, ROCm, CoreML or DirectML when "
                                       "the installed onnxruntime offers it, else CPU (face analysis takes "
                                       "milliseconds: CPU is fine)"),
                io.Int.Input("det_size", default=640, min=160, max=2048, step=32,
                             tooltip="Detector input size in pixels (SCRFD was trained at 640). Large photos are "
                                     "also scanned in tiles of this size, see min_face_size in Detect Faces"),
            ],
            outputs=[FaceAnalysis.Output(display_name="face_analysis")],
        )

    @classmethod
    def fingerprint_inputs(cls, model_pack, provider="auto", det_size=640):
        # reload when the pack's files change
        try:
            folder, _ = face_api.find_pack(model_pack, insightface_roots())
            stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.onnx"))
        except face_api.FaceModelError:
            stats = "missing"
        return f"{model_pack}|{provider}|{det_size}|{stats}"

    @classmethod
    def execute(cls, model_pack, provider="auto", det_size=640):
        analysis = face_api.load_face_analysis(model_pack, insightface_roots(), provider=provider, det_size=det_size)
        logger.info("FaceAnon: loaded face analysis %s", analysis.describe())
        return io.NodeOutput(analysis)


class FaceAnonDetectFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonDetectFaces",
            display_name="Detect Faces (FaceAnon)",
            category=CATEGORY,
            description=(
                "Finds every face in every image: boxes, 5 keypoints, 106 landmarks, detector scores and "
                "ArcFace identity embeddings. Large photos are scanned in tiles so small faces are not lost. "
                "Images without a face raise an error, or, if chosen, pass through flagged as NOT anonymized "
                "(red frame in the preview, WARNING in the report)."),
            inputs=[
                FaceAnalysis.Input("face_analysis"),
                io.Image.Input("image"),
                knob_input("detection_threshold", "threshold"),
                knob_input("min_face_size"),
                io.Int.Input("max_faces", default=0, min=0, max=1024,
                             tooltip="Keep at most this many faces per image, the largest (0 = all). Faces beyond "
                                     "it are NOT anonymized; the report says how many"),
                io.Combo.Input("order", options=list(face_api.ORDERS), default="largest first",
                               tooltip="Order of the faces within each image: face numbers, crops and identities "
                                       "follow it"),
                io.Combo.Input("if_no_face", options=list(IF_NO_FACE), default="error",
                               tooltip="An image without a face: stop with an error naming it, or pass it through "
                                       "flagged as NOT anonymized (never silently)"),
                io.Boolean.Input("embeddings", default=True,
                                 tooltip="Compute the ArcFace identity embedding of every face (needed for Face "
                                         "Identity and the identity check)"),
            ],
            outputs=[
                Faces.Output(display_name="faces"),
                io.Image.Output(display_name="preview",
                                tooltip="Numbered boxes, keypoints and landmarks; images without a face get a red "
                                        "frame"),
                io.String.Output(display_name="report"),
                io.Int.Output(display_name="face_count"),
            ],
        )

    @classmethod
    def execute(cls, face_analysis, image, threshold=0.5, min_face_size=24, max_faces=0, order="largest first",
                if_no_face="error", embeddings=True):
        faces = face_api.detect(face_analysis, image, threshold=threshold, min_face_size=min_face_size,
                                max_faces=max_faces, order=order, embeddings=embeddings,
                                if_no_face=IF_NO_FACE[if_no_face], progress=progress_callback(image.shape[0]))
        if faces.missing:
            logger.warning("FaceAnon: %s", faces.report.splitlines()[0])
        preview = face_api.draw_faces(image, faces)
        fields = {"n_faces": len(faces), "batch_size": faces.batch_size, "images_without_faces": list(faces.missing)}
        return io.NodeOutput(faces, preview, faces.report, len(faces), ui=ui_payload(faces.report, fields))


class FaceAnonFaceIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonFaceIdentity",
            display_name="Face Identity (FaceAnon)",
            category=CATEGORY,
            description=(
                "The 512-d normalised ArcFace embedding of chosen faces, as FACEANON_IDENTITY: the largest face or "
                "face number `index` of each image, or every face; averaged over all of them (e.g. several "
                "reference photos of one person) or kept as a batch."),
            inputs=[
                Faces.Input("faces"),
                io.Combo.Input("select", options=list(face_api.IDENTITY_SELECT), default="largest",
                               tooltip="largest = the largest face of each image; index = face number `index` of "
                                       "each image; all = every face"),
                io.Int.Input("index", default=0, min=-64, max=64,
                             tooltip="With select = index: the face number within each image (detection order; "
                                     "negative counts from the end)"),
                io.Combo.Input("combine", options=list(face_api.IDENTITY_COMBINE), default="average",
                               tooltip="average = one identity (normalised mean); batch = one identity per face"),
            ],
            outputs=[Identity.Output(display_name="identity"), io.String.Output(display_name="report")],
        )

    @classmethod
    def execute(cls, faces, select="largest", index=0, combine="average"):
        ident = face_api.face_identity(faces, select=select, index=index, combine=combine)
        report = f"{len(ident)} identity embedding(s) from {ident.model or 'unknown recognizer'}: " + \
            "; ".join(ident.sources)
        return io.NodeOutput(ident, report)


class FaceAnonCropFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonCropFaces",
            display_name="Crop Faces (FaceAnon)",
            category=CATEGORY,
            description=(
                "Aligned square crop of every face (similarity warp, FFHQ framing: eyes level, face centred with "
                "hair and chin) at the model's resolution: 512 for SD1.5, 1024 for SDXL. Face i of the faces is "
                "crop i. Paste the edited crops back with Paste Faces. With no face at all, one black placeholder "
                "crop is returned so the graph can run (Paste Faces then changes nothing and reports it)."),
            inputs=[
                io.Image.Input("image", tooltip="The images the faces were detected in"),
                Faces.Input("faces"),
                knob_input("resolution", "size"),
                knob_input("margin"),
                io.Combo.Input("padding", options=list(face_api.PADDING), default="reflection",
                               tooltip="How crop pixels beyond the image edge are filled"),
            ],
            outputs=[
                io.Image.Output(display_name="crops"),
                FaceCrops.Output(display_name="face_crops",
                                 tooltip="Warp matrices and face masks for Paste Faces / Region Mask"),
                io.Mask.Output(display_name="face_masks",
                               tooltip="Face-shaped mask of each crop (face with forehead). " + MASK_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, image, faces, size=512, margin=1.0, padding="reflection"):
        crops, info = face_api.crop_faces(image, faces, size=size, margin=margin, padding=padding,
                                          progress=progress_callback(len(faces)))
        masks = info.masks
        if len(faces) == 0:
            logger.warning("FaceAnon: Crop Faces got no face at all; returning one black placeholder crop")
            crops = torch.zeros(1, size, size, 3, device=crops.device)
            masks = torch.zeros(1, size, size, device=crops.device)
        return io.NodeOutput(crops, info, masks)


class FaceAnonPasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonPasteFaces",
            display_name="Paste Faces (FaceAnon)",
            category=CATEGORY,
            description=(
                "Pastes edited crops back by the inverse warp with a feathered face-shaped mask and optional colour "
                "matching. Pixels outside the feathered mask are exactly the input's. Images in which no face was "
                "found are returned unchanged and named in the report as NOT anonymized."),
            inputs=[
                io.Image.Input("image", tooltip="The original images (the ones that were cropped)"),
                io.Image.Input("crops", tooltip="The edited crops, one per face, same order as Crop Faces"),
                FaceCrops.Input("face_crops"),
                io.Float.Input("feather", default=16.0, min=0.0, max=256.0, step=0.5,
                               tooltip="Soft edge width in crop pixels"),
                io.Combo.Input("color_match", options=list(face_api.COLOR_MATCH), default="mean",
                               tooltip="Match the pasted face's colour to the original face (Lab): mean = "
                                       "brightness and tint, mean and contrast = also the spread"),
                io.Boolean.Input("limit_to_face", default=True,
                                 tooltip="Paste only the face-shaped area (face with forehead) of each crop; off "
                                         "pastes the whole crop (or just the mask)"),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where to paste. " + MASK_TOOLTIP + " A crop-space mask (one per crop, e.g. "
                                      "Region Mask in crop coordinates) or an image-space mask; multiplied with the "
                                      "face shape when limit_to_face is on, so a 'keep eyes' mask pastes the face "
                                      "but not the eyes"),
                io.Combo.Input("mask_space", options=list(face_api.MASK_SPACE), default="auto",
                               tooltip="Coordinates of `mask`: auto decides by its size"),
            ],
            outputs=[
                io.Image.Output(display_name="image"),
                io.Mask.Output(display_name="mask", tooltip="Where pixels changed (feathered). " + MASK_TOOLTIP),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, image, crops, face_crops, feather=16.0, color_match="mean", limit_to_face=True, mask=None,
                mask_space="auto"):
        info = face_crops
        if len(info) == 0:
            out, alpha = image.clone(), torch.zeros(image.shape[:3], device=image.device)
        else:
            out, alpha = face_api.paste_faces(image, crops, info, mask=mask, mask_space=mask_space,
                                              limit_to_face=limit_to_face, feather=feather, color_match=color_match,
                                              progress=progress_callback(len(info)))
        report = f"pasted {len(info)} face(s) into {info.batch_size} image(s)"
        if info.missing:
            warn = (f"WARNING: image(s) {', '.join(map(str, info.missing))} had no face and are returned NOT "
                    f"anonymized")
            logger.warning("FaceAnon: %s", warn)
            report = warn + "\n" + report
        return io.NodeOutput(out, alpha, report)


class FaceAnonRegionMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonRegionMask",
            display_name="Face Region Mask (FaceAnon)",
            category=CATEGORY,
            description=(
                "Masks of face regions from the landmarks (106 points; 5-point shapes when the pack has no "
                "landmark model): face, eyes, brows, nose, mouth and their unions. " + MASK_TOOLTIP + " 'keep' "
                "gives the inverse: 0 on the chosen regions (they stay as they are), 1 elsewhere."),
            inputs=[
                Faces.Input("faces"),
                io.Boolean.Input("face", default=False, tooltip="The whole face with forehead"),
                io.Boolean.Input("eyes", default=True),
                io.Boolean.Input("brows", default=False),
                io.Boolean.Input("nose", default=False),
                io.Boolean.Input("mouth", default=False),
                io.Combo.Input("mode", options=list(face_api.MODES), default="keep",
                               tooltip="anonymize = 1 on the regions (change them); keep = 0 on the regions "
                                       "(keep them), 1 elsewhere"),
                io.Int.Input("dilation", default=4, min=-64, max=512,
                             tooltip="Grow (or shrink, negative) the regions by this many pixels"),
                io.Float.Input("feather", default=4.0, min=0.0, max=256.0, step=0.5,
                               tooltip="Soft edge width in pixels"),
                io.Combo.Input("coordinates", options=list(face_api.COORDINATES), default="image",
                               tooltip="image = one mask per image (all its faces); crop = one mask per face in "
                                       "the aligned crop (needs face_crops)"),
                FaceCrops.Input("face_crops", optional=True,
                                tooltip="From Crop Faces; needed for crop coordinates"),
            ],
            outputs=[io.Mask.Output(display_name="mask", tooltip=MASK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, faces, face=False, eyes=True, brows=False, nose=False, mouth=False, mode="keep", dilation=4,
                feather=4.0, coordinates="image", face_crops=None):
        chosen = [name for name, on in (("face", face), ("eyes", eyes), ("brows", brows), ("nose", nose),
                                        ("mouth", mouth)) if on]
        if not chosen:
            raise ValueError("Face Region Mask: turn on at least one region (face, eyes, brows, nose, mouth)")
        if coordinates == "crop":
            if face_crops is None:
                raise ValueError("Face Region Mask: crop coordinates need the face_crops output of Crop Faces")
            faces = face_crops.faces
        mask = face_api.region_mask(faces, chosen, mode=mode, dilation=dilation, feather=feather,
                                    coordinates=coordinates, crop_info=face_crops)
        if mask.shape[0] == 0:  # crop coordinates without any face: one empty placeholder, like Crop Faces
            s = face_crops.size
            mask = torch.zeros(1, s, s) if mode == "anonymize" else torch.ones(1, s, s)
        return io.NodeOutput(mask)


NODES = [FaceAnonLoadFaceAnalysis, FaceAnonDetectFaces, FaceAnonFaceIdentity, FaceAnonCropFaces,
         FaceAnonPasteFaces, FaceAnonRegionMask]
