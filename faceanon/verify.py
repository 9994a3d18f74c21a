"""Identity-similarity gate: did every face really change identity?

For every face found in the ORIGINAL image, the ArcFace embedding of the original face is compared (cosine
similarity) with the embedding of the anonymized image taken in the same place: the crop is aligned on the
original face's 5 keypoints in both images, so a face that no detector finds any more is still measured. When a
face is detected in the output at that place, its own keypoints give a second alignment and the higher of the two
similarities is kept (the check takes the recognizer's best chance).

A face passes when it is still found in the output AND its similarity is below `threshold`. A face that is not
found in the output any more is a failure ("missing"): the gate cannot vouch for a face it cannot see (blurred to
nothing, cut off, or never processed), so it is never counted as a pass.

Threshold (cosine similarity of L2-normalised insightface ArcFace embeddings, buffalo_l `w600k_r50` or antelopev2
`glintr100`). Recognizers accept "same person" ABOVE their operating threshold, so the gate fails a face whose
similarity reaches it. Reference points (approximate; measure on your own data for a precise figure):
- about 0.38: the LFW accuracy-optimal threshold of insightface's original deploy script (squared L2 distance
  1.24 between unit vectors, i.e. cosine 1 - 1.24/2);
- about 0.28: ArcFace at a false-accept rate of 0.1 % on LFW, as reported by the AdvFaces authors;
- unrelated people score about 0.0-0.2, and photos of the same person usually 0.4-0.8.
The default, 0.25, sits below both operating points: a face that passes would be rejected as "not the same
person" by a verifier run at either of them, with some margin for a recognizer other than the one used here.
Raise it (towards 0.35) to tolerate resemblance; lower it to be stricter (more false failures).

Actions on failure (`OnFailure`): REPORT only; STOP (raises IdentityLeakError naming every failing face); BLUR /
PIXELATE the failing faces (only the failing faces' regions change; everything else stays bit-identical).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .faces.types import Face, Faces

DEFAULT_THRESHOLD = 0.25
MATCH_IOU = 0.3  # a detection in the output at IoU >= this with the original box is "the same face, still there"
REPAIR_DILATION = 0.15  # the repaired region: the face region grown by this fraction of the face size
REPAIR_FEATHER = 0.03  # soft edge of the repaired region, as a fraction of the face size
BLUR_SIGMA = 0.12  # strong blur: Gaussian sigma as a fraction of the face size
PIXEL_BLOCKS = 6  # strong pixelation: blocks across the face

# embed(image [H, W, C] float 0..1, keypoints [N, 5, 2] pixels) -> [N, D] L2-normalised embeddings
Embedder = Callable[[torch.Tensor, np.ndarray], np.ndarray]
# detect(images [B, H, W, C]) -> Faces (images without faces flagged, never raising)
Detector = Callable[[torch.Tensor], Faces]


class OnFailure(enum.Enum):
    """What `verify` does when a face fails the check."""

    REPORT = "report"  # pass the image through; the report says which faces fail
    STOP = "stop"  # raise IdentityLeakError naming every failing face
    BLUR = "blur"  # replace the failing faces' regions by a strong blur
    PIXELATE = "pixelate"  # ... or by a strong pixelation


REDACTIONS = {OnFailure.BLUR: "blurred", OnFailure.PIXELATE: "pixelated"}


class IdentityLeakError(RuntimeError):
    """Raised by the STOP action: at least one face may still be recognisable."""


@dataclass(frozen=True)
class FaceCheck:
    """The verdict for one face of the original in one anonymized image."""

    image_index: int  # index in the anonymized batch
    face_index: int  # the face's global number in the original's Faces
    box: tuple[float, float, float, float]
    similarity: float | None  # ArcFace cosine similarity, original vs anonymized (max over alignments)
    found_in_output: bool
    status: str  # "pass", "fail" (too similar) or "missing" (not found in the output)
    similarity_after_repair: float | None = None
    repaired: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def describe(self, threshold: float) -> str:
        where = f"image {self.image_index}, face {self.face_index}"
        sim = "n/a" if self.similarity is None else f"{self.similarity:.3f}"
        if self.status == "pass":
            text = f"{where}: pass (similarity {sim} < {threshold:g})"
        elif self.status == "fail":
            text = f"{where}: FAIL, similarity {sim} >= {threshold:g}: the face may still be recognisable"
        else:
            text = (f"{where}: FAIL, no face found in the output at this place (similarity there {sim}): it cannot "
                    "be verified")
        if self.repaired:
            after = "n/a" if self.similarity_after_repair is None else f"{self.similarity_after_repair:.3f}"
            text += f"; replaced (similarity after repair {after})"
        return text


@dataclass(frozen=True)
class VerifyReport:
    threshold: float
    action: OnFailure
    checks: tuple[FaceCheck, ...]
    batch_size: int
    images_without_faces: tuple[int, ...] = ()  # original images where no face was found: nothing was checked
    model: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> tuple[FaceCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        n, bad = len(self.checks), len(self.failures)
        head = (f"identity check: {n - bad}/{n} face(s) pass (ArcFace cosine < {self.threshold:g}"
                + (f", {self.model}" if self.model else "") + ")")
        if bad:
            missing = sum(c.status == "missing" for c in self.failures)
            head += f"; {bad} FAIL" + (f" ({missing} not found in the output)" if missing else "")
            if self.action in REDACTIONS:
                head += f"; {REDACTIONS[self.action]}"
        return head

    def to_text(self) -> str:
        lines = [self.summary()]
        if self.images_without_faces:
            lines.append(f"WARNING: no face found in original image(s) "
                         f"{', '.join(map(str, self.images_without_faces))}: nothing was checked there")
        lines += [c.describe(self.threshold) for c in self.checks]
        lines += list(self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "passed": self.passed,
            "summary": self.summary(),
            "threshold": self.threshold,
            "action": self.action.value,
            "model": self.model,
            "batch_size": self.batch_size,
            "n_faces": len(self.checks),
            "n_failed": len(self.failures),
            "images_without_faces": list(self.images_without_faces),
            "faces": [{k: clean(v) for k, v in asdict(c).items()}
                      | {"box": [round(x, 1) for x in c.box], "text": c.describe(self.threshold)}
                      for c in self.checks],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)


# -------------------------------------------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _check_inputs(original: torch.Tensor, anonymized: torch.Tensor) -> None:
    if original.ndim != 4 or anonymized.ndim != 4:
        raise ValueError(f"expected IMAGE batches [B, H, W, C], got original {tuple(original.shape)} and anonymized "
                         f"{tuple(anonymized.shape)}")
    if original.shape[1:3] != anonymized.shape[1:3]:
        raise ValueError(
            f"the anonymized image is {anonymized.shape[2]}x{anonymized.shape[1]} but the original is "
            f"{original.shape[2]}x{original.shape[1]}: the check compares each face at the same place in both, so "
            "connect the full-size result (after pasting the faces back), not a crop or a resized image")
    if original.shape[0] not in (1, anonymized.shape[0]):
        raise ValueError(
            f"the original batch has {original.shape[0]} image(s) and the anonymized batch {anonymized.shape[0]}: "
            "connect batches of the same length (image i anonymized from original i), or one original for a batch "
            "of variants of it")


def _source_index(original_batch: int, image_index: int) -> int:
    return 0 if original_batch == 1 else image_index


def check_faces(original: torch.Tensor, anonymized: torch.Tensor, faces: Faces, embed: Embedder,
                detect: Detector, threshold: float = DEFAULT_THRESHOLD) -> tuple[FaceCheck, ...]:
    """Verdicts for every face of `faces` (found in `original`) in every matching anonymized image.

    With one original and a batch of anonymized images, every anonymized image is checked against it.
    """
    _check_inputs(original, anonymized)
    if faces.image_size != tuple(original.shape[1:3]) or faces.batch_size != original.shape[0]:
        raise ValueError(
            f"the faces were found in {faces.batch_size} image(s) of {faces.image_size[1]}x{faces.image_size[0]}, "
            f"but the original is {original.shape[0]} image(s) of {original.shape[2]}x{original.shape[1]}: connect "
            "the faces detected in this original")
    out_faces = detect(anonymized)
    ref_cache: dict[int, np.ndarray] = {}
    checks = []
    for j in range(anonymized.shape[0]):
        src = _source_index(original.shape[0], j)
        numbers = faces.indices_for_image(src)
        if not numbers:
            continue
        if src not in ref_cache:
            ref_cache[src] = embed(original[src], np.stack([faces[n].kps for n in numbers]))
        refs = ref_cache[src]
        kps = [faces[n].kps for n in numbers]
        detected = out_faces.for_image(j)
        matches: list[Face | None] = []
        for n in numbers:
            scored = [(_iou(faces[n].box, d.box), d) for d in detected]
            best = max(scored, key=lambda t: t[0], default=(0.0, None))
            matches.append(best[1] if best[0] >= MATCH_IOU else None)
        # alignment on the original's keypoints, and on the output's own keypoints where the face was re-found
        embs = embed(anonymized[j], np.stack(kps))
        need = [m for m in matches if m is not None and m.embedding is None]
        own_embs = dict(zip(map(id, need), embed(anonymized[j], np.stack([m.kps for m in need])), strict=True)) \
            if need else {}
        for i, n in enumerate(numbers):
            sim = float(np.dot(refs[i], embs[i]))
            m = matches[i]
            if m is not None:
                own = m.embedding if m.embedding is not None else own_embs[id(m)]
                sim = max(sim, float(np.dot(refs[i], own)))
            found = m is not None
            status = "missing" if not found else ("fail" if sim >= threshold else "pass")
            box = tuple(float(x) for x in faces[n].box)
            checks.append(FaceCheck(j, n, box, sim, found, status))
    return tuple(checks)


# -------------------------------------------------------------------------------------------------------------
def failing_mask(faces: Faces, checks: Sequence[FaceCheck], batch_size: int, device="cpu") -> torch.Tensor:
    """[B, H, W] mask (1 = a failing face's region: the face region grown by REPAIR_DILATION x the face size)."""
    from .faces.regions import region_mask

    h, w = faces.image_size
    mask = torch.zeros(batch_size, h, w, dtype=torch.float32, device=device)
    for c in checks:
        if c.passed:
            continue
        face = faces[c.face_index]
        one = faces.select([c.face_index])
        # region_mask draws into the face's own image index of the original batch: take that plane
        m = region_mask(one, "face", dilation=REPAIR_DILATION * face.size, feather=REPAIR_FEATHER * face.size,
                        device=device)[face.image_index]
        mask[c.image_index] = torch.maximum(mask[c.image_index], m)
    return mask


def _window(mask_plane: torch.Tensor, pad: int) -> tuple[int, int, int, int] | None:
    ys, xs = torch.nonzero(mask_plane > 0, as_tuple=True)
    if ys.numel() == 0:
        return None
    h, w = mask_plane.shape
    return (max(0, int(ys.min()) - pad), min(h, int(ys.max()) + 1 + pad),
            max(0, int(xs.min()) - pad), min(w, int(xs.max()) + 1 + pad))


def redact(images: torch.Tensor, mask: torch.Tensor, faces: Faces, checks: Sequence[FaceCheck],
           mode: str) -> torch.Tensor:
    """`images` with every failing face's region replaced by a strong blur ("blur") or pixelation ("pixelate").

    Returns a new tensor; pixels where `mask` is 0 are bit-identical to the input.
    """
    import kornia

    if mode not in ("blur", "pixelate"):
        raise ValueError(f"redaction mode must be 'blur' or 'pixelate', got {mode!r}")
    out = images.clone()
    for j in range(images.shape[0]):
        failing = [c for c in checks if c.image_index == j and not c.passed]
        if not failing:
            continue
        size = max(faces[c.face_index].size for c in failing)
        sigma = max(1.0, BLUR_SIGMA * size)
        win = _window(mask[j], int(math.ceil(3 * sigma)) + 1)
        if win is None:
            continue
        y0, y1, x0, x1 = win
        patch = images[j, y0:y1, x0:x1].permute(2, 0, 1)[None].float()  # [1, C, h, w]
        if mode == "blur":
            k = 2 * int(math.ceil(3 * sigma)) + 1
            done = kornia.filters.gaussian_blur2d(patch, (k, k), (sigma, sigma), border_type="replicate")
        else:
            block = max(1.0, size / PIXEL_BLOCKS)
            ph, pw = patch.shape[-2:]
            small = torch.nn.functional.interpolate(patch, size=(max(1, round(ph / block)), max(1, round(pw / block))),
                                                    mode="area")
            done = torch.nn.functional.interpolate(small, size=(ph, pw), mode="nearest")
        done = done[0].permute(1, 2, 0).to(images.dtype)
        m = mask[j, y0:y1, x0:x1, None].to(images.dtype)
        region = out[j, y0:y1, x0:x1]
        out[j, y0:y1, x0:x1] = torch.where(m > 0, region * (1 - m) + done * m, region)
    return out


def verify(original: torch.Tensor, anonymized: torch.Tensor, faces: Faces, embed: Embedder, detect: Detector,
           threshold: float = DEFAULT_THRESHOLD, action: OnFailure = OnFailure.REPORT,
           model: str = "") -> tuple[torch.Tensor, torch.Tensor, VerifyReport]:
    """Check every face; act on failures. Returns (image, mask of failing faces [B, H, W], report).

    The image is `anonymized` itself unless an action repaired it (then a new tensor). `OnFailure.STOP` raises
    IdentityLeakError with the report's text.
    """
    try:
        action = OnFailure(action)
    except ValueError:
        raise ValueError(f"action must be one of {', '.join(repr(a.value) for a in OnFailure)} (OnFailure), got "
                         f"{action!r}") from None
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a cosine similarity between 0 and 1, got {threshold}")
    checks = check_faces(original, anonymized, faces, embed, detect, threshold)
    mask = failing_mask(faces, checks, anonymized.shape[0], device=anonymized.device)
    image = anonymized
    notes = []
    if faces.missing:
        notes.append("images without a face in the original are passed through unchecked")
    report = VerifyReport(threshold, action, checks, anonymized.shape[0], tuple(faces.missing), model, tuple(notes))
    if report.passed:
        return image, mask, report
    if action is OnFailure.STOP:
        raise IdentityLeakError(
            report.to_text() + "\nThe run was stopped by FaceAnon Verify (action 'stop with error'). Anonymize more "
            "strongly (e.g. a higher identity scale or more denoising), choose 'blur failing faces' to redact what "
            "fails, or raise the threshold if these faces are known to be different people.")
    if action in REDACTIONS:
        image = redact(anonymized, mask, faces, checks, action.value)
        # measure what the repair achieved, aligned on the original keypoints
        after = {}
        for j in {c.image_index for c in checks if not c.passed}:
            src = _source_index(original.shape[0], j)
            failing = [c for c in checks if c.image_index == j and not c.passed]
            kps = np.stack([faces[c.face_index].kps for c in failing])
            refs = embed(original[src], kps)
            embs = embed(image[j], kps)
            for c, r, e in zip(failing, refs, embs, strict=True):
                after[(j, c.face_index)] = float(np.dot(r, e))
        checks = tuple(
            c if c.passed else FaceCheck(c.image_index, c.face_index, c.box, c.similarity, c.found_in_output,
                                         c.status, after.get((c.image_index, c.face_index)), True)
            for c in checks)
        report = VerifyReport(threshold, action, checks, anonymized.shape[0], tuple(faces.missing), model,
                              tuple(notes))
    return image, mask, report


# -------------------------------------------------------------------------------------------------------------
# adapters on the faces API (faceanon.faces)
def analysis_embedder(analysis) -> Embedder:
    """Embedder of a loaded `faceanon.faces.analysis.FaceAnalysis`: insightface's own alignment and recognizer."""
    from .faces import embed_faces

    if analysis.recognizer is None:
        raise ValueError(f"face model pack '{analysis.name}' has no recognizer (ArcFace) model: the identity check "
                         "needs one (buffalo_l: w600k_r50.onnx, antelopev2: glintr100.onnx)")

    def embed(image: torch.Tensor, kps: np.ndarray) -> np.ndarray:
        return np.stack(embed_faces(analysis, image, list(np.asarray(kps, np.float32))))

    return embed


def analysis_detector(analysis, threshold: float = 0.5, min_face_size: float = 24) -> Detector:
    """Detector of a loaded FaceAnalysis that flags images without faces instead of raising; the faces carry their
    own embeddings (the second alignment of `check_faces`)."""
    from .faces import IfNoFace, detect

    def run(images: torch.Tensor) -> Faces:
        return detect(analysis, images, threshold=threshold, min_face_size=min_face_size, landmarks=False,
                      embeddings=True, if_no_face=IfNoFace.FLAG)

    return run
