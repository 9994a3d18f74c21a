"""Synthetic video clips for the tracking and video tests, built from real photos shipped by scikit-image.

The test face-analysis pack (dev/onnx_packs.py) finds magenta discs, wherever they are: its detector follows the
image content, so a disc that moves, grows, leaves or comes back is found where it is. Here each "person" is a disc
whose texture is a real face photo (scikit-image's astronaut, camera man, cat) mapped into the magenta range, and the
backgrounds are real photos too (a shot on `astronaut`, a cut, a shot on `coffee`), with the green channel raised so
that no background pixel looks like a face. A "dim" face is drawn at half brightness: it is still there (pixels the
anonymizer must change) but the detector misses it, which is how the tests make missed detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# a face crop of each photo (rows, cols): the person's texture
TEXTURES = {"astronaut": (slice(30, 230), slice(140, 320)), "camera": (slice(40, 220), slice(180, 340)),
            "chelsea": (slice(40, 240), slice(120, 320))}


@dataclass(frozen=True)
class Person:
    """One face in one frame: texture name, centre (x, y), diameter, dim (drawn so the detector misses it)."""

    name: str
    center: tuple[float, float]
    diameter: float
    dim: bool = False


def _gray(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = img[..., :3].mean(2)
    rows, cols = TEXTURES[name]
    return (img[rows, cols] / 255.0).astype(np.float32)


def background(name: str, size: tuple[int, int]) -> np.ndarray:
    """A real photo resized to `size` (h, w), float 0..1, greenish so nothing in it is magenta."""
    import skimage.data
    import skimage.transform

    img = skimage.transform.resize(getattr(skimage.data, name)()[..., :3] / 255.0, size, anti_aliasing=True)
    img = img.astype(np.float32) * 0.8
    img[..., 1] = np.clip(img[..., 1] + 0.25, 0, 1)
    return img


def draw_person(image: np.ndarray, person: Person) -> np.ndarray:
    """A copy of `image` with the person's face: a disc textured with a real face photo in magenta tones."""
    import skimage.transform

    out = image.copy()
    h, w = out.shape[:2]
    d = person.diameter
    r = d / 2 + 2
    x0, x1 = max(int(person.center[0] - r), 0), min(int(person.center[0] + r) + 2, w)
    y0, y1 = max(int(person.center[1] - r), 0), min(int(person.center[1] + r) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    alpha = np.clip(d / 2 - np.hypot(xx - person.center[0], yy - person.center[1]) + 0.5, 0, 1)[..., None]
    tex = skimage.transform.resize(_gray(person.name), (int(np.ceil(d)) + 4, int(np.ceil(d)) + 4))
    v = np.clip(((yy - person.center[1]) / d + 0.5) * d + 2, 0, tex.shape[0] - 1).astype(int)
    u = np.clip(((xx - person.center[0]) / d + 0.5) * d + 2, 0, tex.shape[1] - 1).astype(int)
    t = tex[v, u]
    face = np.stack([0.6 + 0.4 * t, np.zeros_like(t), 1.0 - 0.4 * t], -1)
    if person.dim:
        face = face * 0.5
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - alpha) + face * alpha
    return out


def render(scenes: list[tuple[str, list[list[Person]]]], size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3]: for each shot (background name, per frame the people in it), the frames in order."""
    frames = []
    for bg_name, shot in scenes:
        bg = background(bg_name, size)
        for people in shot:
            img = bg
            for p in people:
                img = draw_person(img, p)
            frames.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.stack(frames)


def standard_clip(size: tuple[int, int] = (176, 256)):
    """The tests' clip and its ground truth.

    Shot 0 (frames 0-13, astronaut background): "astronaut" walks left to right; "camera" grows from 44 to 70 px,
    walks out of the right edge at frame 8 and comes back at frame 11; "astronaut" is dim (missed) in frames 4 and
    5. Cut. Shot 1 (frames 14-19, coffee background): "astronaut" again and "chelsea".

    Returns:
        frames uint8 [20, H, W, 3], truth: per frame the list of `Person`s drawn.
    """
    shot0 = []
    for i in range(14):
        people = [Person("astronaut", (50 + 6 * i, 70 + 2 * i), 56, dim=i in (4, 5))]
        if i < 8 or i >= 11:
            x = 170 + 4 * i if i < 8 else 215 - 4 * (i - 11)
            people.append(Person("camera", (x, 110 - i), 44 + 2 * i))
        shot0.append(people)
    shot1 = [[Person("astronaut", (190 - 5 * i, 80), 60), Person("chelsea", (60, 100 - 2 * i), 64)]
             for i in range(6)]
    scenes = [("astronaut", shot0), ("coffee", shot1)]
    frames = render(scenes, size)
    truth = shot0 + shot1
    return frames, truth


def write_video(path, frames: np.ndarray, fps: float = 12.0, sample_rate: int = 16000, title: str = "") -> None:
    """An MP4 (H.264 at high quality + a stereo AAC tone + a `title` tag) of uint8 frames [T, H, W, 3], like a
    phone's video: the source file of the host tests (the title stands for a person's name in the source)."""
    from fractions import Fraction

    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        if title:
            out.metadata["title"] = title
        video = out.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000), options={"crf": "10"})
        video.height, video.width, video.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        sound = out.add_stream("aac", rate=sample_rate, layout="stereo")
        for f in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")))
        out.mux(video.encode())
        t = np.arange(int(sample_rate * len(frames) / fps)) / sample_rate
        wave = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
        size = sound.codec_context.frame_size or 1024
        for start in range(0, wave.shape[1], size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + size]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = sample_rate, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode())


def read_video(path) -> dict:
    """What a saved file holds: container and stream tags, frames (uint8), frame rate, audio."""
    import av

    with av.open(str(path)) as c:
        info = {"tags": dict(c.metadata), "stream_tags": [dict(s.metadata) for s in c.streams],
                "fps": float(c.streams.video[0].average_rate),
                "frames": np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])}
    with av.open(str(path)) as c:
        audio = c.streams.audio
        info["audio"] = None
        if audio:
            info["audio"] = {"sample_rate": audio[0].rate, "channels": audio[0].channels,
                             "samples": sum(f.samples for f in c.decode(audio=0))}
    return info


def detail(image, person: Person) -> float:
    """Mean absolute difference between neighbouring pixels in the square inscribed in a person's disc (image
    [H, W, C] tensor or array): the fine structure a blur removes."""
    r = person.diameter / 2 / np.sqrt(2) - 1
    x0, x1 = int(person.center[0] - r), int(person.center[0] + r)
    y0, y1 = int(person.center[1] - r), int(person.center[1] + r)
    sq = np.asarray(image[y0:y1, x0:x1], np.float32)
    return float(np.abs(np.diff(sq, axis=0)).mean() + np.abs(np.diff(sq, axis=1)).mean())
