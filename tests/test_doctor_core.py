"""The system check (faceanon.doctor) and the model table (faceanon.model_files), without a host.

Model folders are built here: FaceID files in the real SD1.5 / SDXL layouts (every tensor a broadcast view of one
value, so a full-size layout is a few kB on disk and the check reads only headers), synthesized insightface packs
(dev/onnx_packs.py), and the usual mistakes: a pack nested one folder too deep, a pack with a file missing, a
FaceID file in the checkpoints folder, loose .onnx files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from faceanon import doctor, model_files
from faceanon import faceid as F
from dev.faceid_files import SD15_UNET, SDXL_UNET, faceid_state_dict, layout_from_unet_config, write_safetensors

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_full_layout_bin(path: Path, unet: dict, rank: int | None = 128) -> Path:
    """A FaceID .bin with the real layout's shapes whose tensors are broadcast views of one value (tiny file)."""
    meta = faceid_state_dict(layout_from_unet_config(unet), rank=rank, device="meta")
    small = {part: {k: torch.zeros(1, dtype=v.dtype).expand(v.shape) for k, v in d.items()}
             for part, d in meta.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(small, path)
    return path


def folders_under(root: Path) -> dict[str, list[str]]:
    return {name: [str(root / name)] for name in doctor.FOLDERS}


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    pytest.importorskip("onnx")
    from dev.onnx_packs import write_pack

    src = tmp_path_factory.mktemp("packs")
    write_pack(src / "buffalo_l", "buffalo_l")
    return src


def copy_pack(packs: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in (packs / "buffalo_l").glob("*.onnx"):
        if f.name not in skip:
            (dst / f.name).write_bytes(f.read_bytes())


def test_faceid_files_are_identified_from_their_headers(tmp_path):
    sd15 = write_full_layout_bin(tmp_path / "ip-adapter-faceid_sd15.bin", SD15_UNET)
    sdxl = write_full_layout_bin(tmp_path / "ip-adapter-faceid_sdxl.bin", SDXL_UNET)
    no_lora = write_full_layout_bin(tmp_path / "faceid_no_lora.bin", SD15_UNET, rank=None)
    assert sdxl.stat().st_size < 2_000_000  # headers only: the real file is 1.07 GB
    a, b, c = (doctor.inspect_faceid_file(p) for p in (sd15, sdxl, no_lora))
    assert (a.family, a.variant, a.lora_rank) == ("SD1.5", "FaceID", 128)
    assert (b.family, b.variant, b.lora_rank, b.num_processors) == ("SDXL", "FaceID", 128, 140)
    assert (c.family, c.lora_rank) == ("SD1.5", None) and c.variant != "FaceID"
    # .safetensors: read from the header alone
    from dev.tiny_models import SD15_SHALLOW_UNET

    st = write_safetensors(faceid_state_dict(layout_from_unet_config(SD15_SHALLOW_UNET), rank=4, seed=1),
                           tmp_path / "tiny.safetensors")
    info = doctor.inspect_faceid_file(st)
    assert info.cross_dim == 768 and info.lora_rank == 4 and info.variant == "FaceID"
    (tmp_path / "not_faceid.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(F.FaceIDFileError):
        doctor.inspect_faceid_file(tmp_path / "not_faceid.safetensors")


def test_report_lists_what_it_finds_and_every_missing_file(tmp_path, packs):
    root = tmp_path / "models"
    write_full_layout_bin(root / "ipadapter" / "ip-adapter-faceid_sd15.bin", SD15_UNET)
    write_full_layout_bin(root / "ipadapter" / "sub" / "portrait.bin", SD15_UNET, rank=None)
    (root / "ipadapter" / "broken.bin").write_bytes(b"not a torch file")
    # the SDXL adapter put in the checkpoints folder by mistake
    write_full_layout_bin(root / "checkpoints" / "ip-adapter-faceid_sdxl.bin", SDXL_UNET)
    (root / "checkpoints" / "my_sd15.safetensors").write_bytes(b"x")
    # buffalo_l nested one folder too deep; antelopev2 absent
    copy_pack(packs, root / "insightface" / "models" / "buffalo_l" / "buffalo_l")
    extra = tmp_path / "extra_insightface"
    report = doctor.system_report({**folders_under(root), "insightface": [str(root / "insightface"), str(extra)]},
                                  "0.8.0", {n: str(root / n) for n in doctor.FOLDERS})
    text = report.text()
    assert text.splitlines()[0].startswith("FaceAnon system check: WARNING:") and not report.ready
    assert "ComfyUI 0.8.0" in text and "torch " in text and "numpy " in text and "insightface " in text
    assert "onnxruntime builds installed: onnxruntime " in text and "CPUExecutionProvider" in text
    # every folder searched, the extra one marked as such
    assert f"  {root / 'insightface'}  [default]" in text and f"  {extra}  [extra]  (does not exist)" in text
    # FaceID files: family, LoRA
    assert re.search(r"ip-adapter-faceid_sd15\.bin: IP-Adapter FaceID for SD1\.5, embedded LoRA present "
                     r"\(rank 128\)", text)
    assert re.search(r"sub/portrait\.bin: IP-Adapter FaceID \(without LoRA\) for SD1\.5, NO embedded LoRA", text)
    assert "broken.bin: not usable as an IP-Adapter FaceID file" in text
    # the nested pack
    assert any("nested one folder too deep" in p and "buffalo_l" in p for p in report.problems)
    # missing files: each with folder, size and source; the misplaced one pointed at
    missing = dict(report.sections)["Missing files (optional: antelopev2; any SD1.5/SDXL checkpoint replaces the "
                                    "examples)"]
    by_name = {line.split(":")[0].strip(): line for line in missing}
    assert set(by_name) == {"v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors",
                            "ip-adapter-faceid_sdxl.bin", "antelopev2"}  # buffalo_l: the nested problem above
    sdxl = by_name["ip-adapter-faceid_sdxl.bin"]
    assert "1.07 GB" in sdxl and "ComfyUI/models/ipadapter/" in sdxl and "huggingface.co/h94/IP-Adapter-FaceID" \
        in sdxl and "Found in the checkpoints folder instead" in sdxl and str(root / "ipadapter") in sdxl
    assert "antelopev2.zip" in by_name["antelopev2"] and "428 MB unzipped" in by_name["antelopev2"]
    # problems: the SDXL adapter and buffalo_l; the checkpoints are examples (another checkpoint is present),
    # antelopev2 is optional
    names = " ".join(report.problems)
    assert "missing ip-adapter-faceid_sdxl.bin" in names and "missing v1-5-pruned" not in names
    assert "antelopev2" not in names


def test_incomplete_pack_names_each_missing_file(tmp_path, packs):
    root = tmp_path / "models"
    copy_pack(packs, root / "insightface" / "models" / "buffalo_l", skip=("w600k_r50.onnx",))
    (root / "insightface" / "loose.onnx").write_bytes(b"x")
    report = doctor.system_report(folders_under(root), None)
    text = report.text()
    assert "det_10g.onnx OK, w600k_r50.onnx MISSING, 2d106det.onnx OK" in text
    lacks = [p for p in report.problems if "lacks w600k_r50.onnx" in p]
    assert len(lacks) == 1 and "174 MB" in lacks[0] and "buffalo_l.zip" in lacks[0]
    assert not any(p.startswith("missing buffalo_l") for p in report.problems)  # not twice
    assert any("loose .onnx files" in p for p in report.problems)


def test_a_complete_install_is_ready(tmp_path, packs):
    root = tmp_path / "models"
    copy_pack(packs, root / "insightface" / "models" / "buffalo_l")
    for name, unet in (("ip-adapter-faceid_sd15.bin", SD15_UNET), ("ip-adapter-faceid_sdxl.bin", SDXL_UNET)):
        write_full_layout_bin(root / "ipadapter" / name, unet)
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "any_model.safetensors").write_bytes(b"x")
    report = doctor.system_report(folders_under(root), "0.3.64")
    if any("onnxruntime" in p for p in report.problems):  # an environment problem of this machine, not the files
        pytest.skip(report.problems)
    assert report.ready, report.problems
    assert report.text().splitlines()[0].startswith("FaceAnon system check: ready")
    assert "buffalo_l in " in report.text() and "w600k_r50.onnx OK" in report.text()


def test_without_comfyui_the_report_says_so():
    report = doctor.system_report(None)
    assert "ComfyUI not found" in report.text() and any("model folders are unknown" in p for p in report.problems)


def test_side_by_side_onnxruntime_is_flagged(monkeypatch):
    import faceanon.faces as faces

    monkeypatch.setattr(faces, "onnxruntime_distributions",
                        lambda: [("onnxruntime", "1.20.0"), ("onnxruntime-gpu", "1.20.0")])
    report = doctor.system_report(None)
    assert "onnxruntime builds installed: onnxruntime 1.20.0, onnxruntime-gpu 1.20.0" in report.text()
    assert any("side by side" in p for p in report.problems)


def test_model_table_is_the_readme_table():
    readme = (REPO_ROOT / "README.md").read_text()
    assert model_files.markdown_table() in readme
    for m in model_files.MODEL_FILES:
        sentence = model_files.where_to_get(m.name)
        assert m.name in sentence and m.size in sentence and m.place in sentence and m.source in sentence
    assert "not one of the files FaceAnon documents for models/ipadapter (ip-adapter-faceid_sd15.bin" in \
        model_files.where_to_get("faceid.bin", "ipadapter")


def test_pack_files_have_sizes():
    from faceanon.faces import KNOWN_PACKS

    for spec in KNOWN_PACKS.values():
        for f, _ in spec.expected():
            assert f in model_files.PACK_FILE_SIZES


def test_frontend_summarizes_the_reports_fields(tmp_path):
    """js/faceanon.js shows the headline and every problem under the node, from the structured fields."""
    import json

    from tests.test_frontend_js import NODE, summarize

    if NODE is None:
        pytest.skip("Node.js is not installed")
    report = doctor.system_report(None)
    payload = {"text": ["a misleading text"], "faceanon_report": [json.dumps(report.fields())]}
    status = summarize(tmp_path, "FaceAnonSystemCheck", payload)
    assert status["level"] == "warn" and status["lines"][0] == report.headline()
    assert status["lines"][1:] == [f"WARNING: {p}" for p in report.problems][:5]
    ready = {"ready": True, "headline": "FaceAnon system check: ready", "problems": []}
    assert summarize(tmp_path, "FaceAnonSystemCheck", {"faceanon_report": [json.dumps(ready)]}) == \
        {"level": "ok", "lines": ["FaceAnon system check: ready"]}
