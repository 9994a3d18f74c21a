"""The API-format graphs of scripts/eval_workflows/ (run with `python -m faceanon.run` to reproduce the papers'
comparison) match the real node definitions: node types exist, every input exists with a valid value or a link to
an output of the right type. Model file names are checked for being strings only (the weights are not here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster on 2 cores

GRAPHS = sorted((Path(__file__).resolve().parents[1] / "scripts" / "eval_workflows").glob("*_api.json"))
FILE_INPUTS = {("LoadImage", "image"), ("CheckpointLoaderSimple", "ckpt_name"), ("FaceAnonLoadIDAdapter", "adapter")}


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_eval_graph_matches_the_node_definitions(host, path):
    graph = json.loads(path.read_text())
    mappings = host.nodes.NODE_CLASS_MAPPINGS
    for node_id, node in graph.items():
        cls = mappings.get(node["class_type"])
        assert cls is not None, f"{path.name}: node {node_id} type {node['class_type']} is not registered"
        spec = cls.INPUT_TYPES()
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        missing = [k for k in spec.get("required", {}) if k not in node["inputs"]]
        assert not missing, f"{path.name}: node {node_id} lacks required inputs {missing}"
        for name, value in node["inputs"].items():
            assert name in declared, f"{path.name}: node {node_id} has no input {name!r}"
            kind = declared[name][0]
            opts = declared[name][1] if len(declared[name]) > 1 else {}
            if isinstance(value, list):  # a link: [source node, output index]
                src = mappings[graph[value[0]]["class_type"]]
                out_type = src.RETURN_TYPES[value[1]]
                assert out_type == kind, f"{path.name}: {node_id}.{name} wants {kind}, gets {out_type}"
            elif (node["class_type"], name) in FILE_INPUTS:
                assert isinstance(value, str) and value
            elif isinstance(kind, list):
                assert value in kind, f"{path.name}: {node_id}.{name}={value!r} not in {kind}"
            elif kind == "COMBO":
                assert value in opts["options"], f"{path.name}: {node_id}.{name}={value!r} not in {opts['options']}"
            elif kind in ("INT", "FLOAT"):
                assert opts.get("min", value) <= value <= opts.get("max", value), (node_id, name, value)
    # the runner takes them as they are: one LoadImage, one metadata-free save node
    from faceanon.run.graph import plan
    from faceanon.workflow import object_info

    p = plan(graph, object_info(host.nodes, [n["class_type"] for n in graph.values()]))
    assert graph[p.save_id]["class_type"] == "FaceAnonSaveImage" and graph[p.source_id]["class_type"] == "LoadImage"
