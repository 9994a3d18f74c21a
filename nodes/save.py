"""Save and preview images with NO metadata: no prompt, no workflow, no file names.

Core SaveImage and PreviewImage embed the whole prompt (every widget value, including the source photo's file name,
often a person's name) and the UI workflow as PNG text chunks. An anonymized image must not carry that trace of the
original, so the pack's shipped workflows save and preview through these two nodes, which write plain PNGs (pixel
data only, no text chunks). They never ask ComfyUI for the hidden prompt / workflow values, so there is nothing to
leak even by mistake. Only IMAGE tensors can be saved: inversions and identity embeddings have their own socket
types and cannot be wired in.

Video: core SaveVideo writes the prompt (with the source file's name) into the container's metadata, and when it is
given a loaded file it copies the source container's own tags (title, artist...) too. FaceAnonSaveVideo always
re-encodes from the frames, the frame rate and the audio, and writes an MP4 (H.264 + AAC) with no tags at all
(bit-exact muxing: not even the encoder's name).
"""

from __future__ import annotations

import logging
import os
import secrets
from fractions import Fraction

import folder_paths
import numpy as np
from PIL import Image

from .types import io

logger = logging.getLogger(__name__)

CATEGORY = "FaceAnon/privacy"


def output_location(filename_prefix: str, folder_type: str, width: int, height: int) -> tuple[str, str, int, str]:
    """(folder, file name stem, counter, subfolder) for a new file in ComfyUI's output or temp folder (created)."""
    root = folder_paths.get_output_directory() if folder_type == "output" else folder_paths.get_temp_directory()
    # core's helper: subfolders in the prefix, %date% variables, refuses paths outside the folder
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, root, width, height)
    os.makedirs(folder, exist_ok=True)
    return folder, name, counter, subfolder


def to_uint8(image) -> np.ndarray:
    """One IMAGE [H, W, C] float 0..1 -> H x W x 3 uint8 (rounded, clipped)."""
    return np.clip(255.0 * image[..., :3].detach().cpu().float().numpy(), 0, 255).round().astype(np.uint8)


def save_plain_pngs(images, filename_prefix: str, folder_type: str, compress_level: int) -> list[dict]:
    """Write each image of the batch as `<prefix>_<counter>_.png` (core's naming) with no text chunks.

    Returns the UI entries ({filename, subfolder, type}) ComfyUI's frontend shows in the node.
    """
    if images is None or len(images) == 0:
        raise ValueError("FaceAnon save: got an empty image batch; connect an IMAGE with at least one image")
    folder, name, counter, subfolder = output_location(filename_prefix, folder_type, images[0].shape[1],
                                                       images[0].shape[0])
    results = []
    for batch_number, image in enumerate(images):
        pixels = to_uint8(image)
        file = f"{name.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        # no `pnginfo`: PIL writes IHDR, IDAT and IEND only (no tEXt / iTXt / zTXt, no EXIF)
        Image.fromarray(pixels).save(os.path.join(folder, file), compress_level=compress_level)
        results.append({"filename": file, "subfolder": subfolder, "type": folder_type})
        counter += 1
    return results


class FaceAnonSaveImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonSaveImage",
            display_name="Save Image, no metadata (FaceAnon)",
            category=CATEGORY,
            is_output_node=True,
            description=(
                "Saves images to ComfyUI's output folder as PNG files WITHOUT metadata. Core Save Image embeds "
                "the whole prompt and workflow, including the source photo's file name, in every PNG; an "
                "anonymized image should carry no trace of the original, so this node writes pixels only (the "
                "workflow is not stored in the file: keep the workflow JSON separately)."),
            inputs=[
                io.Image.Input("images", tooltip="The images to save (e.g. the anonymized photo)."),
                io.String.Input("filename_prefix", default="faceanon/anonymized",
                                tooltip="File name prefix; may contain subfolders ('faceanon/anonymized') and "
                                        "%year%-%month%-%day% style date variables. Avoid putting the source "
                                        "photo's name here: it is what this node exists to keep out."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, images, filename_prefix="faceanon/anonymized"):
        results = save_plain_pngs(images, filename_prefix, "output", compress_level=4)
        logger.info("FaceAnon: saved %d image(s) without metadata to %s", len(results),
                    results[0]["subfolder"] or "output/")
        return io.NodeOutput(ui={"images": results})


class FaceAnonPreviewImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonPreviewImage",
            display_name="Preview Image, no metadata (FaceAnon)",
            category=CATEGORY,
            is_output_node=True,
            description=(
                "Shows images in the node, like core Preview Image, but the temporary PNG it writes (in ComfyUI's "
                "temp folder, emptied at every server start) carries no prompt or workflow metadata."),
            inputs=[io.Image.Input("images")],
            outputs=[],
        )

    @classmethod
    def execute(cls, images):
        prefix = "faceanon_preview_" + secrets.token_hex(4)
        return io.NodeOutput(ui={"images": save_plain_pngs(images, prefix, "temp", compress_level=1)})


def write_mp4(path: str, images, frame_rate, audio=None, crf: int = 19) -> dict:
    """Encode frames (+ audio) as an MP4 with H.264 (yuv420p) and AAC, and no metadata tags.

    Args:
        path: the file to write.
        images: [N, H, W, C] float 0..1 (odd sizes are padded by one edge row / column: H.264 4:2:0 needs even).
        frame_rate: frames per second (float or Fraction; kept to 1/1000).
        audio: ComfyUI AUDIO ({"waveform": [1, C, S], "sample_rate": int}) or None.
        crf: x264 constant rate factor (0 lossless .. 51 worst; 17-23 look transparent).

    Returns:
        {"frames", "width", "height", "fps", "audio_channels"} of what was written.
    """
    import av

    if images is None or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError("FaceAnon Save Video: the video has no frames; connect Create Video's VIDEO made from an "
                         f"IMAGE batch with at least one frame (got {None if images is None else tuple(images.shape)})")
    rate = Fraction(round(float(frame_rate) * 1000), 1000)
    if rate <= 0:
        raise ValueError(f"FaceAnon Save Video: frame rate must be positive, got {float(frame_rate)}")
    n, h, w = (int(v) for v in images.shape[:3])
    ph, pw = h + h % 2, w + w % 2
    with av.open(path, mode="w", format="mp4", container_options={"fflags": "+bitexact"}) as out:
        video = out.add_stream("libx264" if "libx264" in av.codecs_available else "h264", rate=rate,
                               options={"crf": str(int(crf))})
        video.width, video.height, video.pix_fmt = pw, ph, "yuv420p"
        sound = None
        if audio is not None and audio.get("waveform") is not None and audio["waveform"].numel():
            waveform = audio["waveform"][0].detach().float().cpu().numpy()  # [C, S]
            layout = {1: "mono", 2: "stereo"}.get(waveform.shape[0])
            if layout is None:
                waveform, layout = waveform[:2], "stereo"
            sound = out.add_stream("aac", rate=int(audio["sample_rate"]), layout=layout)
        for frame in images:
            pixels = to_uint8(frame)
            if (ph, pw) != (h, w):
                pixels = np.pad(pixels, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")):
                out.mux(packet)
        out.mux(video.encode())
        if sound is not None:
            size = sound.codec_context.frame_size or 1024
            for start in range(0, waveform.shape[1], size):
                chunk = np.ascontiguousarray(waveform[:, start:start + size], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate, frame.pts = int(audio["sample_rate"]), start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return {"frames": n, "width": pw, "height": ph, "fps": float(rate),
            "audio_channels": 0 if sound is None else int(waveform.shape[0])}


class FaceAnonSaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonSaveVideo",
            display_name="Save Video, no metadata (FaceAnon)",
            category=CATEGORY,
            is_output_node=True,
            description=(
                "Saves a video to ComfyUI's output folder as MP4 (H.264 + AAC) WITHOUT metadata. Core Save Video "
                "writes the prompt and workflow (with the source video's file name) into the file and copies the "
                "source file's own tags; this node re-encodes the frames, frame rate and audio and writes no tags "
                "at all."),
            inputs=[
                io.Video.Input("video", tooltip="From Create Video (the anonymized frames, the original audio and "
                                                "frame rate)."),
                io.String.Input("filename_prefix", default="faceanon/anonymized_video",
                                tooltip="File name prefix; may contain subfolders and %year%-%month%-%day% style "
                                        "date variables. Avoid the source video's name here."),
                io.Int.Input("crf", default=19, min=0, max=51,
                             tooltip="H.264 quality: 0 = lossless (large files), 17-23 = visually transparent, "
                                     "higher = smaller files"),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, video, filename_prefix="faceanon/anonymized_video", crf=19):
        parts = video.get_components()
        folder, name, counter, subfolder = output_location(filename_prefix, "output", int(parts.images.shape[2]),
                                                           int(parts.images.shape[1]))
        file = f"{name}_{counter:05}_.mp4"
        info = write_mp4(os.path.join(folder, file), parts.images, parts.frame_rate, parts.audio, crf)
        logger.info("FaceAnon: saved %s without metadata (%s)", file, info)
        return io.NodeOutput(ui={"images": [{"filename": file, "subfolder": subfolder, "type": "output"}],
                                 "animated": (True,)})


NODES = [FaceAnonSaveImage, FaceAnonPreviewImage, FaceAnonSaveVideo]
