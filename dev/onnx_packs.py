"""Synthesized insightface model packs (buffalo_l, antelopev2) for tests and benchmarks.

The real packs cannot be downloaded here (and their weights are non-commercial), so tests build packs that mirror
the real ones' file names and input/output signatures, and that insightface's `model_zoo` routes to the same classes:

| file (buffalo_l / antelopev2)        | input       | outputs                                   | insightface class |
|--------------------------------------|-------------|-------------------------------------------|-------------------|
| det_10g.onnx / scrfd_10g_bnkps.onnx  | 1x3x?x?     | 9: scores, boxes, kps, strides 8/16/32    | SCRFD             |
| w600k_r50.onnx / glintr100.onnx      | Nx3x112x112 | Nx512                                     | ArcFaceONNX       |
| 2d106det.onnx                        | Nx3x192x192 | Nx212 (106 x 2)                           | Landmark          |
| 1k3d68.onnx                          | Nx3x192x192 | Nx3309                                    | Landmark (3d)     |
| genderage.onnx                       | Nx3x96x96   | Nx3                                       | Attribute         |

The networks are small hand-built graphs with predictable behaviour instead of random weights:

- The detector finds **synthetic faces**: magenta discs (green 0, red and blue >= 0.5; see `draw_face`). For each
  stride s it pools a magenta map into s-pixel cells and scores an anchor by (mass in a 4x4-cell window) minus (mass
  in an 8x8-cell window), so a disc is found at the stride where its diameter is about 3.5-7 cells, i.e. discs of
  roughly 28 to 220 pixels *in the detector input*, like a real SCRFD's useful range. The box is the disc's bounding
  box (centroid and diameter from the pooled mass) and the 5 keypoints sit at fixed offsets inside the disc
  (`KPS_OFFSETS`, in units of the diameter). Smaller discs are missed, as small faces are by real detectors.
- The recognizer is a fixed random projection of the 8x8 average-pooled aligned crop: equal crops give equal
  embeddings, different disc textures give different ones.
- The landmark model returns a fixed mean face shape (`MEAN_SHAPE_106`, in units of the box size), with the real
  2d106 index groups (contour 0-32, eyes 33-42 and 87-96, brows 43-51 and 97-105, mouth 52-71, nose 72-86).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 13
IR_VERSION = 8

PACK_FILES = {
    "buffalo_l": {
        "detector": "det_10g.onnx",
        "recognizer": "w600k_r50.onnx",
        "landmark_2d": "2d106det.onnx",
        "landmark_3d": "1k3d68.onnx",
        "genderage": "genderage.onnx",
    },
    "antelopev2": {
        "detector": "scrfd_10g_bnkps.onnx",
        "recognizer": "glintr100.onnx",
        "landmark_2d": "2d106det.onnx",
        "landmark_3d": "1k3d68.onnx",
        "genderage": "genderage.onnx",
    },
}

# 5-point keypoints relative to the disc centre, in units of the disc diameter (image-left eye, image-right eye,
# nose, image-left mouth corner, image-right mouth corner), as SCRFD orders them.
KPS_OFFSETS = np.array([[-0.2, -0.15], [0.2, -0.15], [0.0, 0.03], [-0.16, 0.22], [0.16, 0.22]], np.float32)

GROUPS_106 = {
    "contour": range(0, 33),
    "left_eye": range(33, 43),
    "left_brow": range(43, 52),
    "mouth": range(52, 72),
    "nose": range(72, 87),
    "right_eye": range(87, 97),
    "right_brow": range(97, 106),
}


def _mean_shape_106() -> np.ndarray:
    """A plausible 106-point face (units of the face box, origin at its centre, y down)."""
    pts = np.zeros((106, 2), np.float32)
    t = np.linspace(0.0, np.pi, 33)
    pts[0:33] = np.stack([-0.46 * np.cos(t), -0.08 + 0.56 * np.sin(t)], 1)  # ear to ear through the chin
    for sign, eye, brow in ((-1, range(33, 43), range(43, 52)), (1, range(87, 97), range(97, 106))):
        a = np.linspace(0, 2 * np.pi, 9, endpoint=False)
        e = list(eye)
        pts[e[:5]] = np.stack([sign * 0.2 + 0.085 * np.cos(a[:5]), -0.15 + 0.035 * np.sin(a[:5])], 1)
        pts[e[5]] = (sign * 0.2, -0.15)  # pupil
        pts[e[6:]] = np.stack([sign * 0.2 + 0.085 * np.cos(a[5:]), -0.15 + 0.035 * np.sin(a[5:])], 1)
        b = np.linspace(-1, 1, 9)
        pts[list(brow)] = np.stack([sign * 0.2 + 0.12 * b, -0.27 - 0.03 * (1 - b**2)], 1)
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts[52:64] = np.stack([0.17 * np.cos(a + np.pi), 0.22 + 0.065 * np.sin(a + np.pi)], 1)  # outer lip
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pts[64:72] = np.stack([0.11 * np.cos(a), 0.22 + 0.025 * np.sin(a)], 1)
    pts[72:80] = np.stack([np.zeros(8), np.linspace(-0.14, 0.02, 8)], 1)  # bridge
    a = np.linspace(0.15 * np.pi, 0.85 * np.pi, 7)
    pts[80:87] = np.stack([0.08 * np.cos(a), 0.0 + 0.05 * np.sin(a)], 1)  # nostrils
    return pts


MEAN_SHAPE_106 = _mean_shape_106()


# ---------------------------------------------------------------------------------------------------------------
# graph helpers
# ---------------------------------------------------------------------------------------------------------------
def _helpers():
    import onnx
    from onnx import TensorProto as tensor_proto  # noqa: N813
    from onnx import helper, numpy_helper

    return onnx, tensor_proto, helper, numpy_helper


class _Graph:
    def __init__(self):
        onnx, tensor_proto, helper, numpy_helper = _helpers()
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes = []
        self.inits = []
        self.n = 0

    def const(self, value, name=None) -> str:
        self.n += 1
        name = name or f"const_{self.n}"
        self.inits.append(self.numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def iconst(self, value) -> str:
        self.n += 1
        name = f"iconst_{self.n}"
        self.inits.append(self.numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def op(self, op_type, inputs, name=None, out=None, **attrs) -> str:
        self.n += 1
        out = out or f"t_{self.n}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=name or f"{op_type}_{self.n}", **attrs))
        return out

    def model(self, inputs, outputs, name):
        onnx, tensor_proto, helper, numpy_helper = _helpers()
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="faceanon-tests")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def _value(name, shape):
    onnx, tensor_proto, helper, numpy_helper = _helpers()
    return helper.make_tensor_value_info(name, tensor_proto.FLOAT, shape)


def _dummy_compute(g: _Graph, x: str, stem_stride: int, channels: int, layers: int, seed: int) -> str:
    """A conv stack whose result is multiplied by zero: real-model-like compute without changing any output.
    Returns a [N, 1, 1, 1] zero tensor that depends on the whole stack."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, 3, stem_stride, stem_stride)).astype(np.float32) * 0.1
    h = g.op("Relu", [g.op("Conv", [x, g.const(w)], strides=[stem_stride, stem_stride])])
    for _ in range(layers):
        w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) / np.sqrt(9 * channels)
        h = g.op("Relu", [g.op("Conv", [h, g.const(w)], pads=[1, 1, 1, 1])])
    return g.op("Mul", [g.op("ReduceMean", [h], axes=[1, 2, 3], keepdims=1), g.const(0.0)])


# ---------------------------------------------------------------------------------------------------------------
# detector (SCRFD signature: 9 outputs)
# ---------------------------------------------------------------------------------------------------------------
SCORE_GAIN = 14.0
SCORE_OFFSET = 0.38


def detector_model(compute: bool = False):
    """`compute`: add about 10 GFLOPs per 640x640 pass (like the real SCRFD-10G) that do not change the outputs."""
    g = _Graph()
    x = "input.1"
    # insightface feeds (pixel - 127.5) / 128 in RGB order.
    r = g.op("Slice", [x, g.iconst([0]), g.iconst([1]), g.iconst([1])])
    gr = g.op("Slice", [x, g.iconst([1]), g.iconst([2]), g.iconst([1])])
    b = g.op("Slice", [x, g.iconst([2]), g.iconst([3]), g.iconst([1])])
    m = g.op("Sub", [g.op("Sub", [g.op("Min", [r, b]), gr]), g.const(0.5)])
    m = g.op("Clip", [g.op("Mul", [m, g.const(2.0)]), g.const(0.0), g.const(1.0)])  # magenta-ness 0..1
    if compute:  # 5 x (64 -> 64, 3x3) at 1/4 resolution: ~9.5 GFLOPs at 640x640
        m = g.op("Add", [m, _dummy_compute(g, x, 4, 64, 5, seed=101)])
    scores, boxes, kpss = [], [], []
    for s in (8, 16, 32):
        # centres of the 8 cells around an anchor (pixel centres at integer coordinates), in strides
        offs = np.arange(8, dtype=np.float32) - 3.5 - 0.5 / s
        wx = np.tile(offs[None, :], (8, 1))[None, None]
        wy = np.tile(offs[:, None], (1, 8))[None, None]
        cells = g.op("AveragePool", [m], kernel_shape=[s, s], strides=[s, s])
        a4 = g.op("AveragePool", [cells], kernel_shape=[4, 4], strides=[1, 1], pads=[2, 2, 1, 1], count_include_pad=1)
        a8 = g.op("AveragePool", [cells], kernel_shape=[8, 8], strides=[1, 1], pads=[4, 4, 3, 3], count_include_pad=1)
        mass = g.op("Add", [g.op("Mul", [a8, g.const(64.0)]), g.const(1e-4)])
        cx = g.op("Div", [g.op("Conv", [cells, g.const(wx)], pads=[4, 4, 3, 3]), mass])
        cy = g.op("Div", [g.op("Conv", [cells, g.const(wy)], pads=[4, 4, 3, 3]), mass])
        diam = g.op("Sqrt", [g.op("Mul", [mass, g.const(4.0 / np.pi)])])
        half = g.op("Mul", [diam, g.const(0.5)])
        score = g.op("Sigmoid", [g.op("Mul", [g.op("Sub", [g.op("Sub", [a4, a8]), g.const(SCORE_OFFSET)]),
                                             g.const(SCORE_GAIN)])])
        zero = g.op("Mul", [score, g.const(0.0)])
        # two anchors per location; the second one never fires
        sc = g.op("Concat", [score, zero], axis=1)
        box = [g.op("Sub", [half, cx]), g.op("Sub", [half, cy]), g.op("Add", [half, cx]), g.op("Add", [half, cy])]
        bx = g.op("Concat", box + box, axis=1)
        kp = []
        for ox, oy in KPS_OFFSETS:
            kp.append(g.op("Add", [cx, g.op("Mul", [diam, g.const(float(ox))])]))
            kp.append(g.op("Add", [cy, g.op("Mul", [diam, g.const(float(oy))])]))
        kx = g.op("Concat", kp + kp, axis=1)
        for t, width, dest in ((sc, 1, scores), (bx, 4, boxes), (kx, 10, kpss)):
            tt = g.op("Transpose", [t], perm=[0, 2, 3, 1])
            kind = {1: "score", 4: "bbox", 10: "kps"}[width]
            dest.append(g.op("Reshape", [tt, g.iconst([-1, width])], out=f"{kind}_{s}"))
    outputs = [_value(n, [f"n{i}", w]) for i, (n, w) in enumerate(
        [(n, 1) for n in scores] + [(n, 4) for n in boxes] + [(n, 10) for n in kpss])]
    return g.model([_value(x, [1, 3, "?", "?"])], outputs, "scrfd_synthetic")


# ---------------------------------------------------------------------------------------------------------------
# recognizer (ArcFace signature: Nx3x112x112 -> Nx512)
# ---------------------------------------------------------------------------------------------------------------
def recognizer_model(seed: int, embedded_normalisation: bool, compute: bool = False, centered: bool = False):
    """`compute`: add about 6.5 GFLOPs per face (like the real ResNet-50 ArcFace) that do not change the output.
    `centered`: project only the central 4x4 cells minus their mean per colour channel, so that embeddings follow the
    texture rather than the overall colour (different textures then score low, as different people do)."""
    g = _Graph()
    x = "input.1"
    h = x
    if embedded_normalisation:
        # The real w600k_r50 starts with Sub and Mul nodes; insightface then feeds raw 0..255 pixels.
        h = g.op("Sub", [h, g.const(127.5)], name="Sub_0")
        h = g.op("Mul", [h, g.const(1.0 / 127.5)], name="Mul_1")
    h = g.op("AveragePool", [h], kernel_shape=[14, 14], strides=[14, 14])
    features = 192
    if centered:  # the central 4x4 cells (inside the face), minus their mean per channel
        h = g.op("Slice", [h, g.iconst([2, 2]), g.iconst([6, 6]), g.iconst([2, 3])])
        h = g.op("Sub", [h, g.op("ReduceMean", [h], axes=[2, 3], keepdims=1)])
        features = 48
    h = g.op("Flatten", [h], axis=1)
    w = np.random.default_rng(seed).standard_normal((features, 512)).astype(np.float32) / np.sqrt(features)
    bias = np.random.default_rng(seed + 1).standard_normal(512).astype(np.float32) * 0.05
    h = g.op("MatMul", [h, g.const(w)])
    if compute:  # 7 x (128 -> 128, 3x3) at 56x56: ~6.5 GFLOPs per face
        zero = g.op("Reshape", [_dummy_compute(g, x, 2, 128, 7, seed=202), g.iconst([-1, 1])])
        h = g.op("Add", [h, zero])
    g.op("Add", [h, g.const(bias)], out="683")
    return g.model([_value(x, ["None", 3, 112, 112])], [_value("683", ["None", 512])], "arcface_synthetic")


# ---------------------------------------------------------------------------------------------------------------
# landmark and attribute models (first node named bn_data, as in the real files)
# ---------------------------------------------------------------------------------------------------------------
def _constant_head(size: int, values: np.ndarray, name: str):
    g = _Graph()
    x = "data"
    bn = g.op("BatchNormalization", [x, g.const(np.ones(3)), g.const(np.zeros(3)), g.const(np.zeros(3)),
                                     g.const(np.ones(3))], name="bn_data", epsilon=1e-5)
    pooled = g.op("ReduceMean", [bn], axes=[1, 2, 3], keepdims=0)  # [N]
    pooled = g.op("Unsqueeze", [pooled, g.iconst([1])])  # [N, 1]
    g.op("Add", [g.op("Mul", [pooled, g.const(0.0)]), g.const(values[None, :])], out="fc1")
    return g.model([_value(x, ["None", 3, size, size])], [_value("fc1", ["None", values.size])], name)


def landmark_106_model():
    # insightface crops 1.5 x the box around its centre at 192 px and reads (pred + 1) * 96: u = offset / (0.75 box)
    return _constant_head(192, (MEAN_SHAPE_106 / 0.75).reshape(-1).astype(np.float32), "landmark106_synthetic")


def landmark_3d68_model():
    rng = np.random.default_rng(68)
    pts = np.zeros((1103, 3), np.float32)
    pts[-68:, :2] = rng.uniform(-0.5, 0.5, (68, 2))
    pts[-68:, 2] = rng.uniform(-0.2, 0.2, 68)
    return _constant_head(192, pts.reshape(-1), "landmark3d68_synthetic")


def genderage_model():
    return _constant_head(96, np.array([0.2, 0.8, 0.31], np.float32), "genderage_synthetic")


def write_pack(folder: Path | str, name: str = "buffalo_l", *, skip: tuple[str, ...] = (),
               compute: bool = False, centered: bool = False) -> Path:
    """Write a synthesized pack `name` ("buffalo_l" or "antelopev2") into `folder` (created); return `folder`.

    `skip` names roles ("detector", "recognizer", "landmark_2d", "landmark_3d", "genderage") to leave out.
    `compute` gives the detector and recognizer the real models' compute cost (for benchmarks; same outputs).
    `centered` makes the recognizer texture-sensitive (see `recognizer_model`; the video tests' people).
    """
    import onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = PACK_FILES[name]
    builders = {
        "detector": lambda: detector_model(compute),
        "recognizer": lambda: recognizer_model(seed=11 if name == "buffalo_l" else 23,
                                               embedded_normalisation=name == "buffalo_l", compute=compute,
                                               centered=centered),
        "landmark_2d": landmark_106_model,
        "landmark_3d": landmark_3d68_model,
        "genderage": genderage_model,
    }
    for role, filename in files.items():
        if role in skip:
            continue
        onnx.save(builders[role](), str(folder / filename))
    return folder


# ---------------------------------------------------------------------------------------------------------------
# synthetic faces
# ---------------------------------------------------------------------------------------------------------------
def draw_face(image: np.ndarray, center: tuple[float, float], diameter: float, seed: int = 0) -> np.ndarray:
    """Return a copy of `image` (H x W x C float 0..1, C >= 3) with a synthetic face: a textured magenta disc.

    The texture (red and blue between 0.55 and 1, green 0) is a smooth random pattern chosen by `seed`, so
    different seeds give different embeddings. Edges are anti-aliased over one pixel. Only the disc's bounding
    box is touched, so this is cheap on large images.
    """
    out = np.array(image, dtype=np.float32, copy=True)
    h, w = out.shape[:2]
    r = diameter / 2.0 + 2
    x0, x1 = max(int(center[0] - r), 0), min(int(center[0] + r) + 2, w)
    y0, y1 = max(int(center[1] - r), 0), min(int(center[1] + r) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dist = np.hypot(xx - center[0], yy - center[1])
    alpha = np.clip(diameter / 2.0 - dist + 0.5, 0.0, 1.0)[..., None]
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.55, 1.0, (2, 4, 4)).astype(np.float32)
    # bilinear upsample of the 4x4 pattern over the disc's box
    u = np.clip((xx - center[0]) / diameter + 0.5, 0, 1) * 3
    v = np.clip((yy - center[1]) / diameter + 0.5, 0, 1) * 3
    i0, j0 = np.floor(v).astype(int).clip(0, 2), np.floor(u).astype(int).clip(0, 2)
    fv, fu = v - i0, u - j0
    face = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    for ch, c in ((0, 0), (2, 1)):
        p = coarse[c]
        face[..., ch] = (p[i0, j0] * (1 - fv) * (1 - fu) + p[i0 + 1, j0] * fv * (1 - fu)
                         + p[i0, j0 + 1] * (1 - fv) * fu + p[i0 + 1, j0 + 1] * fv * fu)
    out[y0:y1, x0:x1, :3] = out[y0:y1, x0:x1, :3] * (1 - alpha) + face * alpha
    return out


def expected_kps(center: tuple[float, float], diameter: float) -> np.ndarray:
    """The 5 keypoints the synthesized detector should report for `draw_face(center, diameter)`."""
    return np.asarray(center, np.float32)[None, :] + KPS_OFFSETS * float(diameter)
