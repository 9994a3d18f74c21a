"""Alignment, paste-back and region masks on real photographs shipped by packages.

- scikit-image's `astronaut` (NASA, public domain), 512x512, one frontal face;
- insightface 2.1's `t1.jpg` (in the installed wheel; third-party copyright, read in place, never copied into
  the repo), 1280x886, six faces at several poses.

Keypoints were annotated by hand (eye on the image's left, eye on the right, nose tip, mouth corners).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceanon import faces as face_api
from faceanon.faces import Face, Faces

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

ASTRONAUT_KPS = np.array([[201, 101], [245, 102], [223, 127], [205, 141], [243, 141]], np.float32)
T1_KPS = np.array([
    [[87, 327], [127, 307], [116, 345], [116, 366], [145, 352]],
    [[290, 210], [319, 195], [314, 227], [312, 241], [337, 234]],
    [[490, 320], [539, 332], [512, 355], [490, 367], [532, 380]],
    [[761, 396], [802, 404], [791, 419], [771, 437], [805, 440]],
    [[938, 114], [968, 112], [935, 150], [940, 170], [960, 168]],
    [[1147, 326], [1192, 324], [1170, 354], [1157, 367], [1195, 364]],
], np.float32)
TOL = 1.0 / 255


def _face(i, kps, landmarks=None):
    lo, hi = kps.min(0), kps.max(0)
    pad = (hi - lo).max() * 0.6
    return Face(i, np.array([lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad * 1.4], np.float32), 0.9,
                np.asarray(kps, np.float32), landmarks)


@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return torch.from_numpy(skimage_data.astronaut()).float().div(255)[None]


@pytest.fixture(scope="module")
def t1():
    data = pytest.importorskip("insightface.data")
    bgr = data.get_image("t1")
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).float().div(255)[None]


def faces_of(image, kps_list, index=0, landmarks=None):
    b, h, w, _ = image.shape
    fs = tuple(_face(index, k, None if landmarks is None else landmarks[i]) for i, k in enumerate(kps_list))
    return Faces(fs, (h, w), b)


def assert_roundtrip(image, out, alpha):
    changed = alpha > 0
    assert changed.any()
    diff = (out - image).abs().amax(-1)
    assert float(diff[changed].max()) <= TOL, float(diff[changed].max())
    assert torch.equal(out[~changed], image[~changed])  # bit-identical outside the feathered region


# ---------------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------------
def test_ffhq_framing_puts_the_eyes_level_and_centred():
    ref = None
    for angle, scale in ((0.0, 1.0), (25.0, 1.7), (-60.0, 0.4), (180.0, 3.0)):
        t = np.deg2rad(angle)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        kps = (ASTRONAUT_KPS - 220) @ rot.T * scale + [900, 700]
        fwd = face_api.crop_transform(kps, 512)
        p = kps @ fwd[:2, :2].T + fwd[:2, 2]
        ref = p if ref is None else ref
        np.testing.assert_allclose(p, ref, atol=1e-6)  # rotation, scale and position are undone
        assert abs(p[0, 1] - p[1, 1]) < 4  # eyes level
        assert abs((p[0, 0] + p[1, 0]) / 2 - 255.5) < 12  # centred
        assert p[0, 0] < p[1, 0] and p[2, 1] > p[0, 1] and p[3, 1] > p[2, 1]  # upright
        assert 0.2 * 512 < p[1, 0] - p[0, 0] < 0.3 * 512  # FFHQ scale: eye distance ~1/4 of the crop
    wide = face_api.crop_transform(ASTRONAUT_KPS, 512, margin=2.0)
    narrow = face_api.crop_transform(ASTRONAUT_KPS, 512)
    assert abs(np.linalg.det(narrow[:2, :2]) / np.linalg.det(wide[:2, :2]) - 4) < 1e-6


# ---------------------------------------------------------------------------------------------------------------
# crop + paste on real photographs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,color_match", [(512, "mean"), (1024, "none"), (256, "mean and contrast"), (64, "mean")])
def test_astronaut_crop_then_paste_unchanged_is_identity(astronaut, size, color_match):
    faces = faces_of(astronaut, [ASTRONAUT_KPS])
    crops, info = face_api.crop_faces(astronaut, faces, size)
    assert crops.shape == (1, size, size, 3) and info.masks.shape == (1, size, size)
    out, alpha = face_api.paste_faces(astronaut, crops, info, color_match=color_match, feather=size / 32)
    assert_roundtrip(astronaut, out, alpha)
    # the pasted area covers the whole face (nose and mouth fully, eyes fully) and stays near it
    for x, y in ASTRONAUT_KPS.astype(int):
        assert alpha[0, y, x] > 0.99
    ys, xs = torch.nonzero(alpha[0] > 0, as_tuple=True)
    assert 150 < xs.min() and xs.max() < 300 and 30 < ys.min() and ys.max() < 230


def test_six_faces_of_a_group_photo(t1):
    faces = faces_of(t1, T1_KPS)
    crops, info = face_api.crop_faces(t1, faces, 384)
    assert crops.shape == (6, 384, 384, 3)
    out, alpha = face_api.paste_faces(t1, crops, info)
    assert_roundtrip(t1, out, alpha)
    # every face is covered, each by its own crop
    for k in T1_KPS:
        assert alpha[0, int(k[2, 1]), int(k[2, 0])] > 0.99
    # change only face 3: the other five faces stay exactly as they were
    edited = crops.clone()
    edited[3] = 1.0 - edited[3]
    out2, alpha2 = face_api.paste_faces(t1, edited, info, color_match="none")
    nose = T1_KPS[3, 2].astype(int)
    assert (out2[0, nose[1], nose[0]] - (1 - t1[0, nose[1], nose[0]])).abs().max() < 0.05
    for i, k in enumerate(T1_KPS):
        if i != 3:
            x, y = k[2].astype(int)
            assert (out2[0, y - 3:y + 4, x - 3:x + 4] - t1[0, y - 3:y + 4, x - 3:x + 4]).abs().max() <= TOL


def test_batch_of_images_each_face_pasted_into_its_own_image(t1):
    imgs = torch.cat([t1, t1.flip(2)])
    w = t1.shape[2]
    flipped = T1_KPS.copy()
    flipped[..., 0] = w - 1 - flipped[..., 0]
    flipped = flipped[:, [1, 0, 2, 4, 3]]  # mirror: image-left eye is the other eye
    fs = [_face(0, k) for k in T1_KPS[:2]] + [_face(1, k) for k in flipped[4:]]
    faces = Faces(tuple(fs), tuple(t1.shape[1:3]), 2)
    crops, info = face_api.crop_faces(imgs, faces, 384)
    assert info.image_index == (0, 0, 1, 1)
    alone = Faces((_face(0, flipped[4]),), tuple(t1.shape[1:3]), 1)
    torch.testing.assert_close(crops[2], face_api.crop_faces(t1.flip(2), alone, 384)[0][0])
    edited = torch.zeros_like(crops)
    out, alpha = face_api.paste_faces(imgs, edited, info, color_match="none", feather=8)
    assert (alpha[0] > 0).any() and (alpha[1] > 0).any()
    for b, kset in ((0, T1_KPS[:2]), (1, flipped[4:])):
        for k in kset:
            x, y = k[2].astype(int)
            assert float(out[b, y, x].max()) < 0.02  # pasted black
    for b, kset in ((0, T1_KPS[2:]), (1, flipped[:4])):  # faces without a crop in that image are untouched
        for k in kset:
            x, y = k[2].astype(int)
            assert torch.equal(out[b, y - 5:y + 6, x - 5:x + 6], imgs[b, y - 5:y + 6, x - 5:x + 6])


def test_changed_crop_leaves_no_trace_of_the_original(astronaut):
    faces = faces_of(astronaut, [ASTRONAUT_KPS])
    crops, info = face_api.crop_faces(astronaut, faces, 512)
    grey = torch.full_like(crops, 0.5)
    out, alpha = face_api.paste_faces(astronaut, grey, info, color_match="none")
    core = alpha[0] > 0.999
    assert core.sum() > 2000
    assert float((out[0][core] - 0.5).abs().max()) < 1e-4  # no detail of the original face survives
    # nearly-unchanged crops keep the original's detail only where they match it
    noisy = crops.clone()
    noisy[..., 200:300, :] = 0.5
    out2, _ = face_api.paste_faces(astronaut, noisy, info, color_match="none")
    y = int(ASTRONAUT_KPS[0, 1])
    x = int(ASTRONAUT_KPS[0, 0])
    assert (out2[0, y, x] - astronaut[0, y, x]).abs().max() <= TOL  # eye row: unchanged part of the crop


def test_face_partly_outside_the_image(astronaut):
    kps = ASTRONAUT_KPS - [190, 0]  # the face's left half hangs off the image
    faces = faces_of(astronaut, [kps])
    for padding in face_api.PADDING:
        crops, info = face_api.crop_faces(astronaut, faces, 256, padding=padding)
        out, alpha = face_api.paste_faces(astronaut, crops, info)
        assert_roundtrip(astronaut, out, alpha)


def test_upscaled_crops_are_placed_by_scaling_the_warp(astronaut):
    faces = faces_of(astronaut, [ASTRONAUT_KPS])
    crops, info = face_api.crop_faces(astronaut, faces, 256)
    big, _ = face_api.crop_faces(astronaut, faces, 1024)  # "an upscaler's output"
    out, alpha = face_api.paste_faces(astronaut, big, info, color_match="none")
    assert_roundtrip(astronaut, out, alpha)
    shifted = torch.roll(big, shifts=24, dims=2)  # a misplaced paste would show as a large error
    out_bad, _ = face_api.paste_faces(astronaut, shifted, info, color_match="none", detail_tolerance=0)
    assert float((out_bad - astronaut).abs().max()) > 0.2


def test_grey_and_rgba_images(astronaut):
    grey = astronaut.mean(-1, keepdim=True)
    faces = faces_of(grey, [ASTRONAUT_KPS])
    crops, info = face_api.crop_faces(grey, faces, 256)
    assert crops.shape[-1] == 3
    out, alpha = face_api.paste_faces(grey, crops, info)
    assert out.shape == grey.shape
    assert_roundtrip(grey, out, alpha)
    rgba = torch.cat([astronaut, torch.rand(1, 512, 512, 1)], -1)
    crops, info = face_api.crop_faces(rgba, faces, 256)
    out, alpha = face_api.paste_faces(rgba, torch.zeros_like(crops), info, color_match="none")
    assert torch.equal(out[..., 3], rgba[..., 3])  # alpha channel kept
    assert float(out[0, 127, 223, :3].max()) < 0.01


def test_paste_color_match(astronaut):
    faces = faces_of(astronaut, [ASTRONAUT_KPS])
    crops, info = face_api.crop_faces(astronaut, faces, 256)
    tinted = (crops * torch.tensor([0.7, 1.0, 1.2])).clamp(0, 1)
    x, y = 223, 118
    plain, _ = face_api.paste_faces(astronaut, tinted, info, color_match="none")
    matched, _ = face_api.paste_faces(astronaut, tinted, info, color_match="mean")
    win = (0, slice(y - 10, y + 10), slice(x - 10, x + 10))
    err_plain = float((plain[win] - astronaut[win]).abs().mean())
    err_matched = float((matched[win] - astronaut[win]).abs().mean())
    assert err_matched < 0.5 * err_plain


def test_paste_checks_its_inputs(astronaut, t1):
    faces = faces_of(astronaut, [ASTRONAUT_KPS])
    crops, info = face_api.crop_faces(astronaut, faces, 256)
    with pytest.raises(ValueError, match="got 2 crop"):
        face_api.paste_faces(astronaut, crops.expand(2, -1, -1, -1), info)
    with pytest.raises(ValueError, match="paste into the images that were cropped"):
        face_api.paste_faces(t1, crops, info)
    with pytest.raises(ValueError, match="crop the images the faces were detected on"):
        face_api.crop_faces(t1, faces, 256)
    with pytest.raises(ValueError, match="matches neither"):
        face_api.paste_faces(astronaut, crops, info, mask=torch.ones(1, 100, 100))
    # no faces at all: images come back unchanged
    empty = Faces((), (512, 512), 1, missing=(0,))
    c0, i0 = face_api.crop_faces(astronaut, empty, 256)
    assert c0.shape == (0, 256, 256, 3)
    out, alpha = face_api.paste_faces(astronaut, c0, i0)
    assert torch.equal(out, astronaut) and not alpha.any() and i0.missing == (0,)


# ---------------------------------------------------------------------------------------------------------------
# region masks
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def landmark_faces(astronaut, tmp_path_factory):
    """The astronaut with 106 landmarks from the (synthesized) 2d106det model run by insightface."""
    pytest.importorskip("onnx")
    pytest.importorskip("insightface")
    from faceanon.faces.detection import _landmarks
    from faceanon.faces._image import to_bgr_uint8
    from dev.onnx_packs import write_pack

    root = tmp_path_factory.mktemp("insightface")
    write_pack(root / "models" / "buffalo_l", "buffalo_l")
    a = face_api.load_face_analysis("buffalo_l", [root])
    base = _face(0, ASTRONAUT_KPS)
    lm = _landmarks(a, to_bgr_uint8(astronaut[0]), base.box, base.kps, 0.9)
    return faces_of(astronaut, [ASTRONAUT_KPS], landmarks=[lm])


GROUPS = {"eyes": list(range(33, 43)) + list(range(87, 97)), "brows": list(range(43, 52)) + list(range(97, 106)),
          "mouth": list(range(52, 72)), "nose": list(range(72, 87))}


def _at(mask, pts):
    pts = np.round(pts).astype(int)
    return mask[pts[:, 1].clip(0, mask.shape[0] - 1), pts[:, 0].clip(0, mask.shape[1] - 1)]


def test_region_masks_cover_the_landmarks_they_claim(landmark_faces):
    lm = landmark_faces[0].landmarks
    for region, idx in GROUPS.items():
        m = face_api.region_mask(landmark_faces, region, dilation=1)[0]
        assert bool((_at(m, lm[idx]) > 0.5).all()), region
        others = [i for r, ii in GROUPS.items() if r != region for i in ii]
        assert float(_at(m, lm[others]).mean()) < 0.15, region  # and not the other regions
    face = face_api.region_mask(landmark_faces, "face", dilation=1)[0]
    assert bool((_at(face, lm) > 0.5).all())
    assert float(face[5, 5]) == 0.0 and float(face[400, 250]) == 0.0  # background and suit stay out
    union = face_api.region_mask(landmark_faces, "eyes+mouth")[0]
    torch.testing.assert_close(union, torch.maximum(face_api.region_mask(landmark_faces, "eyes")[0],
                                                    face_api.region_mask(landmark_faces, "mouth")[0]))
    keep = face_api.region_mask(landmark_faces, ["eyes", "mouth"], mode="keep", dilation=3, feather=3)[0]
    torch.testing.assert_close(keep, 1 - face_api.region_mask(landmark_faces, "eyes+mouth", dilation=3, feather=3)[0])
    assert bool((_at(keep, lm[GROUPS["eyes"]]) < 0.5).all()) and float(keep[5, 5]) == 1.0


def test_region_dilation_and_feather(landmark_faces):
    base = face_api.region_mask(landmark_faces, "mouth")[0]
    grown = face_api.region_mask(landmark_faces, "mouth", dilation=6)[0]
    shrunk = face_api.region_mask(landmark_faces, "mouth", dilation=-2)[0]
    assert shrunk.sum() < base.sum() < grown.sum()
    assert bool((grown >= base).all()) and bool((base >= shrunk).all())
    soft = face_api.region_mask(landmark_faces, "face", feather=8)[0]
    assert ((soft > 0) & (soft < 1)).sum() > 100 and float(soft.max()) > 0.99
    # far from the region the mask is exactly 0
    assert float(soft[:60].abs().max()) == 0.0


def test_five_point_fallback_regions(astronaut):
    faces = faces_of(astronaut, [ASTRONAUT_KPS])
    k = ASTRONAUT_KPS
    assert bool((_at(face_api.region_mask(faces, "eyes")[0], k[:2]) == 1).all())
    assert bool((_at(face_api.region_mask(faces, "mouth")[0], k[3:]) == 1).all())
    assert bool((_at(face_api.region_mask(faces, "nose")[0], k[2:3]) == 1).all())
    assert bool((_at(face_api.region_mask(faces, "face")[0], k) == 1).all())
    assert float(_at(face_api.region_mask(faces, "mouth")[0], k[:2]).max()) == 0.0
    brows = face_api.region_mask(faces, "brows")[0]
    assert float(_at(brows, k[:2] - [0, 14]).min()) == 1.0 and float(_at(brows, k[3:]).max()) == 0.0


def test_crop_coordinate_masks_follow_the_warp(landmark_faces, astronaut):
    crops, info = face_api.crop_faces(astronaut, landmark_faces, 512)
    m = face_api.region_mask(landmark_faces, "eyes", coordinates="crop", crop_info=info, dilation=1)
    assert m.shape == (1, 512, 512)
    fwd = info.forward[0].numpy()
    lm = landmark_faces[0].landmarks
    pts = lm[GROUPS["eyes"]] @ fwd[:2, :2].T + fwd[:2, 2]
    assert bool((_at(m[0], pts) > 0.5).all())
    with pytest.raises(ValueError, match="FACEANON_FACE_CROPS"):
        face_api.region_mask(landmark_faces, "eyes", coordinates="crop")
    with pytest.raises(ValueError, match="unknown face region"):
        face_api.region_mask(landmark_faces, "ears")


def test_paste_with_a_keep_eyes_mask(landmark_faces, astronaut):
    crops, info = face_api.crop_faces(astronaut, landmark_faces, 512)
    # dilation in crop pixels: this crop magnifies the face about 2.9x
    keep_eyes = face_api.region_mask(landmark_faces, "eyes", mode="keep", dilation=12, coordinates="crop",
                                     crop_info=info)
    out, alpha = face_api.paste_faces(astronaut, torch.zeros_like(crops), info, mask=keep_eyes, mask_space="crop",
                                      color_match="none", feather=2)
    lm = landmark_faces[0].landmarks
    for p in lm[GROUPS["eyes"]]:
        x, y = int(round(p[0])), int(round(p[1]))
        assert float((out[0, y, x] - astronaut[0, y, x]).abs().max()) <= TOL  # eyes kept
    x, y = ASTRONAUT_KPS[2].astype(int)
    assert float(out[0, y, x].max()) < 0.01  # rest of the face replaced
    # the same mask in image coordinates gives the same result
    keep_img = face_api.region_mask(landmark_faces, "eyes", mode="keep", dilation=4)
    with pytest.raises(ValueError, match="fits both the crops and the images"):
        face_api.paste_faces(astronaut, torch.zeros_like(crops), info, mask=keep_img)
    out_img, _ = face_api.paste_faces(astronaut, torch.zeros_like(crops), info, mask=keep_img, mask_space="image",
                                      color_match="none", feather=2)
    for p in lm[GROUPS["eyes"]]:
        x, y = int(round(p[0])), int(round(p[1]))
        assert float((out_img[0, y, x] - astronaut[0, y, x]).abs().max()) <= TOL
