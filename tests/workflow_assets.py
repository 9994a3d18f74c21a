"""Stand-in files for running the shipped workflows in tests: tiny models under any name, synthetic photos.

* a random SD1.5-layout checkpoint (dev/tiny_models.py, shallow full-width UNet, real CLIP-L and VAE layouts);
* an IP-Adapter FaceID file with the real key names for that UNet's layout (dev/faceid_files.py);
* a synthesized insightface pack `buffalo_l` (dev/onnx_packs.py) whose detector finds magenta discs;
* `portrait.png` (one synthetic face), `group_photo.png` (three), `people_walking.mp4` and `reference_person.png`,
  stand-ins for the templates' example inputs (`STAND_IN_PHOTOS`: the synthesized detector finds magenta discs,
  not real faces).

The real weights cannot be downloaded here. The SDXL workflows run on the SD1.5-layout stand-ins too: that checks
their graph (wiring, widget values, settings reaching the nodes), not SDXL itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

# the templates' example photo -> its synthetic stand-in
STAND_IN_PHOTOS = {"faceanon_example_portrait.jpg": "portrait.png", "faceanon_example_group.jpg": "group_photo.png",
                   "faceanon_example_video.mp4": "people_walking.mp4",
                   "faceanon_example_reference.jpg": "reference_person.png"}
PORTRAIT_FACES = [((128, 120), 96, 3)]                                     # centre, diameter, texture seed
GROUP_FACES = [((70, 90), 60, 1), ((180, 80), 64, 2), ((300, 110), 56, 5)]


def face_photo(size: tuple[int, int], faces, seed: int) -> np.ndarray:
    """uint8 H x W x 3 photo: a noisy greenish background with synthetic faces (centre, diameter, texture seed)."""
    from dev.onnx_packs import draw_face

    h, w = size
    rng = np.random.default_rng(seed)
    img = np.clip(0.45 + 0.08 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)
    img[..., 1] = np.clip(img[..., 1] + 0.2, 0, 1)  # greenish: no magenta outside the faces
    for centre, diameter, tex in faces:
        img = draw_face(img, centre, diameter, tex)
    return (img * 255).round().astype(np.uint8)


def write_photos(input_dir: Path) -> dict[str, Path]:
    from PIL import Image

    input_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, size, faces, seed in (("portrait.png", (256, 256), PORTRAIT_FACES, 0),
                                    ("group_photo.png", (200, 384), GROUP_FACES, 1)):
        path = input_dir / name
        if not path.exists():
            Image.fromarray(face_photo(size, faces, seed)).save(path)
        out[name] = path
    out.update(write_video_inputs(input_dir))
    return out


VIDEO_FRAMES = 2  # the video workflows' clip: two people walking, 2 frames (each face of each frame is rendered)


def write_video_inputs(input_dir: Path) -> dict[str, Path]:
    """`people_walking.mp4` (two people, 2 frames at 8 fps, stereo sound) and `reference_person.png` (the first of
    them), the video workflows' default inputs; built from scikit-image photos (tests/video_clips.py)."""
    from PIL import Image

    from tests.video_clips import Person, render, write_video

    video, photo = input_dir / "people_walking.mp4", input_dir / "reference_person.png"
    if not video.exists():
        shot = [[Person("astronaut", (50 + 5 * i, 64), 52), Person("camera", (150 - 4 * i, 70), 48)]
                for i in range(VIDEO_FRAMES)]
        write_video(video, render([("astronaut", shot)], (128, 208)), fps=8.0)
    if not photo.exists():
        Image.fromarray(render([("coffee", [[Person("astronaut", (80, 64), 80)]])], (128, 160))[0]).save(photo)
    return {video.name: video, photo.name: photo}


def write_face_pack(models_dir: Path, name: str = "buffalo_l") -> Path:
    from dev.onnx_packs import write_pack

    folder = models_dir / "insightface" / "models" / name
    if not (folder / "det_10g.onnx").exists():
        write_pack(folder, name)
    return folder


def write_tiny_faceid(path: Path) -> Path:
    """A FaceID .bin matching the tiny SD1.5-layout checkpoint's UNet (any file name)."""
    import torch

    from dev.faceid_files import faceid_state_dict, layout_from_unet_config, write_bin
    from dev.tiny_models import SD15_SHALLOW_UNET

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        layers = layout_from_unet_config(SD15_SHALLOW_UNET)
        write_bin(faceid_state_dict(layers, rank=8, dtype=torch.float16, seed=4, kv_scale=0.2), path)
    return path


def install_tiny_models(models_dir: Path, source_checkpoint: Path, checkpoint_names, faceid_names) -> None:
    """Put the tiny checkpoint and FaceID file into `models_dir` under each of the given names (hard links or
    copies of one file each), and the synthesized buffalo_l pack."""
    faceid_src = write_tiny_faceid(models_dir / "ipadapter" / "_faceanon_tiny_faceid.bin")
    for folder, names, src in (("checkpoints", checkpoint_names, source_checkpoint),
                               ("ipadapter", faceid_names, faceid_src)):
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            dst = models_dir / folder / name
            if dst.exists():
                continue
            try:
                dst.hardlink_to(src)
            except OSError:
                shutil.copyfile(src, dst)
    write_face_pack(models_dir)
