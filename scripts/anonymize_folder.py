#!/usr/bin/env python3
"""Run an API-format ComfyUI workflow on every image of a folder, through a running ComfyUI server.

The first half of reproducing a comparison: anonymize a folder of photos with the pack, saving each result under
its original's file stem, then evaluate the folder with `python -m faceanon.evaluate` (docs/evaluation.md).

    python scripts/anonymize_folder.py --server http://127.0.0.1:8188 \\
        --workflow my_workflow_api.json --input photos/ --output results/faceanon/

The workflow must be in API format (ComfyUI: "Export (API)") with one `LoadImage` node (or name it with
`--image-node`) and one node that outputs images, e.g. `SaveImage`/`PreviewImage` (or `--output-node`).
For every input image: upload it (POST /upload/image, into the input subfolder `--subfolder`), set the LoadImage
node's `image`, queue the graph (POST /prompt), wait for it in /history/<id>, and download the first image of the
output node (GET /view) to OUTPUT/<stem>.png. Standard library only: runs with any Python 3.10+.

Note: the originals are copied into ComfyUI's input folder (`input/<subfolder>/`) by the upload; delete that folder
afterwards if they must not stay on the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

logger = logging.getLogger("anonymize_folder")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class RunError(RuntimeError):
    pass


def _request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 60.0) -> bytes:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")[:2000]
        raise RunError(f"{req.get_method()} {url} -> HTTP {exc.code}: {body}") from exc
    except urllib.error.URLError as exc:
        raise RunError(f"cannot reach {url}: {exc.reason}; is ComfyUI running there (python main.py --listen)?") \
            from exc


def upload(server: str, path: Path, subfolder: str) -> dict:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("overwrite", "true"), ("type", "input"), ("subfolder", subfolder)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    body = b"".join(parts)
    out = _request(f"{server}/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(out)


def find_node(graph: dict, wanted: str | None, classes: tuple[str, ...], role: str) -> str:
    if wanted is not None:
        if wanted not in graph:
            raise RunError(f"--{role}-node {wanted} is not in the workflow (node ids: {sorted(graph)[:20]})")
        return wanted
    found = [nid for nid, node in graph.items() if node.get("class_type") in classes]
    if len(found) != 1:
        raise RunError(f"the workflow has {len(found)} {'/'.join(classes)} node(s) ({found}); name the one to use "
                       f"with --{role}-node ID")
    return found[0]


def run_one(server: str, graph: dict, image_node: str, output_node: str, path: Path, subfolder: str,
            timeout: float, client_id: str) -> bytes:
    ref = upload(server, path, subfolder)
    graph = json.loads(json.dumps(graph))  # a fresh copy per image
    image_name = f"{ref['subfolder']}/{ref['name']}" if ref.get("subfolder") else ref["name"]
    graph[image_node]["inputs"]["image"] = image_name
    body = json.dumps({"prompt": graph, "client_id": client_id}).encode()
    queued = json.loads(_request(f"{server}/prompt", body, {"Content-Type": "application/json"}))
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + timeout
    while True:
        history = json.loads(_request(f"{server}/history/{prompt_id}"))
        entry = history.get(prompt_id)
        if entry is not None:
            status = entry.get("status", {})
            if status.get("status_str") == "error":
                msgs = [m for m in status.get("messages", []) if m and m[0] == "execution_error"]
                detail = msgs[0][1].get("exception_message", "") if msgs else ""
                raise RunError(f"{path.name}: the workflow failed: {detail}".strip())
            if status.get("completed", True):
                break
        if time.monotonic() > deadline:
            raise RunError(f"{path.name}: no result after {timeout:.0f} s (prompt {prompt_id})")
        time.sleep(0.5)
    images = entry.get("outputs", {}).get(output_node, {}).get("images", [])
    if not images:
        raise RunError(f"{path.name}: output node {output_node} produced no image (outputs of: "
                       f"{sorted(entry.get('outputs', {}))})")
    first = images[0]
    query = urllib.parse.urlencode({"filename": first["filename"], "subfolder": first.get("subfolder", ""),
                                    "type": first.get("type", "output")})
    return _request(f"{server}/view?{query}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="http://127.0.0.1:8188")
    p.add_argument("--workflow", type=Path, required=True, help="API-format workflow JSON")
    p.add_argument("--input", type=Path, required=True, help="folder of original images")
    p.add_argument("--output", type=Path, required=True, help="folder for the results (<stem>.png)")
    p.add_argument("--image-node", default=None, help="id of the LoadImage node (default: the only one)")
    p.add_argument("--output-node", default=None, help="id of the node whose image is the result")
    p.add_argument("--subfolder", default="faceanon_eval", help="input subfolder the originals are uploaded to")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per image (default 1800)")
    p.add_argument("--skip-existing", action="store_true", help="keep results already in the output folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = args.server.rstrip("/")
    try:
        graph = json.loads(args.workflow.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"error: cannot read the workflow {args.workflow}: {exc}\n")
        return 2
    if not isinstance(graph, dict) or "nodes" in graph or not all(
            isinstance(n, dict) and "class_type" in n for n in graph.values()):
        sys.stderr.write(f"error: {args.workflow} is not an API-format workflow (a UI workflow has a 'nodes' list); "
                         "export it with 'Export (API)' in ComfyUI\n")
        return 2
    try:
        image_node = find_node(graph, args.image_node, ("LoadImage",), "image")
        output_node = find_node(graph, args.output_node, ("SaveImage", "PreviewImage"), "output")
    except RunError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    files = sorted(f for f in args.input.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) \
        if args.input.is_dir() else []
    if not files:
        sys.stderr.write(f"error: no images in {args.input}\n")
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    client_id = uuid.uuid4().hex
    failed = 0
    for i, path in enumerate(files):
        target = args.output / (path.stem + ".png")
        if args.skip_existing and target.exists():
            continue
        start = time.monotonic()
        try:
            target.write_bytes(run_one(server, graph, image_node, output_node, path, args.subfolder, args.timeout,
                                       client_id))
        except RunError as exc:
            failed += 1
            logger.error("[%d/%d] %s", i + 1, len(files), exc)
            if "cannot reach" in str(exc):
                return 2
            continue
        logger.info("[%d/%d] %s -> %s (%.1f s)", i + 1, len(files), path.name, target, time.monotonic() - start)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
