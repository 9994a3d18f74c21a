"""Save and preview images with NO metadata: no prompt, no workflow, no file names.

Core SaveImage and PreviewImage embed the whole prompt (every widget value, including the source photo's file name,
often a person's name) and the UI workflow as PNG text chunks. An anonymized image must not carry that trace of the
original, so the pack's shipped workflows save and preview through these two nodes, which write plain PNGs (pixel
data only, no text chunks). They never ask ComfyUI for the hidden prompt / workflow values, so there is nothing to
leak even by mistake. Only IMAGE tensors can be saved: inversions and identity embeddings have their own socket
types and cannot be wired in.
"""

from __future__ import annotations

import logging
import os
import secrets

import folder_paths
import numpy as np
from PIL import Image

from .types import io

logger = logging.getLogger(__name__)

CATEGORY = "FaceAnon/privacy"


def save_plain_pngs(images, filename_prefix: str, folder_type: str, compress_level: int) -> list[dict]:
    """Write each image of the batch as `<prefix>_<counter>_.png` (core's naming) with no text chunks.

    Returns the UI entries ({filename, subfolder, type}) ComfyUI's frontend shows in the node.
    """
    if images is None or len(images) == 0:
        raise ValueError("FaceAnon save: got an empty image batch; connect an IMAGE with at least one image")
    root = folder_paths.get_output_directory() if folder_type == "output" else folder_paths.get_temp_directory()
    # core's helper: subfolders in the prefix, %date% variables, refuses paths outside the folder
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, root, images[0].shape[1], images[0].shape[0])
    os.makedirs(folder, exist_ok=True)
    results = []
    for batch_number, image in enumerate(images):
        pixels = np.clip(255.0 * image[..., :3].detach().cpu().float().numpy(), 0, 255).round().astype(np.uint8)
        file = f"{name.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        # no `pnginfo`: PIL writes IHDR, IDAT and IEND only (no tEXt / iTXt / zTXt, no EXIF)
        Image.fromarray(pixels).save(os.path.join(folder, file), compress_level=compress_level)
        results.append({"filename": file, "subfolder": subfolder, "type": folder_type})
        counter += 1
    return results


class FaceAnonSaveImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonSaveImage",
            display_name="Save Image, no metadata (FaceAnon)",
            category=CATEGORY,
            is_output_node=True,
            description=(
                "Saves images to ComfyUI's output folder as PNG files WITHOUT metadata. Core Save Image embeds "
                "the whole prompt and workflow, including the source photo's file name, in every PNG; an "
                "anonymized image should carry no trace of the original, so this node writes pixels only (the "
                "workflow is not stored in the file: keep the workflow JSON separately)."),
            inputs=[
                io.Image.Input("images", tooltip="The images to save (e.g. the anonymized photo)."),
                io.String.Input("filename_prefix", default="faceanon/anonymized",
                                tooltip="File name prefix; may contain subfolders ('faceanon/anonymized') and "
                                        "%year%-%month%-%day% style date variables. Avoid putting the source "
                                        "photo's name here: it is what this node exists to keep out."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, images, filename_prefix="faceanon/anonymized"):
        results = save_plain_pngs(images, filename_prefix, "output", compress_level=4)
        logger.info("FaceAnon: saved %d image(s) without metadata to %s", len(results),
                    results[0]["subfolder"] or "output/")
        return io.NodeOutput(ui={"images": results})


class FaceAnonPreviewImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonPreviewImage",
            display_name="Preview Image, no metadata (FaceAnon)",
            category=CATEGORY,
            is_output_node=True,
            description=(
                "Shows images in the node, like core Preview Image, but the temporary PNG it writes (in ComfyUI's "
                "temp folder, emptied at every server start) carries no prompt or workflow metadata."),
            inputs=[io.Image.Input("images")],
            outputs=[],
        )

    @classmethod
    def execute(cls, images):
        prefix = "faceanon_preview_" + secrets.token_hex(4)
        return io.NodeOutput(ui={"images": save_plain_pngs(images, prefix, "temp", compress_level=1)})


NODES = [FaceAnonSaveImage, FaceAnonPreviewImage]
