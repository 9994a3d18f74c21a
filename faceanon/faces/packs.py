"""Finding insightface model packs on disk: which packs exist, where a pack's files are, what is missing.

    list_packs(roots) -> list[str]
    find_pack(name, roots) -> (folder, {role: file})
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import model_files
from .errors import FaceModelError

PACK_SOURCE = (
    "insightface model packs are zip files published by the insightface project (the insightface Python package "
    "downloads them from https://github.com/deepinsight/insightface/releases, tag 'model-zoo', e.g. buffalo_l.zip; "
    "antelopev2.zip is also mirrored on Hugging Face). Unzip so the .onnx files sit directly in the pack folder. "
    "The pretrained models are licensed for non-commercial research use only."
)


@dataclass(frozen=True)
class PackSpec:
    detector: str
    recognizer: str
    landmark: str
    unused: tuple[str, ...] = ()

    def expected(self) -> list[tuple[str, str]]:
        return [
            (self.detector, "face detector (SCRFD), required"),
            (self.recognizer, "ArcFace recognizer (identity embeddings), required"),
            (self.landmark, "106-point landmarks (region masks, face-shaped paste masks), required"),
            *[(f, "not used by FaceAnon, may be present") for f in self.unused],
        ]


KNOWN_PACKS = {
    "buffalo_l": PackSpec("det_10g.onnx", "w600k_r50.onnx", "2d106det.onnx", ("1k3d68.onnx", "genderage.onnx")),
    "antelopev2": PackSpec("scrfd_10g_bnkps.onnx", "glintr100.onnx", "2d106det.onnx",
                           ("1k3d68.onnx", "genderage.onnx")),
}


def _candidate_dirs(name: str, roots: Sequence[str | os.PathLike]) -> list[Path]:
    out = []
    for root in roots:
        root = Path(root)
        for d in (root / "models" / name, root / name):
            if d not in out:
                out.append(d)
    return out


def _where_to_put(name: str, roots: Sequence[str | os.PathLike]) -> str:
    first = Path(roots[0]) / "models" / name if roots else Path("ComfyUI/models/insightface/models") / name
    return (
        f"Put the pack in {first}{os.sep} (ComfyUI/models/insightface/models/{name}/), or in "
        f"<path>/models/{name}/ under an 'insightface:' entry of extra_model_paths.yaml."
    )


def _expected_listing(name: str) -> str:
    spec = KNOWN_PACKS.get(name)
    if spec is None:
        return ("  a face detector (SCRFD .onnx, required), an ArcFace recognizer (.onnx, for identity embeddings) "
                "and optionally 2d106det.onnx (landmarks)")
    return "\n".join(f"  {f}  ({why})" for f, why in spec.expected())


def list_packs(roots: Sequence[str | os.PathLike]) -> list[str]:
    """Names of the packs found under `roots` (each root's models/<name>/ or <name>/ holding .onnx files).

    The known packs (buffalo_l, antelopev2) are always listed first, found or not, so that a workflow that names
    them validates and the loader can explain what is missing.
    """
    found = []
    for root in roots:
        root = Path(root)
        for base in (root / "models", root):
            if not base.is_dir():
                continue
            for d in sorted(base.iterdir()):
                if d.is_dir() and d.name != "models" and any(d.glob("*.onnx")) and d.name not in found:
                    found.append(d.name)
    return list(KNOWN_PACKS) + [n for n in found if n not in KNOWN_PACKS]


def _source(name: str) -> str:
    """Where to get pack `name`: its model-table entry (file, size, URL, licence), then the general notes."""
    entry = model_files.model_file(name)
    return (entry.where_to_get() + "\n" if entry and entry.folder == "insightface" else "") + PACK_SOURCE


def find_pack(name: str, roots: Sequence[str | os.PathLike]) -> tuple[Path, dict[str, Path]]:
    """Locate pack `name`; return its folder and, for known packs, {role: file} of the files FaceAnon uses.

    Roles: "detector", "recognizer", "landmark". For an unknown pack every .onnx file is returned under its
    file name and is routed by shape when loaded.

    Raises:
        FaceModelError: naming the pack, each expected file, the folders searched and where packs come from.
    """
    if not name or any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
        raise FaceModelError(f"invalid face model pack name {name!r}: expected a folder name such as buffalo_l")
    dirs = _candidate_dirs(name, roots)
    for d in dirs:
        if not d.is_dir():
            continue
        onnx_files = sorted(d.glob("*.onnx"))
        if not onnx_files:
            nested = d / name
            if nested.is_dir() and any(nested.glob("*.onnx")):
                raise FaceModelError(
                    f"face model pack '{name}' is nested one folder too deep: the .onnx files are in {nested}, "
                    f"expected directly in {d}. Move them up one level (a common result of unzipping "
                    f"{name}.zip into a folder of the same name)."
                )
            raise FaceModelError(
                f"face model pack '{name}': the folder {d} exists but holds no .onnx files. Expected:\n"
                f"{_expected_listing(name)}\n{_source(name)}"
            )
        spec = KNOWN_PACKS.get(name)
        if spec is None:
            return d, {p.name: p for p in onnx_files}
        have = {p.name for p in onnx_files}
        roles = {"detector": spec.detector, "recognizer": spec.recognizer, "landmark": spec.landmark}
        missing = [f for f in roles.values() if f not in have]
        if missing:
            sizes = [f"{f} ({model_files.PACK_FILE_SIZES.get(f, 'size unknown')})" for f in missing]
            raise FaceModelError(
                f"face model pack '{name}' in {d} is incomplete: missing {', '.join(sizes)}. "
                f"Found: {', '.join(sorted(have))}. Expected:\n{_expected_listing(name)}\n"
                f"Download the pack again: {_source(name)}"
            )
        return d, {role: d / f for role, f in roles.items()}
    searched = "\n".join(f"  {d}" for d in dirs) or "  (no insightface model folder is registered)"
    raise FaceModelError(
        f"face model pack '{name}' was not found. It must be a folder named {name} holding:\n"
        f"{_expected_listing(name)}\nSearched:\n{searched}\n{_where_to_put(name, roots)}\n{_source(name)}"
    )
