"""ComfyUI in-process for headless runs: find it, boot it once, run a planned graph per item.

Nothing here is imported with `faceanon`: ComfyUI is imported when `Engine` boots, from the folder `find_comfyui`
locates (``--comfyui``, ``COMFYUI_PATH`` or the current folder). One `Engine` holds one PromptExecutor whose cache
keeps the loader nodes' outputs, so the checkpoint, the FaceID adapter and the face models load once per process;
only the source node and what depends on it run again for each item.

Where files go: ComfyUI's input, output and temp folders point at a private staging folder (mode 0700, removed at
close). The source node reads the original where it is (nothing is copied into an input folder); the save node
writes the item's result into a fresh staging folder, whose bytes `run` returns and then removes; previews are
not part of the planned graph. The runner writes the bytes to the output folder (`faceanon.run.runner`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .graph import RUN_SOURCE, GraphError, Plan, plan
from .items import Item

__all__ = ["BootError", "Engine", "Result", "Spec", "find_comfyui"]

logger = logging.getLogger(__name__)

PACK_ROOT = Path(__file__).resolve().parents[2]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}


class BootError(RuntimeError):
    """ComfyUI cannot be found or started, or the workflow does not validate on it."""


@dataclass(frozen=True)
class Spec:
    """Everything a process needs to run a job's items (picklable: Ray sends it to every worker).

    Attributes:
        workflow (`dict`): the workflow JSON (UI or API format).
        comfyui (`str`, *optional*): ComfyUI folder; default `COMFYUI_PATH`, then the current folder.
        models (`dict`): `faceanon.run.graph.MODEL_OPTIONS` key -> model file name.
        assignments (`tuple[str]`): ``NODE.INPUT=VALUE`` widget overrides.
        source_node, save_node (`str`, *optional*): node ids when the workflow has several candidates.
        models_dirs (`tuple[str]`): extra model roots laid out like ComfyUI's ``models/`` (``checkpoints/``...).
        extra_model_paths (`tuple[str]`): ComfyUI ``extra_model_paths.yaml`` files.
        cpu (`bool`, *optional*): force the CPU; default: the CPU when torch sees no CUDA / MPS / XPU device.
        all_custom_nodes (`bool`): also load every custom node pack of the ComfyUI folder.
        threads (`int`, *optional*): torch intra-op threads.
    """

    workflow: dict
    comfyui: str | None = None
    models: dict = field(default_factory=dict)
    assignments: tuple = ()
    source_node: str | None = None
    save_node: str | None = None
    models_dirs: tuple = ()
    extra_model_paths: tuple = ()
    cpu: bool | None = None
    all_custom_nodes: bool = False
    threads: int | None = None


@dataclass
class Result:
    """The outcome of one item; `data` holds the output file's bytes when `status` is ``"done"``."""

    status: str
    suffix: str | None = None
    data: bytes | None = None
    faces: int | None = None
    similarity_min: float | None = None
    similarity_max: float | None = None
    error: str | None = None
    seconds: float = 0.0


def find_comfyui(explicit: str | None = None) -> Path:
    """The ComfyUI folder: `explicit`, else ``COMFYUI_PATH``, else the current folder."""
    tried = []
    for source, value in (("--comfyui", explicit), ("COMFYUI_PATH", os.environ.get("COMFYUI_PATH")),
                          ("the current folder", os.getcwd())):
        if not value:
            continue
        path = Path(value).expanduser().resolve()
        if (path / "comfy" / "samplers.py").is_file() and (path / "nodes.py").is_file() \
                and (path / "execution.py").is_file():
            return path
        tried.append(f"{source} ({path})")
    raise BootError(f"ComfyUI not found: tried {', '.join(tried)}; expected a ComfyUI folder (with comfy/, nodes.py "
                    "and execution.py). Pass --comfyui PATH, set COMFYUI_PATH, or run from the ComfyUI folder")


def _default_cpu() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return not (torch.cuda.is_available() or (mps is not None and mps.is_available())
                or (xpu is not None and xpu.is_available()))


def _boot(path: Path, cpu: bool | None, all_custom_nodes: bool):
    """Import ComfyUI from `path` (once per process) with this pack loaded; return (nodes, execution)."""
    loaded = sys.modules.get("nodes")
    if loaded is not None and hasattr(loaded, "NODE_CLASS_MAPPINGS") and "execution" in sys.modules:
        here = Path(loaded.__file__).resolve().parent
        if here != path:
            raise BootError(f"this process already runs the ComfyUI at {here}; cannot also boot {path}")
    else:
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        from comfy.cli_args import args  # parses no command line unless ComfyUI's main enables it

        # before anything imports comfy.model_management, which picks the device at import
        args.cpu = _default_cpu() if cpu is None else cpu
        args.disable_all_custom_nodes = not all_custom_nodes
        # the package `utils` and `server` before `nodes` (ComfyUI's own order)
        import utils.extra_config  # noqa: F401
        import server  # noqa: F401
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=all_custom_nodes, init_api_nodes=False))
    import execution
    import nodes

    if "FaceAnonymize" not in nodes.NODE_CLASS_MAPPINGS:
        if not (PACK_ROOT / "nodes" / "__init__.py").is_file() or not (PACK_ROOT / "__init__.py").is_file():
            raise BootError(f"the faceanon package at {PACK_ROOT / 'faceanon'} is not inside the FaceAnon node pack "
                            "(no nodes/ next to it): run from the pack's folder, or install it with `pip install -e` "
                            "from there")
        if not asyncio.run(nodes.load_custom_node(str(PACK_ROOT), ignore=set(nodes.NODE_CLASS_MAPPINGS))):
            raise BootError(f"ComfyUI at {path} could not load the FaceAnon pack from {PACK_ROOT}; see the log above")
    _register_sources(nodes)
    return nodes, execution


def _register_sources(nodes) -> None:
    """Register the runner's source nodes: core LoadImage / LoadVideo that read an absolute path.

    They inherit the core nodes' decoding (same tensors as the graph run in the UI) but take a plain string,
    so the original is read where it is instead of from ComfyUI's input folder."""
    mappings = nodes.NODE_CLASS_MAPPINGS
    if RUN_SOURCE["LoadImage"] not in mappings:
        class FaceAnonRunLoadImage(nodes.LoadImage):
            @classmethod
            def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
                return {"required": {"image": ("STRING", {"default": ""})}}

            @classmethod
            def IS_CHANGED(cls, image):  # noqa: N802
                st = os.stat(image)
                return f"{image}:{st.st_mtime_ns}:{st.st_size}"

            @classmethod
            def VALIDATE_INPUTS(cls, image):  # noqa: N802
                return True

        mappings[RUN_SOURCE["LoadImage"]] = FaceAnonRunLoadImage
    load_video = mappings.get("LoadVideo")
    if RUN_SOURCE["LoadVideo"] not in mappings and load_video is not None:
        from comfy_api.latest import io

        class FaceAnonRunLoadVideo(load_video):
            @classmethod
            def define_schema(cls):
                return io.Schema(node_id=RUN_SOURCE["LoadVideo"], category="FaceAnon/run",
                                 inputs=[io.String.Input("file")], outputs=[io.Video.Output()])

            @classmethod
            def fingerprint_inputs(cls, file):
                st = os.stat(file)
                return f"{file}:{st.st_mtime_ns}:{st.st_size}"

            @classmethod
            def validate_inputs(cls, file):
                return True

        mappings[RUN_SOURCE["LoadVideo"]] = FaceAnonRunLoadVideo


class HeadlessServer:
    """The attributes PromptExecutor uses of ComfyUI's PromptServer; events go to the debug log."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}

    def send_sync(self, event, data, sid=None):
        logger.debug("ComfyUI event %s", event)


def prompt_executor(execution, server):
    """A PromptExecutor with the classic cache and no extra cache memory, on ComfyUI 0.3.x and 0.4+ alike."""
    params = inspect.signature(execution.PromptExecutor).parameters
    if "cache_args" in params:  # ComfyUI >= 0.4
        return execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
    return execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_size=0)


def _error_text(ex) -> tuple[str, str]:
    """(exception type, readable message) of a failed PromptExecutor run."""
    errors = [m for m in ex.status_messages if m[0] in ("execution_error", "execution_interrupted")]
    if not errors:
        return "", "the graph did not finish (no error reported)"
    event, detail = errors[-1]
    if event == "execution_interrupted":
        return "Interrupted", "interrupted"
    logger.debug("ComfyUI traceback:\n%s", "".join(detail.get("traceback", [])))
    return (str(detail.get("exception_type", "")),
            f"{detail.get('node_type')} (node {detail.get('node_id')}): {detail.get('exception_message', '').strip()}")


def _reports(ui_outputs: dict) -> tuple[int | None, list[float], list]:
    """(faces anonymized, identity similarities, images not anonymized) from the pack's reports (`None` faces when
    the graph has no reporting node). FaceAnonymize reports faces; FaceAnonAnonymizePeople (video) reports tracks:
    a face is then a person's track with anonymized (or blurred) frames."""
    faces, sims, missing, seen = 0, [], [], False
    for ui in ui_outputs.values():
        for text in ui.get("faceanon_report", []) if isinstance(ui, dict) else []:
            seen = True
            rep = json.loads(text)
            if "tracks" in rep:
                faces += sum(1 for t in rep["tracks"] if t.get("anonymized") or t.get("blurred"))
                continue
            faces += len(rep.get("faces", []))
            sims += [float(f["identity_similarity"]) for f in rep.get("faces", [])
                     if isinstance(f.get("identity_similarity"), (int, float))]
            missing += list(rep.get("not_anonymized_images", []))
    return (faces if seen else None), sims, missing


class Engine:
    """ComfyUI booted in this process with a job's graph validated; `run(item)` executes it for one item."""

    def __init__(self, spec: Spec):
        path = find_comfyui(spec.comfyui)
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.nodes, self.execution = _boot(path, spec.cpu, spec.all_custom_nodes)
        import folder_paths

        self._folder_paths = folder_paths
        self._saved_dirs = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
                            folder_paths.get_temp_directory())
        self.root = Path(tempfile.mkdtemp(prefix="faceanon-run-"))
        for sub in ("input", "output", "temp"):
            (self.root / sub).mkdir()
        folder_paths.set_input_directory(str(self.root / "input"))
        folder_paths.set_temp_directory(str(self.root / "temp"))
        folder_paths.set_output_directory(str(self.root / "output"))
        try:
            self._add_model_paths(spec)
            from ..workflow import object_info

            self.plan = self._validated(plan(spec.workflow, object_info(self.nodes), models=spec.models,
                                             assignments=spec.assignments, source_node=spec.source_node,
                                             save_node=spec.save_node))
        except BaseException:
            self.close()
            raise
        self.executor = self._executor()

    # -- setup ----------------------------------------------------------------------------------------------------
    def _add_model_paths(self, spec: Spec) -> None:
        fp = self._folder_paths
        for yaml_file in spec.extra_model_paths:
            if not Path(yaml_file).is_file():
                raise BootError(f"--extra-model-paths-config {yaml_file}: no such file")
            from utils.extra_config import load_extra_path_config

            load_extra_path_config(str(yaml_file))
        for root in spec.models_dirs:
            root = Path(root).expanduser().resolve()
            if not root.is_dir():
                raise BootError(f"--models-dir {root}: no such folder; expected a folder laid out like ComfyUI's "
                                "models/ (checkpoints/, ipadapter/, insightface/, ...)")
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                if sub.name not in fp.folder_names_and_paths or str(sub) not in fp.get_folder_paths(sub.name):
                    fp.add_model_folder_path(sub.name, str(sub))

    def _validated(self, p: Plan) -> Plan:
        graph = p.for_item("")
        ok, err, _, node_errors = asyncio.run(self.execution.validate_prompt(str(uuid.uuid4()), graph, [p.save_id]))
        if not ok or node_errors:
            lines = [f"{err.get('message', err)} {err.get('details', '')}".strip()] if isinstance(err, dict) else []
            for node_id, e in (node_errors or {}).items():
                for item in e.get("errors", []):
                    lines.append(f"node {node_id} ({e.get('class_type')}): {item.get('message')}: "
                                 f"{item.get('details', '')}")
            raise GraphError("the workflow does not validate on this ComfyUI:\n  " + "\n  ".join(lines) +
                             "\nname the model files with --checkpoint / --id-adapter / --face-models (or --set), "
                             "and put them in ComfyUI's models folders or under --models-dir")
        # validation converts widget values to their types in place: keep that graph
        return Plan(graph, p.source_id, p.source_input, p.kind, p.save_id)

    def _executor(self):
        return prompt_executor(self.execution, HeadlessServer())

    # -- per item -------------------------------------------------------------------------------------------------
    def run(self, item: Item) -> Result:
        """Execute the graph on `item`; never raises for the item's own failures (KeyboardInterrupt passes)."""
        start = time.monotonic()
        result = self._run(item)
        result.seconds = round(time.monotonic() - start, 3)
        return result

    def _run(self, item: Item) -> Result:
        if item.kind != self.plan.kind:
            return Result("failed", error=f"the workflow reads {self.plan.kind}s; {item.rel} is a {item.kind}")
        staging = Path(tempfile.mkdtemp(dir=self.root / "output"))
        self._folder_paths.set_output_directory(str(staging))
        try:
            graph = self.plan.for_item(item.path)
            ex = self.executor
            ex.execute(graph, str(uuid.uuid4()), {}, [self.plan.save_id])
            if not ex.success:
                kind, message = _error_text(ex)
                if kind == "Interrupted":
                    raise KeyboardInterrupt
                return Result("no_face" if kind.endswith("NoFaceError") else "failed", error=message)
            faces, sims, missing = _reports(ex.history_result.get("outputs", {}))
            sim_min, sim_max = (min(sims), max(sims)) if sims else (None, None)
            if faces == 0 or (missing and item.kind == "image"):
                return Result("no_face", faces=faces, error="no face found: not anonymized, nothing written")
            if item.kind == "image" and self._unchanged(graph):
                return Result("failed", faces=faces, error="the workflow returned the original image unchanged: "
                                                           "nothing written")
            files = sorted(p for p in staging.rglob("*") if p.is_file())
            if len(files) != 1:
                return Result("failed", faces=faces, error=f"the save node wrote {len(files)} files for one input; "
                                                           "the runner writes one output per input")
            return Result("done", suffix=files[0].suffix.lower(), data=files[0].read_bytes(), faces=faces,
                          similarity_min=sim_min, similarity_max=sim_max)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self._folder_paths.set_output_directory(str(self.root / "output"))

    def _cached(self, node_id: str):
        entry = self.executor.caches.outputs.get(node_id)
        if entry is None:
            return None
        return entry.outputs if hasattr(entry, "outputs") else entry  # 0.4+: CacheEntry; 0.3: the list

    def _unchanged(self, graph: dict) -> bool:
        """True when the image the save node got equals the source image (the graph passed the original through)."""
        import torch

        link = graph[self.plan.save_id]["inputs"].get("images")
        source, saved = self._cached(self.plan.source_id), self._cached(link[0]) if isinstance(link, list) else None
        if source is None or saved is None:
            return False
        original, result = source[0][0], saved[link[1]][0]
        return original.shape == result.shape and bool(torch.equal(original, result))

    def close(self) -> None:
        """Restore ComfyUI's folders and remove the staging folder."""
        fp = self._folder_paths
        inp, out, tmp = self._saved_dirs
        fp.set_input_directory(inp)
        fp.set_output_directory(out)
        fp.set_temp_directory(tmp)
        shutil.rmtree(self.root, ignore_errors=True)
