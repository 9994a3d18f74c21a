"""The pack's ComfyExtension: one list of every node, and the model folders."""

import logging

import folder_paths

from ..faceanon import examples, model_files
from . import anonymize, faces, guidance, id_adapter, inversion, reference, save, system_check, tracking, verify, video
from .types import ComfyExtension, io

logger = logging.getLogger(__name__)


def register_model_folders() -> None:
    """Register models/ipadapter and models/insightface, keeping paths users added."""
    model_files.register_folders(folder_paths)


class FaceAnonExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_model_folders()
        # The templates' example photos, into input/ unless a file of that name is there (never overwritten).
        examples.install_examples(folder_paths.get_input_directory())
        return [*inversion.NODES, *faces.NODES, *id_adapter.NODES, *guidance.NODES, *anonymize.NODES, *verify.NODES,
                *save.NODES, *tracking.NODES, *reference.NODES, *video.NODES, *system_check.NODES]
