"""System check: what FaceAnon sees of this install, and what is missing.

    python -m faceanon.doctor                      # inside ComfyUI/custom_nodes/<pack>/: finds ComfyUI itself
    python -m faceanon.doctor --comfyui /path/to/ComfyUI [--extra-model-paths-config extra_model_paths.yaml]

The same report is the FaceAnonSystemCheck node's text. It lists the ComfyUI version; torch and CUDA; the
onnxruntime builds installed and their execution providers (several builds side by side are flagged: they overwrite
each other's files); the insightface and numpy versions; every model folder searched (extra_model_paths.yaml
entries included) with the files found there: FaceID files with the base-model family read from their tensor shapes
and whether the embedded LoRA is present, insightface packs with which of their files are there, and the common
mistakes (a pack nested one folder too deep, files in the wrong folder). Every missing file is named with its
folder, size and source (faceanon.model_files, the README's model table).

Host-independent: `system_report(folders, comfyui_version)` takes the model folders as {folder name: [paths]};
`comfy_model_folders()` and `main()` read them from ComfyUI's `folder_paths` at run time. FaceID files are read
lazily (tensor headers only): checking a 1 GB file takes milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from . import model_files
from .model_files import MODEL_FILES, PACK_FILE_SIZES

# The ComfyUI model folders the pack reads, and the file extensions it looks at in each.
FOLDERS = ("checkpoints", "ipadapter", "insightface", "loras")
FACEID_EXTENSIONS = tuple(sorted(model_files.PACK_FOLDERS["ipadapter"]))
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".sft")
MAX_LISTED = 12  # files listed per folder before "... and N more"
MAX_WALK = 20000  # directory entries walked per folder (a models folder on a NAS can be huge)

_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


@dataclass
class Report:
    """The system check: titled sections of text lines, and the problems found (each with its fix)."""

    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems

    def headline(self) -> str:
        if self.ready:
            return "FaceAnon system check: ready (every file the default workflows use was found)"
        return f"FaceAnon system check: WARNING: {len(self.problems)} problem(s), see below"

    def text(self) -> str:
        out = [self.headline()]
        out += [f"WARNING: {p}" for p in self.problems]
        for title, lines in self.sections:
            out += ["", f"== {title}", *lines]
        return "\n".join(out)

    def fields(self) -> dict:
        """The structured fields the frontend extension summarizes under the node (js/faceanon.js)."""
        return {"ready": self.ready, "headline": self.headline(), "problems": list(self.problems)}

    def to_json(self) -> str:
        return json.dumps({"ready": self.ready, "problems": self.problems,
                           "sections": [{"title": t, "lines": lines} for t, lines in self.sections]}, indent=1)


# ---------------------------------------------------------------------------------------------------------------
# Software
# ---------------------------------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def software(comfyui_version: str | None, report: Report) -> None:
    """Python, ComfyUI, torch/CUDA, numpy, insightface, onnxruntime builds and providers."""
    from .faces import onnxruntime_distributions, runtime_conflict

    lines = [f"Python {platform.python_version()} ({sys.executable})",
             f"ComfyUI {comfyui_version or 'not found (run inside ComfyUI, or pass --comfyui PATH)'}"]
    try:
        import torch

        cuda = torch.version.cuda or "none (CPU build)"
        line = f"torch {torch.__version__}, CUDA build {cuda}"
        if torch.cuda.is_available():
            line += f", GPU {torch.cuda.get_device_name(0)}"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            line += ", Apple MPS available"
        else:
            line += ", no GPU visible to torch"
        lines.append(line)
    except Exception as e:  # noqa: BLE001 - report a broken torch, do not crash the check
        lines.append(f"torch: cannot be imported ({type(e).__name__}: {e})")
        report.problems.append(f"torch cannot be imported ({e}); ComfyUI needs it")
    for dist, why in (("numpy", "numpy"), ("insightface", "face analysis (insightface >= 2.1)")):
        v = _version(dist)
        lines.append(f"{dist} {v}" if v else f"{dist}: NOT installed")
        if v is None:
            report.problems.append(f"{dist} is not installed; {why} needs it: "
                                   f"'{sys.executable} -m pip install -r requirements.txt' in the pack's folder")
    dists = onnxruntime_distributions()
    lines.append("onnxruntime builds installed: " + (", ".join(f"{n} {v}" for n, v in dists) or "none"))
    if not dists:
        report.problems.append(f"no onnxruntime is installed; face analysis needs exactly one: "
                               f"'{sys.executable} -m pip install onnxruntime' (or onnxruntime-gpu)")
    conflict = runtime_conflict(dists)
    if conflict:
        report.problems.append(conflict)
    try:
        import onnxruntime

        lines.append(f"onnxruntime module {onnxruntime.__version__} from {Path(onnxruntime.__file__).parent}")
        lines.append("execution providers: " + ", ".join(onnxruntime.get_available_providers()))
    except Exception as e:  # noqa: BLE001
        if dists:
            report.problems.append(f"onnxruntime is installed but cannot be imported ({type(e).__name__}: {e})")
        lines.append(f"onnxruntime module: cannot be imported ({type(e).__name__}: {e})")
    report.sections.append(("Software", lines))


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
def _walk(root: Path, extensions: Sequence[str] | None) -> list[Path]:
    """Files under `root` (recursively, like ComfyUI's file lists), at most MAX_WALK entries."""
    out, seen = [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for f in sorted(filenames):
            seen += 1
            if seen > MAX_WALK:
                return out
            if extensions is None or f.lower().endswith(tuple(extensions)):
                out.append(Path(dirpath) / f)
    return out


def _meta_safetensors(path: Path) -> dict:
    """{key: meta tensor} from a .safetensors header (no tensor data is read)."""
    import torch

    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > 100_000_000:
            raise ValueError(f"header of {n} bytes: not a .safetensors file")
        header = json.loads(fh.read(n))
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        dtype = getattr(torch, _SAFETENSORS_DTYPES.get(v["dtype"], "float32"))
        out[k] = torch.empty(v["shape"], dtype=dtype, device="meta")
    return out


def inspect_faceid_file(path: str | os.PathLike):
    """FaceIDInfo of a FaceID file, reading tensor headers only (mmap for torch files, the header for
    .safetensors). Raises faceid.FaceIDFileError (or another error) for a file that is not a FaceID file."""
    import torch

    from . import faceid

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        sd = _meta_safetensors(path)
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) torch.save format cannot be memory-mapped
            sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, Mapping):
            raise faceid.FaceIDFileError(f"{path.name}: expected a dict of tensors, found a {type(sd).__name__}")
    image_proj, ip_adapter = faceid.split_faceid_state_dict(sd, path.name)
    return faceid.inspect_faceid(image_proj, ip_adapter, path.name)


def _folder_lines(name: str, paths: Sequence[str], default: str | None) -> list[str]:
    lines = []
    for p in paths:
        tag = "default" if default and os.path.normpath(p) == os.path.normpath(default) else "extra"
        state = "" if os.path.isdir(p) else "  (does not exist)"
        lines.append(f"  {p}  [{tag}]{state}")
    return lines or ["  (no folder registered)"]


def _listing(files: Sequence[str]) -> str:
    shown = ", ".join(files[:MAX_LISTED])
    return shown + (f" ... and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else "")


def faceid_files(paths: Sequence[str], report: Report) -> dict[str, Path]:
    """Every file of the ipadapter folders with what it is; returns {file name: path} of the readable ones."""
    lines, found = [], {}
    for root in paths:
        for f in _walk(Path(root), FACEID_EXTENSIONS) if os.path.isdir(root) else []:
            rel = f.relative_to(root).as_posix()
            try:
                info = inspect_faceid_file(f)
            except Exception as e:  # noqa: BLE001 - any unreadable file is reported, not raised
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                lines.append(f"  {rel}: not usable as an IP-Adapter FaceID file: {first[:300]}")
                continue
            found.setdefault(rel, f)
            lora = (f"embedded LoRA present (rank {info.lora_rank})" if info.lora_rank
                    else "NO embedded LoRA (choose the separate ip-adapter-faceid_*_lora.safetensors as 'lora')")
            lines.append(f"  {rel}: IP-Adapter {info.variant} for {info.family}, {lora}  ({root})")
            if info.variant != "FaceID":
                report.problems.append(f"{f}: {info.variant} for {info.family}, not the plain FaceID adapter with "
                                       f"its LoRA that the presets use ({model_files.HF_FACEID})")
    report.sections.append(("FaceID files (ipadapter)", lines or ["  (none found)"]))
    return found


def _pack_dirs(roots: Sequence[str]) -> list[tuple[Path, Path]]:
    """(root, pack folder) for every folder holding .onnx files, or a known pack's folder, under each root."""
    from .faces import KNOWN_PACKS

    out = []
    for root in roots:
        for base in (Path(root) / "models", Path(root)):
            if not base.is_dir():
                continue
            for d in sorted(base.iterdir()):
                if d.is_dir() and d.name != "models" and (d.name in KNOWN_PACKS or any(d.glob("*.onnx"))
                                                           or any(d.glob("*/*.onnx"))):
                    out.append((Path(root), d))
    return out


def insightface_packs(roots: Sequence[str], report: Report) -> tuple[set[str], set[str]]:
    """Every insightface pack folder with the files present and missing; returns the names of the usable packs
    and of the packs whose folder exists (their missing files are reported here, one by one)."""
    from .faces import KNOWN_PACKS

    lines, usable, seen = [], set(), set()
    for _root, d in _pack_dirs(roots):
        name = d.name
        seen.add(name)
        have = sorted(p.name for p in d.glob("*.onnx"))
        nested = d / name
        if not have and nested.is_dir() and any(nested.glob("*.onnx")):
            lines.append(f"  {name} in {d}: NESTED one folder too deep: the .onnx files are in {nested}")
            report.problems.append(f"insightface pack '{name}' is nested one folder too deep: move the .onnx files "
                                   f"from {nested} up into {d} (a common result of unzipping {name}.zip into a "
                                   f"folder of the same name)")
            continue
        spec = KNOWN_PACKS.get(name)
        if spec is None:
            lines.append(f"  {name} in {d}: {', '.join(have) or 'no .onnx files'} (not a pack FaceAnon knows; "
                         f"its files are routed by shape)")
            if have:
                usable.add(name)
            continue
        entry = model_files.model_file(name)
        required = [spec.detector, spec.recognizer, spec.landmark]
        parts = [f"{f} {'OK' if f in have else 'MISSING'}" for f in required]
        parts += [f"{f} {'present' if f in have else 'absent'} (unused)" for f in spec.unused]
        lines.append(f"  {name} in {d}: " + ", ".join(parts))
        missing = [f for f in required if f not in have]
        if not have:
            continue  # an empty folder: reported with the pack as missing below
        if missing:
            for f in missing:
                report.problems.append(
                    f"insightface pack '{name}' in {d} lacks {f} ({PACK_FILE_SIZES.get(f, '?')}); it belongs in "
                    f"{d}; get it by downloading the pack again: {entry.source if entry else 'insightface model zoo'}")
        else:
            usable.add(name)
    for root in roots:
        stray = sorted(p.name for p in Path(root).glob("*.onnx")) if os.path.isdir(root) else []
        if stray:
            lines.append(f"  {root}: loose .onnx files outside a pack folder: {_listing(stray)}")
            report.problems.append(f"{root} holds loose .onnx files ({_listing(stray)}): a pack's files belong in "
                                   f"{Path(root) / 'models' / '<pack name>'}/")
    report.sections.append(("insightface packs (insightface)", lines or ["  (none found)"]))
    return usable, seen


def system_report(folders: Mapping[str, Sequence[str]] | None, comfyui_version: str | None = None,
                  defaults: Mapping[str, str] | None = None) -> Report:
    """The full check. `folders`: {ComfyUI folder name: [paths in search order]} (None: no ComfyUI found);
    `defaults`: {folder name: its default path}, to tell models/ folders from extra_model_paths.yaml entries."""
    report = Report()
    software(comfyui_version, report)
    if folders is None:
        report.problems.append("ComfyUI's model folders are unknown: run the check inside ComfyUI (the "
                               "FaceAnonSystemCheck node), or 'python -m faceanon.doctor --comfyui /path/to/ComfyUI'")
        return report
    defaults = defaults or {}
    lines = []
    for name in FOLDERS:
        lines.append(f"{name}:")
        lines += _folder_lines(name, folders.get(name, []), defaults.get(name))
    report.sections.append(("Model folders searched", lines))

    adapters = faceid_files(folders.get("ipadapter", []), report)
    packs, pack_folders = insightface_packs(folders.get("insightface", []), report)
    checkpoints = [f.relative_to(root).as_posix() for root in folders.get("checkpoints", []) if os.path.isdir(root)
                   for f in _walk(Path(root), CHECKPOINT_EXTENSIONS)]
    report.sections.append(("Checkpoints (checkpoints)", [f"  {_listing(checkpoints)}" if checkpoints
                                                          else "  (none found)"]))

    # Missing files, and files found in another folder than theirs.
    elsewhere = {}
    for name in FOLDERS:
        for root in folders.get(name, []):
            if os.path.isdir(root):
                for f in _walk(Path(root), None):
                    elsewhere.setdefault(f.name, (name, f))
                for d in Path(root).glob("*") if name != "insightface" else ():
                    if d.is_dir():
                        elsewhere.setdefault(d.name, (name, d))
    missing_lines = []
    for entry in MODEL_FILES:
        if entry.folder == "checkpoints":
            present = entry.name in {Path(c).name for c in checkpoints}
        elif entry.folder == "ipadapter":
            present = entry.name in {Path(a).name for a in adapters}
        else:
            present = entry.name in packs
        if present or (entry.folder == "insightface" and entry.name in pack_folders and
                       any(entry.name in p for p in report.problems)):
            continue
        searched = ", ".join(folders.get(entry.folder, [])) or "(no folder registered)"
        line = f"  {entry.name}: {entry.where_to_get()} Searched: {searched}."
        wrong = elsewhere.get(entry.name)
        if wrong and wrong[0] != entry.folder:
            line += f" Found in the {wrong[0]} folder instead ({wrong[1]}): move it."
        missing_lines.append(line)
        optional = entry.name == "antelopev2" or (entry.example and checkpoints)
        if not optional:
            report.problems.append(f"missing {entry.name} ({entry.size}, in ComfyUI/{entry.place}): see "
                                   f"'Missing files' below" + (f"; it is in the {wrong[0]} folder instead"
                                                               if wrong and wrong[0] != entry.folder else ""))
    report.sections.append(("Missing files (optional: antelopev2; any SD1.5/SDXL checkpoint replaces the examples)",
                            missing_lines or ["  (none)"]))
    return report


# ---------------------------------------------------------------------------------------------------------------
# ComfyUI at run time
# ---------------------------------------------------------------------------------------------------------------
def comfyui_version() -> str | None:
    """The running ComfyUI's version (its comfyui_version module), or None."""
    try:
        import comfyui_version as cv  # ComfyUI's own top-level module

        return str(cv.__version__)
    except Exception:  # noqa: BLE001 - older or unusual installs
        return None


def comfy_model_folders() -> tuple[dict[str, list[str]], dict[str, str]]:
    """({folder name: paths}, {folder name: default path}) from ComfyUI's folder_paths (the running host)."""
    import folder_paths

    folders, defaults = {}, {}
    for name in FOLDERS:
        try:
            folders[name] = list(folder_paths.get_folder_paths(name))
        except KeyError:
            folders[name] = []
        defaults[name] = os.path.join(folder_paths.models_dir, name)
        if name == "insightface" and defaults[name] not in folders[name]:
            folders[name].append(defaults[name])
    return folders, defaults


def _find_comfyui(explicit: str | None) -> Path | None:
    candidates = [explicit] if explicit else [os.environ.get("COMFYUI_PATH"), str(Path(__file__).resolve().parents[3]),
                                              str(Path.cwd())]
    for c in candidates:
        if c and (Path(c) / "folder_paths.py").is_file() and (Path(c) / "comfy").is_dir():
            return Path(c).resolve()
    return None


def _load_comfyui(path: Path, extra_configs: Sequence[str]) -> tuple[dict, dict, str | None]:
    """Import ComfyUI's folder_paths from `path`, apply its extra_model_paths.yaml (and `extra_configs`), register
    the pack's folders as the pack does, and return (folders, defaults, version)."""
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import folder_paths

    configs = [str(path / "extra_model_paths.yaml")] if (path / "extra_model_paths.yaml").is_file() else []
    configs += list(extra_configs)
    if configs:
        from utils.extra_config import load_extra_path_config

        for c in configs:
            load_extra_path_config(c)
    model_files.register_folders(folder_paths)  # as the pack does when ComfyUI loads it
    folders, defaults = comfy_model_folders()
    return folders, defaults, comfyui_version()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faceanon.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", help="the ComfyUI folder (default: COMFYUI_PATH, or the ComfyUI this pack is "
                                          "installed in, or the current folder)")
    parser.add_argument("--extra-model-paths-config", action="append", default=[], metavar="YAML",
                        help="an extra_model_paths.yaml that ComfyUI is started with (repeatable); the one in the "
                             "ComfyUI folder is always read")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    path = _find_comfyui(args.comfyui)
    if args.comfyui and path is None:
        parser.error(f"{args.comfyui} is not a ComfyUI folder (no folder_paths.py and comfy/ there)")
    if path is None:
        report = system_report(None)
    else:
        folders, defaults, version = _load_comfyui(path, args.extra_model_paths_config)
        report = system_report(folders, f"{version or 'version unknown'} at {path}", defaults)
    sys.stdout.write((report.to_json() if args.json else report.text()) + "\n")
    return 0 if report.ready else 1


if __name__ == "__main__":
    sys.exit(main())
