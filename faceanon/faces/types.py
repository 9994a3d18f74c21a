"""Host-independent values that flow between the face nodes (and into the all-in-one node).

- `Face`: one detected face (box, keypoints, landmarks, embedding, image index).
- `Faces`: every face of an image batch, plus the images in which *no* face was found (`missing`): a value that
  says "nothing to anonymize here" is never silent, it carries the flag and a report.
- `Identity`: one or more 512-d L2-normalised ArcFace embeddings (the identity branch's input).
- `FaceCrops`: per face, the similarity warp between the image and its aligned crop (for paste-back).

All values are immutable: ComfyUI caches node outputs and hands the same object to several nodes, so helpers
return new values instead of changing these.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

ORDERS = ("largest first", "left to right", "right to left", "top to bottom", "score")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        image_index: index of the image in the batch.
        box: (4,) float32, x1, y1, x2, y2 in pixels of the full image (may reach outside the image).
        score: detector confidence, 0..1.
        kps: (5, 2) float32 keypoints in pixels: eye on the image's left, eye on the image's right, nose tip,
            mouth corner on the left, mouth corner on the right (insightface/SCRFD order).
        landmarks: (106, 2) float32 insightface 2d106 landmarks in pixels, or None when the pack has no
            landmark model (regions then fall back to shapes built from `kps`).
        embedding: (512,) float32 L2-normalised ArcFace embedding, or None when not computed.
    """

    image_index: int
    box: np.ndarray
    score: float
    kps: np.ndarray
    landmarks: np.ndarray | None = None
    embedding: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """The longer side of the box, in pixels (what `min_face_size` compares against)."""
        return max(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2, float(self.box[1] + self.box[3]) / 2


def _order_key(order: str):
    if order == "largest first":
        return lambda f: -f.area
    if order == "left to right":
        return lambda f: f.center[0]
    if order == "right to left":
        return lambda f: -f.center[0]
    if order == "top to bottom":
        return lambda f: f.center[1]
    if order == "score":
        return lambda f: -f.score
    raise ValueError(f"unknown face order {order!r}; expected one of {', '.join(ORDERS)}")


@dataclass(frozen=True, eq=False)
class Faces:
    """Every face found in a batch of images, and what was *not* found.

    Faces are stored image by image (all faces of image 0 first), each image's faces in the chosen order; a
    face's position in `faces` is its global number (the number drawn on the preview, the crop index).

    Attributes:
        faces: the faces.
        image_size: (height, width) of the images (a ComfyUI batch shares one size).
        batch_size: number of images, including those without faces.
        missing: indices of images in which no face was found. Such images are passed through only when the
            caller chose to; downstream nodes carry this flag so the output is never silently "anonymized".
        notes: human-readable report lines (per image: faces found, dropped by min size / max faces, missing).
        model: name of the model pack that produced the faces (e.g. "buffalo_l").
        embedding_model: file of the recognizer that made the embeddings ("" when none were made).
    """

    faces: tuple[Face, ...]
    image_size: tuple[int, int]
    batch_size: int
    missing: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    model: str = ""
    embedding_model: str = ""

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    def __getitem__(self, i: int) -> Face:
        return self.faces[i]

    @property
    def flagged(self) -> bool:
        """True when at least one image has no face (it will not be anonymized)."""
        return bool(self.missing)

    @property
    def report(self) -> str:
        """One text block: per-image notes and, first, a loud line for images without a face."""
        lines = []
        if self.missing:
            lines.append(
                f"WARNING: no face found in image(s) {', '.join(map(str, self.missing))} of {self.batch_size}: "
                "they are passed through NOT anonymized."
            )
        lines.extend(self.notes)
        lines.append(f"{len(self.faces)} face(s) in {self.batch_size} image(s)"
                     + (f" ({self.model})" if self.model else ""))
        return "\n".join(lines)

    def counts(self) -> list[int]:
        """Number of faces per image."""
        out = [0] * self.batch_size
        for f in self.faces:
            out[f.image_index] += 1
        return out

    def indices_for_image(self, image_index: int) -> list[int]:
        """Global numbers of the faces of one image."""
        return [i for i, f in enumerate(self.faces) if f.image_index == image_index]

    def for_image(self, image_index: int) -> tuple[Face, ...]:
        return tuple(f for f in self.faces if f.image_index == image_index)

    def with_faces(self, faces: Iterable[Face], note: str | None = None) -> Faces:
        """A copy holding `faces` (re-sorted by image) and the same flags; `note` is appended to the notes."""
        faces = sorted(faces, key=lambda f: f.image_index)  # stable: keeps the order within an image
        notes = self.notes + ((note,) if note else ())
        return replace(self, faces=tuple(faces), notes=notes)

    def sorted(self, order: str = "largest first") -> Faces:
        """Faces re-ordered within each image by `order` (one of `ORDERS`)."""
        key = _order_key(order)
        return self.with_faces(sorted(self.faces, key=lambda f: (f.image_index, key(f))))

    def largest(self) -> Faces:
        """Only the largest face of each image (images without faces stay flagged in `missing`)."""
        best: dict[int, Face] = {}
        for f in self.faces:
            if f.image_index not in best or f.area > best[f.image_index].area:
                best[f.image_index] = f
        return self.with_faces(best.values())

    def select(self, indices: Sequence[int]) -> Faces:
        """Faces at the given global numbers (negative numbers count from the end)."""
        n = len(self.faces)
        for i in indices:
            if not -n <= i < n:
                raise IndexError(f"face index {i} is out of range: there are {n} face(s) (numbered 0 to {n - 1})")
        return self.with_faces([self.faces[i] for i in indices])

    def embeddings(self) -> torch.Tensor:
        """[N, 512] float32 tensor of the faces' normalised embeddings; raises when any face has none."""
        if any(f.embedding is None for f in self.faces):
            raise ValueError(
                "these faces carry no identity embeddings: the face model pack has no recognizer, or detection "
                "ran with embeddings turned off. Use a pack with a recognizer (buffalo_l: w600k_r50.onnx, "
                "antelopev2: glintr100.onnx) and turn embeddings on."
            )
        if not self.faces:
            return torch.zeros(0, 512)
        return torch.from_numpy(np.stack([f.embedding for f in self.faces]).astype(np.float32))


@dataclass(frozen=True, eq=False)
class Identity:
    """ArcFace identity embeddings.

    Attributes:
        embeddings: [K, D] float32 tensor (D = 512 for insightface packs), every row L2-normalised. K = 1 for an
            averaged identity, K = number of faces for "all faces as a batch".
        sources: one description per row ("image 0, face 1" or "mean of 3 faces").
        model: the recognizer that made them ("buffalo_l/w600k_r50.onnx"); embeddings of different
            recognizers are not comparable.
    """

    embeddings: torch.Tensor
    sources: tuple[str, ...] = ()
    model: str = ""

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def mean(self) -> torch.Tensor:
        """[D] the normalised mean of the rows."""
        return torch.nn.functional.normalize(self.embeddings.float().mean(0), dim=0)


@dataclass(frozen=True, eq=False)
class FaceCrops:
    """How each face was cropped, so that edited crops can be pasted back.

    Attributes:
        size: crop side in pixels.
        margin: framing factor used (1.0 = FFHQ framing).
        forward: [N, 3, 3] float64, image pixel -> crop pixel (pixel centres at integer coordinates).
        inverse: [N, 3, 3] float64, crop pixel -> image pixel.
        image_index: per crop, the image it came from.
        faces: the `Faces` the crops were made from (same order, same flags).
        masks: [N, size, size] float32 face-shaped masks in crop coordinates (1 = face), unfeathered.
        padding: how crop pixels outside the image were filled ("reflection", "border" or "zeros").
    """

    size: int
    margin: float
    forward: torch.Tensor
    inverse: torch.Tensor
    image_index: tuple[int, ...]
    faces: Faces
    masks: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, 0))
    padding: str = "reflection"

    def __len__(self) -> int:
        return len(self.image_index)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.faces.image_size

    @property
    def batch_size(self) -> int:
        return self.faces.batch_size

    @property
    def missing(self) -> tuple[int, ...]:
        return self.faces.missing
