"""The example photos the shipped templates open with (example_inputs/), made available in ComfyUI's input folder.

`install_examples(input_dir)` copies each example file into `input_dir` only when no file of that name exists
there: a user's file is never overwritten or modified (the copy is created with exclusive-create semantics, so even
a file that appears between the check and the write is left alone). Called once when ComfyUI loads the pack.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "example_inputs"
EXAMPLE_SUFFIXES = (".jpg", ".png", ".webp", ".mp4")


def example_files() -> list[Path]:
    """The shipped example inputs (not their SOURCES.md)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES and p.is_file())


def install_examples(input_dir: str | os.PathLike, files: list[Path] | None = None) -> dict[str, str]:
    """Copy each example file into `input_dir` unless a file of that name is there; never overwrite.

    Returns:
        {file name: "copied" | "present" (same bytes already there) | "kept yours" (another file of that name is
        there and was left as it is) | "failed: <why>"}.
    """
    input_dir = Path(input_dir)
    files = example_files() if files is None else files
    try:
        input_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        logger.warning("FaceAnon: no input folder %s (%s); the templates will ask for a photo", input_dir, e)
        return {src.name: f"failed: {e}" for src in files}
    result = {}
    for src in files:
        dst = input_dir / src.name
        try:
            data = src.read_bytes()
            with open(dst, "xb") as fh:  # exclusive create: fails if the name exists, whatever it is
                try:
                    fh.write(data)
                except OSError:
                    fh.close()
                    dst.unlink()  # our own, partly written file
                    raise
            result[src.name] = "copied"
        except FileExistsError:
            try:
                same = dst.is_file() and dst.stat().st_size == len(data) and dst.read_bytes() == data
            except OSError:
                same = False
            result[src.name] = "present" if same else "kept yours"
            if not same:
                logger.warning("FaceAnon: %s exists in %s and is not the pack's example photo; it was left as it "
                               "is, so the templates will open with your file of that name", src.name, input_dir)
        except OSError as e:
            result[src.name] = f"failed: {e}"
            logger.warning("FaceAnon: could not copy the example photo %s into %s (%s); the templates will ask "
                           "for a photo", src.name, input_dir, e)
    copied = [n for n, s in result.items() if s == "copied"]
    if copied:
        logger.info("FaceAnon: example photos copied into %s: %s", input_dir, ", ".join(copied))
    return result
