"""The system check inside a real ComfyUI: the FaceAnonSystemCheck node (report on the node, re-checked on every
queue, extra model paths included) and `python -m faceanon.doctor` against a ComfyUI folder with an
extra_model_paths.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dev.faceid_files import SD15_UNET, SDXL_UNET
from tests.test_doctor_core import write_full_layout_bin

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_node_reports_the_hosts_folders_and_files(host, tmp_path):
    import folder_paths

    assert "FaceAnonSystemCheck" in host.pack_node_ids
    assert host.nodes.NODE_CLASS_MAPPINGS["FaceAnonSystemCheck"].CATEGORY == "FaceAnon/setup"
    extra = tmp_path / "extra_ipadapter"
    write_full_layout_bin(extra / "my_faceid_sdxl.bin", SDXL_UNET)
    folder_paths.add_model_folder_path("ipadapter", str(extra), is_default=False)  # as extra_model_paths.yaml does
    try:
        def graph():  # a fresh prompt per queue, as the frontend sends (ComfyUI stores is_changed in it)
            return {"1": {"class_type": "FaceAnonSystemCheck", "inputs": {}}}

        text = host.run(graph())["1"][0]
        ui = host.executor.history_result["outputs"]["1"]
        assert ui["text"] == [text] and text.startswith("FaceAnon system check:")
        fields = json.loads(ui["faceanon_report"][0])  # what the frontend extension summarizes
        assert fields["headline"] == text.splitlines()[0] and fields["ready"] is False and fields["problems"]
        assert f"  {extra}  [extra]" in text and f"  {host.models_dir / 'ipadapter'}  [" in text
        assert "my_faceid_sdxl.bin: IP-Adapter FaceID for SDXL, embedded LoRA present (rank 128)" in text
        version = (host.path / "comfyui_version.py").read_text().split('"')[1]
        assert f"ComfyUI {version}" in text
        # checked again on every queue (files change outside ComfyUI), never served from the cache
        (extra / "my_faceid_sdxl.bin").unlink()
        again = host.run(graph())["1"][0]
        assert "1" not in host.cached_nodes() and "my_faceid_sdxl.bin" not in again
    finally:
        paths, exts = folder_paths.folder_names_and_paths["ipadapter"]
        folder_paths.folder_names_and_paths["ipadapter"] = ([p for p in paths if p != str(extra)], exts)


def test_doctor_command_reads_extra_model_paths(host, tmp_path):
    shared = tmp_path / "shared_models"
    write_full_layout_bin(shared / "ipadapter" / "ip-adapter-faceid_sd15.bin", SD15_UNET)
    (shared / "insightface" / "models" / "antelopev2" / "antelopev2").mkdir(parents=True)
    (shared / "insightface" / "models" / "antelopev2" / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    config = tmp_path / "extra.yaml"
    config.write_text(f"shared:\n  base_path: {shared}\n  ipadapter: ipadapter/\n  insightface: insightface/\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    run = subprocess.run([sys.executable, "-m", "faceanon.doctor", "--comfyui", str(host.path),
                          "--extra-model-paths-config", str(config)], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=300)
    assert run.returncode == 1, run.stderr  # files are missing: not ready
    out = run.stdout
    assert out.startswith("FaceAnon system check: WARNING:")
    assert f"  {shared / 'ipadapter'}  [extra]" in out
    assert "ip-adapter-faceid_sd15.bin: IP-Adapter FaceID for SD1.5, embedded LoRA present" in out
    assert "antelopev2" in out and "NESTED one folder too deep" in out
    assert "ip-adapter-faceid_sdxl.bin (1.07 GB) belongs in ComfyUI/models/ipadapter/" in out
    bad = subprocess.run([sys.executable, "-m", "faceanon.doctor", "--comfyui", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert bad.returncode == 2 and "is not a ComfyUI folder" in bad.stderr


def test_doctor_json(host, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    run = subprocess.run([sys.executable, "-m", "faceanon.doctor", "--comfyui", str(host.path), "--json"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    data = json.loads(run.stdout)
    assert data["ready"] is (run.returncode == 0) and data["sections"][0]["title"] == "Software"
