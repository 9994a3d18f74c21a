"""The pack's ComfyExtension: one list of every node, and the model folders."""

import logging
import os

import folder_paths

from . import anonymize, faces, guidance, id_adapter, inversion, reference, save, tracking, verify, video
from .types import ComfyExtension, io

logger = logging.getLogger(__name__)

# Folder names shared with the other face packs (cubiq's IPAdapter_plus,
# InstantID), so users keep one copy of each file.
MODEL_FOLDERS = {
    "ipadapter": {".bin", ".safetensors", ".pt", ".pth"},
    "insightface": None,
}


def register_model_folders() -> None:
    """Register models/ipadapter and models/insightface, keeping paths users added."""
    for name, extensions in MODEL_FOLDERS.items():
        default = os.path.join(folder_paths.models_dir, name)
        folder_paths.add_model_folder_path(name, default, is_default=False)
        if extensions is not None:
            paths, exts = folder_paths.folder_names_and_paths[name]
            folder_paths.folder_names_and_paths[name] = (paths, set(exts) | extensions)


class FaceAnonExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_model_folders()
        return [*inversion.NODES, *faces.NODES, *id_adapter.NODES, *guidance.NODES, *anonymize.NODES, *verify.NODES,
                *save.NODES, *tracking.NODES, *reference.NODES, *video.NODES]
