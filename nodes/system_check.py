"""FaceAnonSystemCheck: the pack's system check (faceanon.doctor) as a node, its text shown on the node.

Queue it alone (it needs no input): it reports the ComfyUI, torch/CUDA, onnxruntime, insightface and numpy
versions, every model folder ComfyUI searches for the pack (extra_model_paths.yaml included) with the files found
there, and every missing file with its folder, size and source. The same report: `python -m faceanon.doctor`.
"""

from __future__ import annotations

import logging
import time

from ..faceanon import doctor
from .faces import ui_payload
from .types import io

logger = logging.getLogger(__name__)


def run_check() -> doctor.Report:
    """The report for the running ComfyUI (its folder_paths, including extra_model_paths.yaml entries)."""
    folders, defaults = doctor.comfy_model_folders()
    return doctor.system_report(folders, doctor.comfyui_version(), defaults)


class FaceAnonSystemCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonSystemCheck",
            display_name="System Check (FaceAnon)",
            category="FaceAnon/setup",
            description=(
                "What FaceAnon sees of this install: ComfyUI, torch/CUDA, onnxruntime builds and providers (CPU and "
                "GPU packages side by side are flagged), insightface and numpy versions, every model folder searched "
                "(extra_model_paths.yaml included) with the FaceID files (family, embedded LoRA) and insightface "
                "packs found, and every missing file with its folder, size and source. Queue it on its own; the "
                "report is shown on the node. Same report: python -m faceanon.doctor."),
            inputs=[],
            outputs=[io.String.Output(display_name="report", tooltip="The report as text")],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls):
        return time.monotonic_ns()  # files change outside ComfyUI: check again on every queue

    @classmethod
    def execute(cls):
        report = run_check()
        text = report.text()
        if not report.ready:
            logger.warning("FaceAnon system check: %d problem(s):\n%s", len(report.problems),
                           "\n".join(report.problems))
        return io.NodeOutput(text, ui=ui_payload(text, report.fields()))


NODES = [FaceAnonSystemCheck]
