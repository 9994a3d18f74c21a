"""ComfyUI workflow formats, read from the real node schemas: build UI workflows, check them, convert them to API.

A node's schema is its `/object_info` entry (the same dict in-process: `object_info(nodes_module)`). The frontend
turns the schema's inputs into sockets and widgets, in this order (read from the frontend, 1.35):

* sockets: every non-widget input (required, then optional), in `inputs[]`; links point at their index there;
* widgets: every INT / FLOAT / STRING / BOOLEAN / COMBO input without `forceInput`, in schema order; their values
  are `widgets_values`, positionally, with frontend-only extra values interleaved:
  - an INT with `control_after_generate` (or, when the key is absent, named `seed` / `noise_seed`) is followed by
    its "control after generate" value (`fixed`, `increment`, `decrement`, `randomize`);
  - a COMBO with `image_upload` or `video_upload` is followed by the upload button's value (`"image"`).

Those extra values are not inputs: the API form (what `POST /prompt` takes) drops them. Frontend-only nodes (Note,
MarkdownNote) are not in `/object_info` and are not part of the API form.

Imports nothing from ComfyUI: callers pass the node info.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY_NODES = {"Note", "MarkdownNote"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
CONTROL = "control_after_generate"
UPLOAD = "upload"


def object_info(nodes_module, names=None) -> dict:
    """`GET /object_info` computed in-process from ComfyUI's `nodes` module (same fields the server returns)."""
    from comfy_api.latest._io import _ComfyNodeInternal  # noqa: PLC0415 - only with a host

    out = {}
    for name in names if names is not None else list(nodes_module.NODE_CLASS_MAPPINGS):
        cls = nodes_module.NODE_CLASS_MAPPINGS[name]
        if issubclass(cls, _ComfyNodeInternal):
            out[name] = cls.GET_NODE_INFO_V1()
            continue
        inputs = cls.INPUT_TYPES()
        out[name] = {
            "input": inputs,
            "input_order": {k: list(v) for k, v in inputs.items()},
            "output": list(cls.RETURN_TYPES),
            "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
            "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
            "name": name,
            "display_name": nodes_module.NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
            "description": getattr(cls, "DESCRIPTION", ""),
            "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
            "category": getattr(cls, "CATEGORY", "sd"),
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        }
    # enum members (IO.CONDITIONING...) compare equal to their strings; make them plain strings
    return _plain(out)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------------------------
# what the frontend makes of a schema
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One socket or one widget value slot of a node, as the frontend lays them out."""

    name: str
    type: str                 # socket type, widget type (INT, FLOAT, STRING, BOOLEAN, COMBO), or CONTROL / UPLOAD
    options: dict = field(default_factory=dict, compare=False)
    optional: bool = False
    choices: tuple = ()       # COMBO options


@dataclass(frozen=True)
class NodeLayout:
    sockets: list[Slot]
    widgets: list[Slot]       # every widgets_values position, extra frontend values included
    outputs: list[tuple[str, str]]  # (name, type)

    @property
    def inputs(self) -> list[Slot]:
        """The schema inputs that are widgets (the API form's named values)."""
        return [w for w in self.widgets if w.type not in (CONTROL, UPLOAD)]


def _input_kind(spec) -> tuple[str, dict, tuple]:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, list):  # V1 combo: the options themselves
        return "COMBO", opts, tuple(kind)
    if kind == "COMBO":
        return "COMBO", opts, tuple(opts.get("options", ()))
    return str(kind), opts, ()


def layout(info: dict) -> NodeLayout:
    """Sockets, widget value slots and outputs of a node type, from its `/object_info` entry."""
    sockets, widgets = [], []
    order = info.get("input_order") or {k: list(v) for k, v in info.get("input", {}).items()}
    for section in ("required", "optional"):
        specs = info.get("input", {}).get(section, {})
        for name in order.get(section, list(specs)):
            kind, opts, choices = _input_kind(specs[name])
            optional = section == "optional"
            if kind in WIDGET_TYPES and not opts.get("forceInput"):
                widgets.append(Slot(name, kind, opts, optional, choices))
                control = opts.get("control_after_generate", name in ("seed", "noise_seed"))
                if kind == "INT" and control:
                    widgets.append(Slot(CONTROL, CONTROL, {}, optional, CONTROL_VALUES))
                # the frontend saves the upload button's value "image" after the file, for videos too (as
                # ComfyUI's own video templates show: LoadVideo's widgets_values are [file, "image"])
                if kind == "COMBO" and (opts.get("image_upload") or opts.get("video_upload")):
                    widgets.append(Slot(UPLOAD, UPLOAD, {}, optional, ("image",)))
                for extra in ("audio_upload", "animated_image_upload", "upload"):
                    if opts.get(extra):
                        raise NotImplementedError(f"{info.get('name')}.{name}: {extra} widgets are not supported")
            else:
                sockets.append(Slot(name, kind, opts, optional))
    names = info.get("output_name") or info.get("output", [])
    outputs = [(str(n), str(t)) for n, t in zip(names, info.get("output", []), strict=True)]
    return NodeLayout(sockets, widgets, outputs)


def types_match(output_type: str, input_type: str) -> bool:
    """ComfyUI's rule: equal names, "*" on either side, or comma-separated unions sharing a type."""
    if output_type == "*" or input_type == "*":
        return True
    outs, ins = set(output_type.split(",")), set(input_type.split(","))
    return bool(outs & ins)


def check_widget_value(slot: Slot, value) -> str:
    """"" when `value` is valid for the widget slot, else why not."""
    t = slot.type
    if t == CONTROL:
        return "" if value in CONTROL_VALUES else f"{value!r} is not a control_after_generate value {CONTROL_VALUES}"
    if t == UPLOAD:
        return "" if value == "image" else f"the upload button's value is 'image', got {value!r}"
    if t == "BOOLEAN":
        return "" if isinstance(value, bool) else f"expected true/false, got {value!r}"
    if t == "STRING":
        return "" if isinstance(value, str) else f"expected a string, got {value!r}"
    if t == "COMBO":
        return "" if value in slot.choices else f"{value!r} is not one of {list(slot.choices)}"
    if t in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"expected a number, got {value!r}"
        if t == "INT" and value != int(value):
            return f"expected an integer, got {value!r}"
        lo, hi = slot.options.get("min"), slot.options.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            return f"{value!r} is outside {lo}..{hi}"
        return ""
    return f"unknown widget type {t}"


# ---------------------------------------------------------------------------------------------------------------
# checking and converting UI workflows
# ---------------------------------------------------------------------------------------------------------------
def check_workflow(workflow: dict, info: dict, file_inputs: dict | None = None) -> list[str]:
    """Every problem a user would meet on loading `workflow`: unknown node types, links between wrong types or
    slots, widget value counts and values. `file_inputs` maps (node type, input) to a predicate used instead of the
    choice list for file names (models not installed here); returns [] when the workflow is sound."""
    file_inputs = file_inputs or {}
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    if len(nodes) != len(workflow["nodes"]):
        problems.append("duplicate node ids")
    links = {}
    for link in workflow.get("links", []):
        if len(link) != 6:
            problems.append(f"link {link}: expected [id, from_node, from_slot, to_node, to_slot, type]")
            continue
        links[link[0]] = link
    for key in ("last_node_id", "last_link_id"):
        if key not in workflow:
            problems.append(f"missing {key}")
    if nodes and workflow.get("last_node_id", 0) < max(nodes):
        problems.append(f"last_node_id {workflow.get('last_node_id')} < largest node id {max(nodes)}")
    if links and workflow.get("last_link_id", 0) < max(links):
        problems.append(f"last_link_id {workflow.get('last_link_id')} < largest link id {max(links)}")
    for node in workflow["nodes"]:
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in FRONTEND_ONLY_NODES:
            continue
        if node["type"] not in info:
            problems.append(f"{where}: node type not installed (not in /object_info)")
            continue
        lay = layout(info[node["type"]])
        socket_names = [s.name for s in lay.sockets]
        inputs = node.get("inputs", [])
        for k, inp in enumerate(inputs):
            link_id = inp.get("link")
            if inp.get("widget"):  # a widget turned into a socket: the widget must exist
                if inp["widget"].get("name") not in [w.name for w in lay.inputs]:
                    problems.append(f"{where}: input {inp['name']!r} refers to no widget")
                target_type = next((w.type for w in lay.inputs if w.name == inp["widget"].get("name")), None)
            else:
                if inp["name"] not in socket_names:
                    problems.append(f"{where}: input {inp['name']!r} is not a socket of this node ({socket_names})")
                    continue
                target_type = lay.sockets[socket_names.index(inp["name"])].type
            if link_id is None:
                continue
            link = links.get(link_id)
            if link is None:
                problems.append(f"{where}: input {inp['name']!r} uses missing link {link_id}")
                continue
            _, src, src_slot, dst, dst_slot, ltype = link
            if dst != node["id"] or dst_slot != k:
                problems.append(f"{where}: link {link_id} ends at node {dst} slot {dst_slot}, not here (slot {k})")
            src_node = nodes.get(src)
            if src_node is None or src_node["type"] not in info:
                problems.append(f"{where}: link {link_id} comes from unknown node {src}")
                continue
            src_outputs = layout(info[src_node["type"]]).outputs
            if not 0 <= src_slot < len(src_outputs):
                problems.append(f"{where}: link {link_id} from output {src_slot} of node {src}, which has "
                                f"{len(src_outputs)} outputs")
                continue
            out_type = src_outputs[src_slot][1]
            if ltype != out_type:
                problems.append(f"{where}: link {link_id} is typed {ltype} but node {src}'s output is {out_type}")
            if not types_match(out_type, target_type):
                problems.append(f"{where}: input {inp['name']!r} wants {target_type}, gets {out_type} from node {src}")
        for s in lay.sockets:
            if not s.optional and not any(i["name"] == s.name and i.get("link") is not None for i in inputs):
                problems.append(f"{where}: required input {s.name!r} is not connected")
        values = node.get("widgets_values", [])
        if not isinstance(values, list):
            problems.append(f"{where}: widgets_values must be a list")
            continue
        if len(values) != len(lay.widgets):
            problems.append(f"{where}: {len(values)} widget values for {len(lay.widgets)} widgets "
                            f"({[w.name for w in lay.widgets]})")
            continue
        for slot, value in zip(lay.widgets, values, strict=True):
            check = file_inputs.get((node["type"], slot.name))
            if check is not None:
                if not check(value):
                    problems.append(f"{where}: {slot.name} = {value!r} is not a valid file name here")
                continue
            why = check_widget_value(slot, value)
            if why:
                problems.append(f"{where}: {slot.name}: {why}")
    return problems


def ui_to_api(workflow: dict, info: dict) -> dict:
    """The API form of a UI workflow (what the frontend's Queue button posts), from the node schemas.

    Widget values are named by the schema's widget order; control_after_generate and upload values are dropped;
    linked inputs become [source node id, output index]; frontend-only nodes are left out."""
    links = {link[0]: link for link in workflow.get("links", [])}
    api = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in FRONTEND_ONLY_NODES:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} ({node['type']}) is muted or bypassed (mode {node['mode']}): not "
                             "supported by this converter")
        if node["type"] not in info:
            raise KeyError(f"node {node['id']}: type {node['type']} is not installed")
        lay = layout(info[node["type"]])
        inputs = {}
        values = node.get("widgets_values", [])
        # extra values (widgets a frontend extension adds, e.g. PreviewAny's) follow the schema's: ignored
        for slot, value in zip(lay.widgets, values, strict=False):
            if slot.type not in (CONTROL, UPLOAD):
                inputs[slot.name] = value
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                _, src, src_slot, *_ = links[inp["link"]]
                name = inp["widget"]["name"] if inp.get("widget") else inp["name"]
                inputs[name] = [str(src), src_slot]
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                "_meta": {"title": node.get("title") or info[node["type"]].get("display_name",
                                                                                             node["type"])}}
    return api


# ---------------------------------------------------------------------------------------------------------------
# building UI workflows from compact descriptions
# ---------------------------------------------------------------------------------------------------------------
SLOT_HEIGHT, WIDGET_HEIGHT, TITLE_PAD = 20, 24, 6
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
# nodes that show an image or a text box below their widgets once run: room for it, so nothing overlaps
MIN_HEIGHT = {"LoadImage": 340, "FaceAnonPreviewImage": 300, "FaceAnonSaveImage": 300, "PreviewImage": 300,
              "SaveImage": 300, "PreviewAny": 170}
# room below the nodes under which the pack's frontend extension (js/faceanon.js) shows a report after a run
ROOM_BELOW = {"FaceAnonymize": 40, "FaceAnonDetectFaces": 40, "FaceAnonVerify": 90}


def _height(lay: NodeLayout, multiline: int) -> int:
    """The frontend's computeSize height (measured: 20 px a socket row, 24 a widget, multiline text boxes taller)."""
    rows = max(1, len(lay.sockets), len(lay.outputs))
    h = rows * SLOT_HEIGHT + TITLE_PAD
    for w in lay.widgets:
        if w.type == "STRING" and w.options.get("multiline"):
            h += multiline
        else:
            h += WIDGET_HEIGHT
    return h + (8 if lay.widgets else 0)


class Out:
    """A reference to output `slot` of a node in a `Graph` (what a node's input is connected to)."""

    def __init__(self, node: GraphNode, slot: int):
        self.node, self.slot = node, slot


class GraphNode:
    def __init__(self, graph: Graph, node_id: int, type_: str, column: int, values: dict, title: str | None,
                 width: int | None, multiline: int):
        self.graph, self.id, self.type, self.column = graph, node_id, type_, column
        self.values, self.title, self.width, self.multiline = values, title, width, multiline

    def __getitem__(self, key) -> Out:
        if self.type in FRONTEND_ONLY_NODES:
            raise TypeError("a note has no outputs")
        outputs = layout(self.graph.info[self.type]).outputs
        if isinstance(key, int):
            if not 0 <= key < len(outputs):
                raise IndexError(f"{self.type} has {len(outputs)} outputs, no output {key}")
            return Out(self, key)
        names = [n for n, _ in outputs]
        if key not in names:
            raise KeyError(f"{self.type} has no output {key!r}; outputs: {names}")
        return Out(self, names.index(key))


class Graph:
    """A compact description of a UI workflow: nodes by type with their values and links, laid out in columns.

    `node(type, col, **values)` takes widget values and links (an `Out`) by input name; widget values left out get
    the schema default; `control_after_generate` may be given (default "fixed"). `note(text, col)` adds a Note.
    `group(title, nodes)` frames nodes. `to_ui()` returns the workflow dict."""

    def __init__(self, info: dict):
        self.info = info
        self.nodes: list[GraphNode] = []
        self.groups: list[tuple[str, list[GraphNode], str]] = []

    def node(self, type_: str, col: int, title: str | None = None, width: int | None = None, multiline: int = 90,
             **values) -> GraphNode:
        if type_ not in self.info and type_ not in FRONTEND_ONLY_NODES:
            raise KeyError(f"node type {type_} is not installed")
        n = GraphNode(self, len(self.nodes) + 1, type_, col, values, title, width, multiline)
        if type_ not in FRONTEND_ONLY_NODES:
            lay = layout(self.info[type_])
            known = {s.name for s in lay.sockets} | {w.name for w in lay.widgets}
            unknown = set(values) - known
            if unknown:
                raise KeyError(f"{type_} has no input(s) {sorted(unknown)}; inputs: {sorted(known)}")
        self.nodes.append(n)
        return n

    def note(self, text: str, col: int, width: int = 400, height: int = 200, title: str = "Note") -> GraphNode:
        n = self.node("Note", col, title=title, width=width, text=text)
        n.height = height
        return n

    def group(self, title: str, nodes: list[GraphNode], color: str = "#3f789e") -> None:
        self.groups.append((title, nodes, color))

    # -- serialisation -------------------------------------------------------------------------------------------
    def _widget_values(self, n: GraphNode, lay: NodeLayout) -> list:
        out = []
        for slot in lay.widgets:
            if slot.type == CONTROL:
                out.append(n.values.get(CONTROL, "fixed"))
            elif slot.type == UPLOAD:
                out.append("image")
            elif slot.name in n.values and not isinstance(n.values[slot.name], Out):
                out.append(n.values[slot.name])
            elif "default" in slot.options:
                out.append(slot.options["default"])
            elif slot.type == "COMBO" and slot.choices:
                out.append(slot.choices[0])
            else:
                raise ValueError(f"{n.type}.{slot.name} has no default: give a value")
        return out

    def to_ui(self, extra: dict | None = None) -> dict:
        links, ui_nodes = [], {}
        out_links: dict[tuple[int, int], list[int]] = {}
        sizes = {}
        for n in self.nodes:
            if n.type in FRONTEND_ONLY_NODES:
                sizes[n.id] = [n.width, getattr(n, "height", 200)]
                continue
            lay = layout(self.info[n.type])
            width = n.width or (400 if any(w.options.get("multiline") for w in lay.widgets) else 320)
            sizes[n.id] = [width, max(_height(lay, n.multiline), MIN_HEIGHT.get(n.type, 0))]
        # columns: x from the widest node of the previous columns, nodes stacked top to bottom
        gap = 80
        columns = sorted({n.column for n in self.nodes})
        x, pos = 0, {}
        for c in columns:
            y = 0
            members = [n for n in self.nodes if n.column == c]
            for n in members:
                pos[n.id] = [x, y]
                y += sizes[n.id][1] + 90 + ROOM_BELOW.get(n.type, 0)  # title bars, group headers
            x += max(sizes[n.id][0] for n in members) + gap
        order = self._topological_order()
        for n in self.nodes:
            node = {"id": n.id, "type": n.type, "pos": pos[n.id], "size": sizes[n.id], "flags": {},
                    "order": order[n.id], "mode": 0}
            if n.type in FRONTEND_ONLY_NODES:
                node.update(inputs=[], outputs=[], properties={}, widgets_values=[n.values["text"]],
                            color=NOTE_COLOR, bgcolor=NOTE_BGCOLOR)
                if n.title:
                    node["title"] = n.title
                ui_nodes[n.id] = node
                continue
            lay = layout(self.info[n.type])
            inputs = []
            for k, s in enumerate(lay.sockets):
                src = n.values.get(s.name)
                link = None
                if src is not None:
                    if not isinstance(src, Out):
                        raise TypeError(f"{n.type}.{s.name} is a socket: connect an output, got {src!r}")
                    link = len(links) + 1
                    src_type = layout(self.info[src.node.type]).outputs[src.slot][1]
                    if not types_match(src_type, s.type):
                        raise TypeError(f"{n.type}.{s.name} wants {s.type}, got {src_type} from {src.node.type}")
                    links.append([link, src.node.id, src.slot, n.id, k, src_type])
                    out_links.setdefault((src.node.id, src.slot), []).append(link)
                elif not s.optional:
                    raise ValueError(f"{n.type}.{s.name} is required: connect it")
                inputs.append({"name": s.name, "type": s.type, "link": link})
            for w in lay.inputs:  # a widget fed by a link (e.g. CreateVideo's fps from the source video) becomes an
                src = n.values.get(w.name)  # input that names its widget; the widget keeps its value (default)
                if not isinstance(src, Out):
                    continue
                link = len(links) + 1
                src_type = layout(self.info[src.node.type]).outputs[src.slot][1]
                if not types_match(src_type, w.type):
                    raise TypeError(f"{n.type}.{w.name} wants {w.type}, got {src_type} from {src.node.type}")
                links.append([link, src.node.id, src.slot, n.id, len(inputs), src_type])
                out_links.setdefault((src.node.id, src.slot), []).append(link)
                inputs.append({"name": w.name, "type": w.type, "widget": {"name": w.name}, "link": link})
            node["inputs"] = inputs
            node["outputs"] = [{"name": name, "type": t, "links": None, "slot_index": k}
                               for k, (name, t) in enumerate(lay.outputs)]
            node["properties"] = {"Node name for S&R": n.type}
            if lay.widgets:
                node["widgets_values"] = self._widget_values(n, lay)
            if n.title:
                node["title"] = n.title
            ui_nodes[n.id] = node
        for (src, slot), ids in out_links.items():
            ui_nodes[src]["outputs"][slot]["links"] = ids
        groups = []
        for k, (title, members, color) in enumerate(self.groups, 1):
            x0 = min(pos[m.id][0] for m in members) - 20
            y0 = min(pos[m.id][1] for m in members) - 75
            x1 = max(pos[m.id][0] + sizes[m.id][0] for m in members) + 20
            y1 = max(pos[m.id][1] + sizes[m.id][1] for m in members) + 20
            groups.append({"id": k, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": color,
                           "font_size": 24, "flags": {}})
        return {
            "last_node_id": len(self.nodes),
            "last_link_id": len(links),
            "nodes": [ui_nodes[n.id] for n in self.nodes],
            "links": links,
            "groups": groups,
            "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [60, 120]}, **(extra or {})},
            "version": 0.4,
        }

    def _topological_order(self) -> dict[int, int]:
        deps = {n.id: {v.node.id for v in n.values.values() if isinstance(v, Out)} for n in self.nodes}
        order, done = {}, set()
        while len(done) < len(self.nodes):
            ready = [i for i in deps if i not in done and deps[i] <= done]
            if not ready:
                raise ValueError("the graph has a cycle")
            for i in sorted(ready):
                order[i] = len(order)
                done.add(i)
        return order
