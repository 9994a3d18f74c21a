"""Missing-model errors name the file, every folder searched and where to get it (faceanon.model_files): the
insightface pack loader (host-free) and the FaceID loader node (in a real ComfyUI)."""

from __future__ import annotations

import pytest

from faceanon import faces, model_files


def test_missing_pack_names_every_folder_and_the_download(tmp_path):
    roots = [tmp_path / "a" / "insightface", tmp_path / "b"]
    with pytest.raises(faces.FaceModelError) as e:
        faces.find_pack("buffalo_l", roots)
    msg = str(e.value)
    for root in roots:
        assert str(root / "models" / "buffalo_l") in msg and str(root / "buffalo_l") in msg
    entry = model_files.model_file("buffalo_l")
    assert entry.where_to_get() in msg and "releases/download/model-zoo/buffalo_l.zip" in msg
    assert "341 MB" in msg and "models/insightface/models/buffalo_l/" in msg


def test_incomplete_pack_names_each_missing_file_with_its_size(tmp_path):
    d = tmp_path / "models" / "antelopev2"
    d.mkdir(parents=True)
    (d / "scrfd_10g_bnkps.onnx").write_bytes(b"x")
    with pytest.raises(faces.FaceModelError) as e:
        faces.find_pack("antelopev2", [tmp_path])
    msg = str(e.value)
    assert "missing glintr100.onnx (261 MB), 2d106det.onnx (5.0 MB)" in msg and "antelopev2.zip" in msg


def test_loader_choices_list_the_documented_files():
    assert model_files.with_documented(["mine.bin", "ip-adapter-faceid_sdxl.bin"], "ipadapter") == \
        ["mine.bin", "ip-adapter-faceid_sdxl.bin", "ip-adapter-faceid_sd15.bin"]


def test_faceid_loader_names_file_folders_and_source(host, tmp_path):
    import folder_paths

    from dev.host import HostRunError

    extra = tmp_path / "elsewhere"
    extra.mkdir()
    folder_paths.add_model_folder_path("ipadapter", str(extra), is_default=False)
    try:
        spec = host.nodes.NODE_CLASS_MAPPINGS["FaceAnonLoadIDAdapter"].INPUT_TYPES()["required"]["adapter"]
        options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]  # V3 / V1 combo form
        assert "ip-adapter-faceid_sdxl.bin" in options  # listed although missing: the template validates
        missing = next(n for n in ("ip-adapter-faceid_sdxl.bin", "ip-adapter-faceid_sd15.bin")
                       if folder_paths.get_full_path("ipadapter", n) is None)
        graph = {"1": {"class_type": "FaceAnonLoadIDAdapter",
                       "inputs": {"adapter": missing, "lora": "embedded (from the adapter file)"}}}
        with pytest.raises(HostRunError) as e:
            host.run(graph, all_nodes=True)
        msg = str(e.value)
        assert f"model file '{missing}' was not found" in msg
        for folder in folder_paths.get_folder_paths("ipadapter"):
            assert f"  {folder}\n" in msg
        assert str(extra) in msg and f"huggingface.co/h94/IP-Adapter-FaceID/resolve/main/{missing}" in msg
        # a separate LoRA file that is not there: the loras folders are named
        present = host.models_dir / "ipadapter" / "faceanon_tiny_faceid_sd15.bin"
        from tests.workflow_assets import write_tiny_faceid

        write_tiny_faceid(present)
        graph["1"]["inputs"] = {"adapter": present.name, "lora": "no_such_lora.safetensors"}
        with pytest.raises(HostRunError) as e:
            host.run(graph, all_nodes=True)
        assert "'no_such_lora.safetensors' was not found in the ComfyUI model folder 'loras'" in str(e.value)
        assert str(host.models_dir / "loras") in str(e.value)
    finally:
        paths, exts = folder_paths.folder_names_and_paths["ipadapter"]
        folder_paths.folder_names_and_paths["ipadapter"] = ([p for p in paths if p != str(extra)], exts)
