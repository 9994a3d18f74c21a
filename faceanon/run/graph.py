"""Turn a shared workflow into the graph a headless run executes for each item.

Host-independent: the node schemas (`/object_info`, see `faceanon.workflow.object_info`) are passed in.

* A UI workflow (what "Save" writes, a ``nodes`` list) is converted to the API form with the pack's converter;
  an API workflow (what "Export (API)" writes) is taken as it is.
* Model files and widget values are overridden by option (``--checkpoint``, ``--set FaceAnonymize.seed=3``).
* The graph is cut down to what its one metadata-free save node needs: previews and other outputs are not run,
  so nothing lands in ComfyUI's temp folder.
* The image (or video) source node is swapped for the runner's source node, which reads the original where it
  is (ComfyUI's LoadImage reads only from its input folder, where originals would have to be copied).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from ..workflow import layout, ui_to_api

__all__ = ["MODEL_OPTIONS", "RUN_SOURCE", "SAVE_NODES", "SOURCE_NODES", "GraphError", "Plan", "parse_assignment",
           "plan"]

# source node class -> (input holding the file name, item kind it reads)
SOURCE_NODES = {"LoadImage": ("image", "image"), "LoadVideo": ("file", "video")}
# the runner's stand-ins (faceanon.run.comfy registers them): same outputs, read a path from anywhere
RUN_SOURCE = {"LoadImage": "FaceAnonRunLoadImage", "LoadVideo": "FaceAnonRunLoadVideo"}
# save nodes that write no metadata (core SaveImage / SaveVideo embed the prompt, which names the original)
SAVE_NODES = ("FaceAnonSaveImage", "FaceAnonSaveVideo")
SAVE_PREFIX = "faceanon_run"
# option name -> (node class, input) it sets on every such node
MODEL_OPTIONS = {"checkpoint": ("CheckpointLoaderSimple", "ckpt_name"),
                 "id_adapter": ("FaceAnonLoadIDAdapter", "adapter"),
                 "face_models": ("FaceAnonLoadFaceAnalysis", "model_pack")}


class GraphError(ValueError):
    """The workflow cannot be run headless as given; the message says what to change."""


@dataclass(frozen=True)
class Plan:
    """An API graph ready to run per item.

    Attributes:
        graph (`dict`): the API graph with the runner's source node at `source_id`.
        source_id (`str`): node id whose file input takes the item's path.
        source_input (`str`): that input's name.
        kind (`str`): the kind of item the source reads, ``"image"`` or ``"video"``.
        save_id (`str`): the metadata-free save node whose file is the item's output.
    """

    graph: dict
    source_id: str
    source_input: str
    kind: str
    save_id: str

    def for_item(self, path: str) -> dict:
        """A fresh copy of the graph that reads `path`."""
        graph = copy.deepcopy(self.graph)
        graph[self.source_id]["inputs"][self.source_input] = path
        return graph


def parse_assignment(text: str) -> tuple[str, str, object]:
    """``NODE.INPUT=VALUE`` -> (node, input, value); the value is JSON when it parses (3, 0.5, true, "x"), else text.

    NODE is a node id, a node title or a node class (then every node of that class)."""
    target, sep, raw = text.partition("=")
    node, dot, name = target.strip().rpartition(".")
    if not sep or not dot or not node or not name:
        raise GraphError(f"--set {text!r}: expected NODE.INPUT=VALUE (NODE: node id, title or class; e.g. "
                         "FaceAnonymize.seed=3 or 6.overrides=\"steps = 20\")")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return node, name, value


def _as_api(workflow: dict, info: dict) -> dict:
    if not isinstance(workflow, dict) or not workflow:
        raise GraphError("the workflow is not a JSON object; expected a ComfyUI workflow (UI or API format)")
    if isinstance(workflow.get("nodes"), list):
        missing = sorted({n.get("type") for n in workflow["nodes"]} - set(info) - {"Note", "MarkdownNote"})
        if missing:
            raise GraphError(f"the workflow uses node types this ComfyUI does not have: {', '.join(missing)}; "
                             "install those custom nodes (and pass --all-custom-nodes)")
        try:
            return ui_to_api(workflow, info)
        except (KeyError, ValueError) as exc:
            raise GraphError(f"cannot convert the UI workflow to the API form: {exc}") from exc
    if all(isinstance(n, dict) and "class_type" in n for n in workflow.values()):
        return copy.deepcopy(workflow)
    raise GraphError("the workflow is neither UI format (a 'nodes' list) nor API format ({id: {class_type, "
                     "inputs}}); save it from ComfyUI with Save or Export (API)")


def _select(graph: dict, node: str) -> list[str]:
    if node in graph:
        return [node]
    titled = [i for i, n in graph.items() if n.get("_meta", {}).get("title") == node]
    return titled or [i for i, n in graph.items() if n["class_type"] == node]


def _one(graph: dict, wanted: str | None, classes, role: str, option: str) -> str:
    if wanted is not None:
        if wanted not in graph:
            raise GraphError(f"--{option} {wanted}: no such node id in the workflow (ids: {', '.join(sorted(graph))})")
        if graph[wanted]["class_type"] not in classes:
            raise GraphError(f"--{option} {wanted} is a {graph[wanted]['class_type']}; the {role} must be one of "
                             f"{', '.join(classes)}")
        return wanted
    found = sorted((i for i, n in graph.items() if n["class_type"] in classes), key=lambda i: (len(i), i))
    if len(found) != 1:
        raise GraphError(f"the workflow has {len(found)} {role} node(s) ({'/'.join(classes)}: {found or 'none'}); "
                         f"expected one, or name it with --{option} ID")
    return found[0]


def _ancestors(graph: dict, node: str) -> set[str]:
    keep, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n in keep:
            continue
        if n not in graph:
            raise GraphError(f"a link points at node {n}, which is not in the workflow")
        keep.add(n)
        todo += [v[0] for v in graph[n]["inputs"].values() if isinstance(v, list) and len(v) == 2]
    return keep


def plan(workflow: dict, info: dict, *, models: dict | None = None, assignments=(), source_node: str | None = None,
         save_node: str | None = None) -> Plan:
    """The per-item graph of `workflow` (UI or API format).

    Args:
        workflow (`dict`): the workflow JSON.
        info (`dict`): `/object_info` of the host that will run it.
        models (`dict`, *optional*): `MODEL_OPTIONS` key -> file name set on every node of that class.
        assignments (`Iterable[str]`): ``NODE.INPUT=VALUE`` overrides (see `parse_assignment`).
        source_node, save_node (`str`, *optional*): node ids, needed when the workflow has several.

    Raises:
        GraphError: no single source or metadata-free save node, an override names nothing, a core save node
            would be the output, or the workflow's format or node types are unknown here.
    """
    graph = _as_api(workflow, info)
    for key, value in (models or {}).items():
        if value is None:
            continue
        cls, name = MODEL_OPTIONS[key]
        targets = [n for n in graph.values() if n["class_type"] == cls]
        if not targets:
            raise GraphError(f"--{key.replace('_', '-')} {value}: the workflow has no {cls} node")
        for n in targets:
            n["inputs"][name] = value
    for text in assignments:
        node, name, value = parse_assignment(text)
        ids = _select(graph, node)
        if not ids:
            raise GraphError(f"--set {text}: no node with id, title or class {node!r} in the workflow")
        for i in ids:
            cls = graph[i]["class_type"]
            names = {w.name for w in layout(info[cls]).inputs} if cls in info else set(graph[i]["inputs"])
            if name not in names:
                raise GraphError(f"--set {text}: node {i} ({cls}) has no widget {name!r}; its widgets: "
                                 f"{', '.join(sorted(names)) or 'none'}")
            graph[i]["inputs"][name] = value
    if not any(n["class_type"] in SAVE_NODES for n in graph.values()) and save_node is None:
        core = sorted(i for i, n in graph.items() if n["class_type"] in ("SaveImage", "SaveVideo", "SaveAnimatedPNG"))
        hint = (f" Its core save node(s) {core} embed the prompt (the original's file name) in every file: replace "
                "them with 'Save Image, no metadata (FaceAnon)'.") if core else ""
        raise GraphError(f"the workflow has no metadata-free save node ({', '.join(SAVE_NODES)}).{hint}")
    save_id = _one(graph, save_node, SAVE_NODES, "save", "save-node")
    graph = {i: graph[i] for i in sorted(_ancestors(graph, save_id), key=lambda i: (len(i), i))}
    source_id = _one(graph, source_node, tuple(SOURCE_NODES), "source", "source-node")
    cls = graph[source_id]["class_type"]
    source_input, kind = SOURCE_NODES[cls]
    graph[source_id] = {"class_type": RUN_SOURCE[cls], "inputs": {source_input: ""},
                        "_meta": graph[source_id].get("_meta", {})}
    graph[save_id]["inputs"]["filename_prefix"] = SAVE_PREFIX
    return Plan(graph, source_id, source_input, kind, save_id)
