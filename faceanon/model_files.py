"""The model files FaceAnon uses: name, ComfyUI folder, size, source and licence, declared once.

The README's model table is `markdown_table()` (a test checks that the README holds it verbatim); the system check
(`python -m faceanon.doctor`, the FaceAnonSystemCheck node) and the loaders' missing-file errors read the same
entries through `where_to_get`.

Sizes are those of the published files (decimal units). Nothing is downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

HF_FACEID = "https://huggingface.co/h94/IP-Adapter-FaceID"
INSIGHTFACE_ZOO = "https://github.com/deepinsight/insightface/releases/download/model-zoo"
NON_COMMERCIAL = "non-commercial research only"


@dataclass(frozen=True)
class ModelFile:
    """One downloadable model file (or insightface pack).

    Attributes:
        name: the file name (for a pack, the folder name), as the workflows and loaders expect it.
        folder: the ComfyUI model folder name it is looked up in ("checkpoints", "ipadapter", "insightface").
        place: where it goes under ComfyUI/, e.g. "models/ipadapter/".
        size: the published size, e.g. "96.7 MB".
        source: where to get it (a URL to the file itself where there is one).
        page: the page that documents it (licence, model card).
        licence: the licence of the weights.
        needed_for: what it is needed for.
        example: True when any file of this kind will do and this is the workflows' default name.
    """

    name: str
    folder: str
    place: str
    size: str
    source: str
    page: str
    licence: str
    needed_for: str
    example: bool = False

    def where_to_get(self) -> str:
        """One sentence: the file, its size, its folder and where to get it."""
        what = f"{self.name} ({self.size}"
        what += ", a folder of .onnx files)" if self.folder == "insightface" else ")"
        return (f"{what} belongs in ComfyUI/{self.place}; get it from {self.source} (licence: {self.licence}; "
                f"see {self.page}).")


MODEL_FILES: tuple[ModelFile, ...] = (
    ModelFile("v1-5-pruned-emaonly.safetensors", "checkpoints", "models/checkpoints/", "4.3 GB",
              "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/"
              "v1-5-pruned-emaonly.safetensors",
              "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5", "CreativeML OpenRAIL-M",
              "NullFace preset (any SD1.5 checkpoint works)", example=True),
    ModelFile("sd_xl_base_1.0.safetensors", "checkpoints", "models/checkpoints/", "6.9 GB",
              "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/"
              "sd_xl_base_1.0.safetensors",
              "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0", "CreativeML Open RAIL++-M",
              "Reverse Personalization preset (any SDXL checkpoint works)", example=True),
    ModelFile("ip-adapter-faceid_sd15.bin", "ipadapter", "models/ipadapter/", "96.7 MB",
              f"{HF_FACEID}/resolve/main/ip-adapter-faceid_sd15.bin", HF_FACEID, NON_COMMERCIAL,
              "SD1.5 workflows"),
    ModelFile("ip-adapter-faceid_sdxl.bin", "ipadapter", "models/ipadapter/", "1.07 GB",
              f"{HF_FACEID}/resolve/main/ip-adapter-faceid_sdxl.bin", HF_FACEID, NON_COMMERCIAL,
              "SDXL workflows"),
    ModelFile("buffalo_l", "insightface", "models/insightface/models/buffalo_l/", "341 MB unzipped",
              f"{INSIGHTFACE_ZOO}/buffalo_l.zip (unzip so the .onnx files sit directly in buffalo_l/)",
              "https://github.com/deepinsight/insightface/tree/master/python-package", NON_COMMERCIAL,
              "every workflow"),
    ModelFile("antelopev2", "insightface", "models/insightface/models/antelopev2/", "428 MB unzipped",
              f"{INSIGHTFACE_ZOO}/antelopev2.zip (unzip so the .onnx files sit directly in antelopev2/)",
              "https://github.com/deepinsight/insightface/tree/master/python-package", NON_COMMERCIAL,
              "optional, instead of buffalo_l"),
)

# The ComfyUI model folders the pack registers (shared with cubiq's IPAdapter_plus and InstantID, so users keep one
# copy of each file), with the extensions it adds to them (None: a folder of pack folders, not of files).
PACK_FOLDERS = {
    "ipadapter": {".bin", ".safetensors", ".pt", ".pth"},
    "insightface": None,
}


def register_folders(folder_paths) -> None:
    """Register models/ipadapter and models/insightface in ComfyUI's `folder_paths` module (passed in: this module
    imports nothing from ComfyUI), keeping the paths users added (extra_model_paths.yaml)."""
    import os

    for name, extensions in PACK_FOLDERS.items():
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name), is_default=False)
        if extensions is not None:
            paths, exts = folder_paths.folder_names_and_paths[name]
            folder_paths.folder_names_and_paths[name] = (paths, set(exts) | extensions)


# The files inside the insightface packs (which pack holds which, and their roles: faceanon.faces.KNOWN_PACKS).
PACK_FILE_SIZES = {
    "det_10g.onnx": "16.9 MB",
    "scrfd_10g_bnkps.onnx": "16.9 MB",
    "w600k_r50.onnx": "174 MB",
    "glintr100.onnx": "261 MB",
    "2d106det.onnx": "5.0 MB",
    "1k3d68.onnx": "144 MB",
    "genderage.onnx": "1.3 MB",
}

# What each kind of file is, for the README's table ("file" column).
_README_NAMES = {
    "v1-5-pruned-emaonly.safetensors": "an SD1.5 checkpoint, e.g. `v1-5-pruned-emaonly.safetensors`",
    "sd_xl_base_1.0.safetensors": "an SDXL checkpoint, e.g. `sd_xl_base_1.0.safetensors`",
    "buffalo_l": "insightface pack `buffalo_l` (`det_10g.onnx`, `w600k_r50.onnx`, `2d106det.onnx`, `1k3d68.onnx`, "
                 "`genderage.onnx`)",
    "antelopev2": "(alternative) insightface pack `antelopev2`",
}


def model_file(name: str) -> ModelFile | None:
    """The table entry for a file or pack name, else None."""
    return next((m for m in MODEL_FILES if m.name == name), None)


def files_in(folder: str) -> list[ModelFile]:
    """The table entries that live in ComfyUI model folder `folder`."""
    return [m for m in MODEL_FILES if m.folder == folder]


def where_to_get(name: str, folder: str = "") -> str:
    """Where to get `name`: its table entry's sentence, or a pointer to the table for a name it does not list."""
    entry = model_file(name)
    if entry is not None:
        return entry.where_to_get()
    known = ", ".join(m.name for m in files_in(folder)) if folder else ""
    return (f"{name} is not one of the files FaceAnon documents" + (f" for models/{folder} ({known})" if known else "")
            + "; check the file name, or see the model table in FaceAnon's README.")


def with_documented(found: list[str], folder: str) -> list[str]:
    """A loader's choices: the files found, then the documented files of `folder` that are missing (listed so that
    a workflow naming them validates and the loader can say where to get them)."""
    return list(found) + [m.name for m in files_in(folder) if m.name not in found]


def missing_file_message(name: str, folder: str, searched: list[str] | tuple[str, ...]) -> str:
    """The error for a model file that is not there: the file, every folder searched, and where to get it."""
    where = "\n".join(f"  {p}" for p in searched) or "  (no folder is registered for it)"
    return (f"model file {name!r} was not found in the ComfyUI model folder '{folder}'. Searched:\n{where}\n"
            f"{where_to_get(name, folder)} Folders from extra_model_paths.yaml count too. Check what FaceAnon sees "
            f"with the FaceAnonSystemCheck node or 'python -m faceanon.doctor'.")


def markdown_table() -> str:
    """The README's model table."""
    rows = ["| file | folder | size | source | licence | needed for |", "|---|---|---|---|---|---|"]
    for m in MODEL_FILES:
        name = _README_NAMES.get(m.name, f"`{m.name}`")
        licence = f"**{m.licence}**" if m.licence == NON_COMMERCIAL else m.licence
        link = m.source.split(" ")[0]
        label = link.rsplit("/", 1)[-1]
        rows.append(f"| {name} | `{m.place}` | {m.size} | [{label}]({link}) ([page]({m.page})) | {licence} | "
                    f"{m.needed_for} |")
    return "\n".join(rows)
