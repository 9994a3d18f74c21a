"""Faces: detection, alignment, identity embeddings, region masks and paste-back (host-independent).

The functions other parts of the pack call (all plain functions on torch tensors / numpy):

    load_face_analysis(name, roots, provider="auto", det_size=640) -> FaceAnalysis
    detect(analysis, images[B,H,W,C], threshold=0.5, min_face_size=24, max_faces=0, order="largest first",
           landmarks=True, embeddings=True, if_no_face=IfNoFace.ERROR, progress=None) -> Faces
    face_identity(faces, select="largest", index=0, combine="average") -> Identity
    embed_faces(analysis, image[H,W,C], kps list) -> list of (512,) normalised embeddings
    crop_faces(images, faces, size=512, margin=1.0, padding="reflection") -> (crops[N,S,S,3], FaceCrops)
    paste_faces(images, crops, info, mask=None, mask_space="auto", limit_to_face=True, feather=16,
                color_match="mean") -> (images[B,H,W,C], alpha[B,H,W])
    region_mask(faces, regions, mode="anonymize", dilation=0, feather=0, coordinates="image", crop_info=None)
        -> [B,H,W] or [N,S,S]
    draw_faces(images, faces) -> preview [B,H,W,3]

MASK convention: 1 = change (anonymize); "keep" masks are the inverse. Faces never go missing silently: images
without a face either raise NoFaceError or are listed in `Faces.missing` (and every report/preview).
"""

from .align import COLOR_MATCH, MASK_SPACE, PADDING, crop_faces, crop_transform, ffhq_frame, paste_faces
from .detection import IfNoFace, detect, scan_plan
from .errors import FaceModelError, NoFaceError
from .identity import IDENTITY_COMBINE, IDENTITY_SELECT, embed_faces, face_identity
from .loading import FaceAnalysis, load_face_analysis
from .packs import KNOWN_PACKS, find_pack, list_packs
from .runtime import PROVIDERS, choose_providers, onnxruntime_distributions, runtime_conflict
from .preview import draw_faces
from .regions import COORDINATES, MODES, REGIONS, parse_regions, region_mask, region_polygons
from .types import ORDERS, Face, FaceCrops, Faces, Identity

__all__ = [
    "COLOR_MATCH", "COORDINATES", "IDENTITY_COMBINE", "IDENTITY_SELECT", "KNOWN_PACKS", "MASK_SPACE",
    "MODES", "ORDERS", "PADDING", "PROVIDERS", "REGIONS",
    "Face", "FaceAnalysis", "FaceCrops", "FaceModelError", "Faces", "Identity", "IfNoFace", "NoFaceError",
    "choose_providers", "crop_faces", "crop_transform", "detect", "draw_faces", "embed_faces", "face_identity",
    "ffhq_frame", "find_pack", "list_packs", "load_face_analysis", "onnxruntime_distributions", "paste_faces",
    "parse_regions", "region_mask", "region_polygons", "runtime_conflict", "scan_plan",
]
