"""Command line of the headless runner: ``python -m faceanon.run`` (or ``faceanon-run``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .comfy import BootError, Spec
from .graph import GraphError
from .items import ItemsError, list_items
from .runner import Job, run_embedded

logger = logging.getLogger("faceanon.run")

EPILOG = """\
examples:
  python -m faceanon.run --workflow workflows/faceanon_nullface_sd15_keep_eyes_mouth.json \\
      --input photos/ --output anonymized/
  python -m faceanon.run --workflow my_video_workflow.json --input clip.mp4 --output anonymized/
  python -m faceanon.run --workflow wf.json --input photos/ --output out/ --ray auto --workers 8

The manifest (OUTPUT/faceanon_manifest.jsonl unless --manifest) has one JSON line per item; rerunning the same
command skips the finished ones and retries the failed ones. Exit status: 0 all items finished, 1 some failed,
2 bad setup (nothing run), 130 interrupted.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m faceanon.run", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Anonymize a folder of images, a video or a list of files with a FaceAnon workflow, in ComfyUI "
                    "in-process (no server), on this machine or a Ray cluster. Resumable; writes no metadata; "
                    "writes nothing for an item that fails.")
    p.add_argument("--workflow", type=Path, required=True,
                   help="workflow JSON, UI format (Save) or API format (Export (API)); e.g. a file of workflows/")
    p.add_argument("--input", type=Path, required=True,
                   help="a folder of images / videos (searched recursively), one image or video, or a list file "
                        "(.txt: one path a line)")
    p.add_argument("--output", type=Path, required=True,
                   help="output folder: each result keeps its input's relative path, e.g. OUTPUT/a/b.png")
    p.add_argument("--manifest", type=Path, default=None, help="manifest file (default OUTPUT/faceanon_manifest.jsonl)")
    g = p.add_argument_group("models and settings")
    g.add_argument("--checkpoint", help="checkpoint file for every CheckpointLoaderSimple (models/checkpoints/)")
    g.add_argument("--id-adapter", help="FaceID file for every FaceAnonLoadIDAdapter (models/ipadapter/)")
    g.add_argument("--face-models", help="insightface pack for every FaceAnonLoadFaceAnalysis (e.g. buffalo_l)")
    g.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE", dest="assignments",
                   help="override a widget value; NODE is a node id, title or class (all nodes of that class); VALUE "
                        "is JSON when it parses, else text. Repeatable: --set FaceAnonymize.seed=3")
    g.add_argument("--source-node", metavar="ID", help="the LoadImage / LoadVideo node, if the workflow has several")
    g.add_argument("--save-node", metavar="ID", help="the metadata-free save node, if the workflow has several")
    h = p.add_argument_group("ComfyUI")
    h.add_argument("--comfyui", help="ComfyUI folder (default: COMFYUI_PATH, then the current folder)")
    h.add_argument("--models-dir", action="append", default=[], type=Path,
                   help="extra model root laid out like ComfyUI's models/ (checkpoints/, ipadapter/, insightface/...)")
    h.add_argument("--extra-model-paths-config", action="append", default=[], type=Path, metavar="YAML",
                   help="ComfyUI extra_model_paths.yaml file(s)")
    h.add_argument("--cpu", action="store_true", default=None, help="run on the CPU (default: the GPU when present)")
    h.add_argument("--all-custom-nodes", action="store_true",
                   help="also load the other custom node packs of the ComfyUI folder (for workflows that use them)")
    h.add_argument("--threads", type=int, help="torch CPU threads")
    r = p.add_argument_group("Ray (optional: pip install -r requirements-ray.txt)")
    r.add_argument("--ray", metavar="auto|ADDRESS|local",
                   help="run on a Ray cluster: auto (the cluster this machine joined with `ray start`), an address "
                        "(ray://host:10001 or host:6379), or local (a private one-machine cluster)")
    r.add_argument("--workers", type=int, help="Ray actors (default: the cluster's GPUs, or 1)")
    r.add_argument("--gpus-per-worker", type=float, help="GPUs per actor (default 1 when the cluster has GPUs)")
    r.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per actor (default 1)")
    r.add_argument("--object-store-mb", type=int, help="object store size of a --ray local cluster")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log ComfyUI's and the runner's progress")
    return p


def spec_from_args(args) -> Spec:
    try:
        workflow = json.loads(args.workflow.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GraphError(f"cannot read the workflow {args.workflow}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise GraphError(f"the workflow {args.workflow} is not JSON: {exc}") from exc
    return Spec(workflow=workflow, comfyui=args.comfyui,
                models={"checkpoint": args.checkpoint, "id_adapter": args.id_adapter,
                        "face_models": args.face_models},
                assignments=tuple(args.assignments), source_node=args.source_node, save_node=args.save_node,
                models_dirs=tuple(str(p) for p in args.models_dir),
                extra_model_paths=tuple(str(p) for p in args.extra_model_paths_config), cpu=args.cpu,
                all_custom_nodes=args.all_custom_nodes, threads=args.threads)


def check_apart(source: Path, output: Path, items) -> None:
    """Refuse an output folder that holds inputs, or lies inside the input folder (a rerun would read outputs)."""
    out, src = output.resolve(), source.resolve()
    if src.is_dir() and (out == src or src in out.parents):
        raise ItemsError(f"the output folder {output} is inside the input folder {source}: choose a folder outside it")
    inside = [i.rel for i in items if out in Path(i.path).parents]
    if inside:
        raise ItemsError(f"the output folder {output} holds input(s) {inside[:3]}: choose another output folder")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        if not args.verbose:  # ComfyUI logs each failing item's traceback: the manifest and summary have the error
            for handler in logging.getLogger().handlers:
                handler.addFilter(lambda r: r.name.startswith("faceanon.run") or r.levelno >= logging.CRITICAL)
    try:
        spec = spec_from_args(args)
        job = Job(list_items(args.input), args.output, args.manifest)
        check_apart(args.input, args.output, job.items)
        if args.ray:
            from .ray_runner import run_ray

            summary = run_ray(spec, job, args.ray, args.workers, args.gpus_per_worker, args.cpus_per_worker,
                              args.object_store_mb, show_progress=not args.no_progress, verbose=args.verbose)
        else:
            summary = run_embedded(spec, job, show_progress=not args.no_progress)
    except (BootError, GraphError, ItemsError, RuntimeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:  # while ComfyUI was starting: no item ran
        sys.stderr.write("interrupted before any item ran\n")
        return 130
    sys.stderr.write(summary.text(job.manifest.path) + "\n")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
