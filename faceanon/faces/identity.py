"""Identities: ArcFace embeddings of faces, and the identity taken from detected faces.

    embed_faces(analysis, image, kps) -> list of (512,) normalised embeddings
    face_identity(faces, select, index, combine) -> Identity
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ._image import as_bhwc, rgb, to_bgr_uint8
from .errors import FaceModelError
from .loading import FaceAnalysis
from .types import Faces, Identity

def arcface_embeddings(analysis: FaceAnalysis, bgr: np.ndarray, kpss: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Normalised embeddings, aligned exactly as insightface does (norm_crop at the recognizer's size)."""
    from insightface.utils import face_align

    rec = analysis.recognizer
    size = int(rec.input_size[0])
    with warnings.catch_warnings():  # scikit-image deprecations inside insightface's norm_crop
        warnings.simplefilter("ignore", FutureWarning)
        crops = [face_align.norm_crop(bgr, landmark=np.asarray(k, np.float32), image_size=size) for k in kpss]
    batch = rec.input_shape[0]
    chunk = len(crops) if not isinstance(batch, int) or batch <= 0 else batch
    feats = []
    for i in range(0, len(crops), max(chunk, 1)):
        feats.append(np.asarray(rec.get_feat(crops[i:i + chunk]), np.float32).reshape(len(crops[i:i + chunk]), -1))
    feats = np.concatenate(feats) if feats else np.zeros((0, 512), np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return list((feats / np.maximum(norms, 1e-12)).astype(np.float32))


def embed_faces(analysis: FaceAnalysis, image: torch.Tensor, kps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """ArcFace embeddings of faces given by their 5 keypoints in one image.

    Args:
        analysis: a FaceAnalysis with a recognizer.
        image: [H, W, C] float 0..1 (C = 1..4).
        kps: one (5, 2) keypoint array per face, image pixels.

    Returns:
        One (512,) float32 L2-normalised embedding per face, aligned and computed exactly as insightface's
        FaceAnalysis does (norm_crop at the recognizer's input size).
    """
    if analysis.recognizer is None:
        raise FaceModelError(f"face model pack '{analysis.name}' has no recognizer (ArcFace) model")
    bgr = to_bgr_uint8(rgb(as_bhwc(image)[0]))
    return arcface_embeddings(analysis, bgr, [np.asarray(k, np.float32).reshape(5, 2) for k in kps])


IDENTITY_SELECT = ("largest", "index", "all")
IDENTITY_COMBINE = ("average", "batch")


def face_identity(faces: Faces, select: str = "largest", index: int = 0, combine: str = "average") -> Identity:
    """ArcFace identity from detected faces (e.g. of one or several reference photos).

    Args:
        faces: Faces with embeddings.
        select: "largest" = the largest face of each image; "index" = face number `index` of each image (in
            the detection order); "all" = every face.
        index: used with select="index"; negative counts from the end.
        combine: "average" = one identity, the normalised mean of the selected embeddings (averaging several
            reference photos); "batch" = one row per selected face.

    Returns:
        Identity with embeddings [K, 512].

    Raises:
        ValueError: an image has no face (or no face number `index`), or the faces have no embeddings.
    """
    if select not in IDENTITY_SELECT:
        raise ValueError(f"select must be one of {IDENTITY_SELECT}, got {select!r}")
    if combine not in IDENTITY_COMBINE:
        raise ValueError(f"combine must be one of {IDENTITY_COMBINE}, got {combine!r}")
    if faces.missing:
        raise ValueError(
            f"no face in reference image(s) {', '.join(map(str, faces.missing))}: an identity cannot be taken from "
            f"them. Remove those images or lower the detection threshold."
        )
    chosen: list[tuple[int, int]] = []  # (global number, number within image)
    for img in range(faces.batch_size):
        numbers = faces.indices_for_image(img)
        if not numbers:  # deselected (e.g. by Faces.select); images where detection failed are in `missing`
            continue
        if select == "all":
            chosen += [(n, k) for k, n in enumerate(numbers)]
        elif select == "largest":
            n = max(numbers, key=lambda n: faces[n].area)
            chosen.append((n, numbers.index(n)))
        else:
            if not -len(numbers) <= index < len(numbers):
                raise ValueError(f"image {img} has {len(numbers)} face(s): there is no face number {index}")
            chosen.append((numbers[index], index % len(numbers)))
    if not chosen:
        raise ValueError("no faces to take an identity from")
    sub = faces.select([n for n, _ in chosen])
    emb = sub.embeddings()
    sources = tuple(f"image {faces[n].image_index}, face {k}" for n, k in chosen)
    if combine == "average":
        mean = torch.nn.functional.normalize(emb.mean(0), dim=0)[None]
        return Identity(embeddings=mean, sources=(f"mean of {len(sources)}: " + "; ".join(sources),),
                        model=faces.embedding_model)
    return Identity(embeddings=emb, sources=sources, model=faces.embedding_model)
