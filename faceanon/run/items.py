"""What a headless run works through: one item per image or video, with the relative path its output keeps.

An input is a folder (searched recursively), a single image or video file, or a list file (one path a line;
blank lines and lines starting with ``#`` are skipped; relative paths are taken from the list file's folder).
Every item has a relative path, the key of the manifest and the place of its output under the output folder:
``photos/a/b.jpg`` becomes ``OUT/a/b.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Item", "ItemsError", "list_items", "output_relpath"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


class ItemsError(ValueError):
    """The input names no usable item, or two items would write the same output."""


@dataclass(frozen=True)
class Item:
    """One unit of work.

    Attributes:
        path (`str`): absolute path of the original (read, never copied).
        rel (`str`): POSIX relative path: the manifest's key and, with the output's suffix, the output's place.
        kind (`str`): ``"image"`` or ``"video"``.
    """

    path: str
    rel: str
    kind: str


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _from_list(list_file: Path) -> list[Item]:
    entries = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        kind = _kind(path)
        if kind is None:
            raise ItemsError(f"{list_file}:{number}: {line!r} is neither an image ({', '.join(sorted(IMAGE_SUFFIXES))})"
                             f" nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
        entries.append((path if path.is_absolute() else list_file.parent / path, kind))
    if not entries:
        raise ItemsError(f"the list file {list_file} names no file; expected one image or video path a line")
    absolute = [p.resolve() for p, _ in entries]
    # relative paths under the deepest folder holding every entry, so outputs keep the list's folder structure
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    return [Item(str(p), p.relative_to(root).as_posix(), kind) for p, (_, kind) in zip(absolute, entries, strict=True)]


def list_items(source: Path) -> list[Item]:
    """The items of `source` (folder, image, video or list file), sorted by relative path.

    Raises:
        ItemsError: `source` does not exist, holds no image or video, or two inputs map to one output path
            (``a.jpg`` and ``a.png`` both become ``a.png``).
    """
    source = Path(source).expanduser()
    if source.is_dir():
        root = source.resolve()
        items = [Item(str(p), p.relative_to(root).as_posix(), _kind(p))
                 for p in root.rglob("*") if p.is_file() and _kind(p) and not p.name.startswith(".")]
        if not items:
            raise ItemsError(f"no image or video in {source} (searched recursively for "
                             f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
    elif source.is_file() and _kind(source):
        items = [Item(str(source.resolve()), source.name, _kind(source))]
    elif source.is_file() and source.suffix.lower() in LIST_SUFFIXES:
        items = _from_list(source)
    elif source.is_file():
        raise ItemsError(f"{source} is not an image, a video or a list file ({', '.join(sorted(LIST_SUFFIXES))})")
    else:
        raise ItemsError(f"the input {source} does not exist; expected a folder, an image, a video or a list file")
    items.sort(key=lambda it: it.rel)
    seen: dict[str, str] = {}
    for it in items:
        key = str(PurePosixPath(it.rel).with_suffix("")).lower()
        if key in seen:
            raise ItemsError(f"{seen[key]} and {it.rel} would both be written as {PurePosixPath(it.rel).stem}.*; "
                             "rename one or run them separately")
        seen[key] = it.rel
    return items


def output_relpath(item: Item, suffix: str) -> str:
    """Where the output of `item` goes under the output folder: its relative path with the output's suffix."""
    return PurePosixPath(item.rel).with_suffix(suffix).as_posix()
