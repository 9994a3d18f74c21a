"""Build the shipped example workflows (workflows/*.json, ComfyUI UI format) from compact graph descriptions.

Widget order, sockets, defaults and output slots are read from the real node schemas (a ComfyUI loaded in-process
with this pack), so a changed node input shows up here as an error or as a diff, never as a silently shifted
widget. Run after changing a node or a graph below, and commit the JSON files:

    .venv/bin/python scripts/build_workflows.py             # write workflows/*.json and their .jpg thumbnails
    .venv/bin/python scripts/build_workflows.py --check     # exit 1 if a committed file is out of date
    .venv/bin/python scripts/build_workflows.py --examples  # (re)make example_inputs/ from scikit-image's data

The thumbnails (workflows/<stem>.jpg, the file name ComfyUI's template browser asks for next to a custom node
pack's template) show the example photo the template opens with and the template's title.

Needs a ComfyUI (COMFYUI_PATH or ~/ComfyUI) and its requirements in the running interpreter.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from faceanon.workflow import Graph  # noqa: E402

WORKFLOWS_DIR = REPO_ROOT / "workflows"

# Default model files (the README's model table).
SD15_CKPT = "v1-5-pruned-emaonly.safetensors"
SDXL_CKPT = "sd_xl_base_1.0.safetensors"
SD15_FACEID = "ip-adapter-faceid_sd15.bin"
SDXL_FACEID = "ip-adapter-faceid_sdxl.bin"
FACE_PACK = "buffalo_l"
EMBEDDED_LORA = "embedded (from the adapter file)"
# The example photos the templates open with (example_inputs/, copied into ComfyUI's input folder at load time).
EXAMPLES_DIR = REPO_ROOT / "example_inputs"
PORTRAIT = "faceanon_example_portrait.jpg"
GROUP_PHOTO = "faceanon_example_group.jpg"
VIDEO = "faceanon_example_video.mp4"
REFERENCE_PHOTO = "faceanon_example_reference.jpg"

MODELS_NOTE = """Models (see the README's model table):
- checkpoint: models/checkpoints/{ckpt}
- FaceID adapter: models/ipadapter/{faceid}
- face analysis: models/insightface/models/buffalo_l/ (det_10g.onnx, w600k_r50.onnx, 2d106det.onnx ...)
The insightface and FaceID weights are for non-commercial research use only."""

PRIVACY_NOTE = """Saving: 'Save Image, no metadata' writes plain PNGs. Core Save Image would embed this whole \
workflow, including your photo's file name, in every output file."""


def _loaders(g: Graph, col: int, ckpt: str, faceid: str, image: str):
    ckpt_node = g.node("CheckpointLoaderSimple", col, ckpt_name=ckpt)
    photo = g.node("LoadImage", col, title="Photo to anonymize", image=image)
    analysis = g.node("FaceAnonLoadFaceAnalysis", col, model_pack=FACE_PACK, provider="auto")
    adapter = g.node("FaceAnonLoadIDAdapter", col, adapter=faceid, lora=EMBEDDED_LORA)
    g.group("Models and photo", [ckpt_node, photo, analysis, adapter])
    return ckpt_node, photo, analysis, adapter


def reverse_personalization_sdxl(info: dict) -> dict:
    g = Graph(info)
    g.note(f"""Reverse Personalization on SDXL, with an attribute prompt

Every face of the photo loses its identity (IP-Adapter FaceID with the person's own identity and a NEGATIVE \
guidance scale, after a null-identity inversion), while pose, expression, hair, lighting and background stay. The \
Attribute Prompt says who the new face should look like (age, sex, ethnicity, free text); it replaces the \
unconditional text during sampling only.

1. Put your photo in 'Photo to anonymize'.
2. Set the attributes (all 'any' / 0 = keep them unspecified).
3. Queue. The preset runs the paper's settings (DPM-Solver++ 2M SDE, 100 steps in the last 30% of the schedule, \
cfg -10, 1024 px face crops). Change any knob in 'overrides', e.g. 'steps = 50'. Another seed gives another face.

{MODELS_NOTE.format(ckpt=SDXL_CKPT, faceid=SDXL_FACEID)}

{PRIVACY_NOTE}""", col=0, height=470)
    ckpt, photo, analysis, adapter = _loaders(g, 1, SDXL_CKPT, SDXL_FACEID, PORTRAIT)
    attribute = g.node("FaceAnonAttributePrompt", 2, clip=ckpt["CLIP"], age=35, sex="female", ethnicity="any",
                       text="smiling")
    anon = g.node("FaceAnonymize", 2, image=photo["IMAGE"], model=ckpt["MODEL"], clip=ckpt["CLIP"],
                  vae=ckpt["VAE"], face_analysis=analysis[0], id_adapter=adapter[0],
                  attribute_prompt=attribute["attribute_prompt"], preset="Reverse Personalization (SDXL)", seed=0,
                  keep="nothing", if_no_face="error", overrides="")
    g.group("Anonymize", [attribute, anon], color="#3f5f3f")
    save = g.node("FaceAnonSaveImage", 3, images=anon["image"], filename_prefix="faceanon/reverse_personalization")
    g.group("Save (no metadata)", [save], color="#5f3f5f")
    return g.to_ui()


def nullface_sd15_keep_eyes_mouth(info: dict) -> dict:
    g = Graph(info)
    g.note(f"""NullFace on SD1.5, keeping the eyes and the mouth

Localized anonymization: the face's identity is removed (negated FaceID identity, guidance +10, after a \
null-identity DDPM inversion), but the person's real eyes and mouth are kept pixel for pixel, so gaze and \
expression stay exactly as in the photo. Choose other regions to keep in 'keep' (or 'nothing' for the whole face).

1. Put your photo in 'Photo to anonymize'.
2. Queue. The preset runs the paper's settings (30 DDPM steps in the last 30% of the schedule, face mask after 10 \
steps, 512 px face crops); 'overrides' changes any of them, e.g. 'identity_scale = -1.5'.

Keeping the eyes and mouth keeps more of the person: check the result with the privacy-check workflow.

{MODELS_NOTE.format(ckpt=SD15_CKPT, faceid=SD15_FACEID)}

{PRIVACY_NOTE}""", col=0, height=450)
    ckpt, photo, analysis, adapter = _loaders(g, 1, SD15_CKPT, SD15_FACEID, PORTRAIT)
    anon = g.node("FaceAnonymize", 2, image=photo["IMAGE"], model=ckpt["MODEL"], clip=ckpt["CLIP"],
                  vae=ckpt["VAE"], face_analysis=analysis[0], id_adapter=adapter[0], preset="NullFace (SD1.5)",
                  seed=0, keep="eyes + mouth", if_no_face="error", overrides="")
    g.group("Anonymize", [anon], color="#3f5f3f")
    save = g.node("FaceAnonSaveImage", 3, images=anon["image"], filename_prefix="faceanon/nullface")
    g.group("Save (no metadata)", [save], color="#5f3f5f")
    return g.to_ui()


def group_photo(info: dict) -> dict:
    g = Graph(info)
    g.note(f"""A group photo: every face anonymized, with the detection preview and the report

'Detect Faces' shows what the detector found (numbered boxes; an image without any face gets a red frame) and \
its report; 'Anonymize Faces' detects again with the same threshold and minimum face size and anonymizes every \
face, each with its own seed. Its report (also shown under the node after a run) lists every face. A photo in \
which no face is found stops the run; set if_no_face to 'flag and pass through' to let it through instead, \
flagged NOT anonymized in red - never silently.

Tips: small faces in a big photo: lower min_face_size (in both nodes). Missed faces: lower threshold (in both). \
Faces you do not want changed cannot be skipped here: use the modular workflow for that.

{MODELS_NOTE.format(ckpt=SD15_CKPT, faceid=SD15_FACEID)}

The detection preview shows the ORIGINAL photo: it is only a temporary preview (no metadata), never saved to output.

{PRIVACY_NOTE}""", col=0, height=520)
    ckpt, photo, analysis, adapter = _loaders(g, 1, SD15_CKPT, SD15_FACEID, GROUP_PHOTO)
    detect = g.node("FaceAnonDetectFaces", 2, face_analysis=analysis[0], image=photo["IMAGE"],
                    if_no_face="flag and pass through")
    preview = g.node("FaceAnonPreviewImage", 2, title="Detection preview (original, not saved)",
                     images=detect["preview"])
    detect_report = g.node("PreviewAny", 2, title="Detection report", source=detect["report"])
    g.group("What the detector finds", [detect, preview, detect_report], color="#5f5f3f")
    anon = g.node("FaceAnonymize", 3, image=photo["IMAGE"], model=ckpt["MODEL"], clip=ckpt["CLIP"],
                  vae=ckpt["VAE"], face_analysis=analysis[0], id_adapter=adapter[0], preset="NullFace (SD1.5)",
                  seed=0, keep="nothing", if_no_face="error", overrides="")
    report = g.node("PreviewAny", 3, title="Anonymization report", source=anon["report"])
    g.group("Anonymize every face", [anon, report], color="#3f5f3f")
    save = g.node("FaceAnonSaveImage", 4, images=anon["image"], filename_prefix="faceanon/group")
    g.group("Save (no metadata)", [save], color="#5f3f5f")
    return g.to_ui()


def _crop_and_invert(g: Graph, col: int, ckpt, photo, analysis, adapter, size: int, solver: str, steps: int,
                     inversion_cfg: float, zero_negative: bool, final_step: str = "drop residual (anonymize)"):
    detect = g.node("FaceAnonDetectFaces", col, face_analysis=analysis[0], image=photo["IMAGE"])
    crop = g.node("FaceAnonCropFaces", col, image=photo["IMAGE"], faces=detect["faces"], size=size)
    # one identity per face (every face of the photo is anonymized, each away from its own identity)
    identity = g.node("FaceAnonFaceIdentity", col, faces=detect["faces"], select="all", combine="batch")
    g.group("1. Find and crop the faces", [detect, crop, identity], color="#5f5f3f")
    encode = g.node("VAEEncode", col + 1, pixels=crop["crops"], vae=ckpt["VAE"])
    patched = g.node("FaceAnonApplyIDAdapter", col + 1, model=ckpt["MODEL"], id_adapter=adapter[0])
    text = g.node("CLIPTextEncode", col + 1, title="Empty prompt", text="", clip=ckpt["CLIP"])
    negative = g.node("ConditioningZeroOut", col + 1, conditioning=text[0]) if zero_negative else text
    invert = g.node("FaceAnonInvert", col + 1, model=patched[0], positive=text[0], negative=negative[0],
                    latent_image=encode[0], solver=solver, steps=steps, skip=0.7, eta=1.0, cfg=inversion_cfg,
                    seed=0)
    noise = g.node("FaceAnonInversionNoise", col + 1, inversion=invert[0])
    sampler = g.node("FaceAnonReplaySampler", col + 1, inversion=invert[0], final_step=final_step)
    sigmas = g.node("FaceAnonInversionSigmas", col + 1, inversion=invert[0])
    members = [encode, patched, text, invert, noise, sampler, sigmas] + ([negative] if zero_negative else [])
    g.group("2. Invert once (null identity)", members, color="#3f5f5f")
    return detect, crop, identity, encode, patched, text, negative, noise, sampler, sigmas


def attribute_variants_sdxl(info: dict) -> dict:
    g = Graph(info)
    g.note(f"""Invert once, then several attribute variants side by side

The expensive part, the inversion of the faces (100 model evaluations with these settings), runs ONCE; each \
variant only samples again with its own Attribute Prompt (Reverse Personalization: the person's identity with a \
negative guidance scale, the attribute prompt as the unconditional text). ComfyUI caches the inversion: change an \
attribute and queue again, and only that variant is recomputed.

To add a variant: copy one Attribute Prompt -> Identity Guider -> SamplerCustomAdvanced -> VAE Decode -> Paste \
Faces row and stitch its image to the others.

Every face of the photo is anonymized in every variant, each face away from its own identity. The result strip \
shows the anonymized photo three times (the original is not included).

{MODELS_NOTE.format(ckpt=SDXL_CKPT, faceid=SDXL_FACEID)}

{PRIVACY_NOTE}""", col=0, height=470)
    ckpt, photo, analysis, adapter = _loaders(g, 1, SDXL_CKPT, SDXL_FACEID, PORTRAIT)
    detect, crop, identity, encode, patched, text, negative, noise, sampler, sigmas = _crop_and_invert(
        g, 2, ckpt, photo, analysis, adapter, size=1024, solver="dpmpp_2m_sde", steps=100, inversion_cfg=-10.0,
        zero_negative=True, final_step="keep residual (exact reconstruction)")  # RP keeps its last noise map
    variants = []
    attributes = [dict(age=25, sex="female", ethnicity="any", text=""),
                  dict(age=60, sex="male", ethnicity="any", text="grey beard"),
                  dict(age=40, sex="any", ethnicity="east asian", text="")]
    for k, attrs in enumerate(attributes):
        col = 4 + k
        prompt = g.node("FaceAnonAttributePrompt", col, title=f"Variant {k + 1}: attributes", clip=ckpt["CLIP"],
                        **attrs)
        guider = g.node("FaceAnonIdentityGuider", col, model=patched[0], positive=text[0], negative=negative[0],
                        identity=identity["identity"], attribute_prompt=prompt["attribute_prompt"],
                        identity_scale=1.0, cfg=-10.0, mask_delay=0, mask_feather=0.0)
        sample = g.node("SamplerCustomAdvanced", col, noise=noise[0], guider=guider[0], sampler=sampler[0],
                        sigmas=sigmas[0], latent_image=encode[0])
        decode = g.node("VAEDecode", col, samples=sample[0], vae=ckpt["VAE"])
        paste = g.node("FaceAnonPasteFaces", col, image=photo["IMAGE"], crops=decode[0],
                       face_crops=crop["face_crops"])
        g.group(f"3. Variant {k + 1}", [prompt, guider, sample, decode, paste], color="#3f5f3f")
        variants.append(paste)
    first = g.node("ImageStitch", 7, image1=variants[0]["image"], image2=variants[1]["image"], direction="right",
                   spacing_width=16)
    both = g.node("ImageStitch", 7, image1=first[0], image2=variants[2]["image"], direction="right",
                  spacing_width=16)
    save = g.node("FaceAnonSaveImage", 7, images=both[0], filename_prefix="faceanon/variants")
    g.group("4. Side by side, saved without metadata", [first, both, save], color="#5f3f5f")
    return g.to_ui()


def modular_nullface_sd15(info: dict) -> dict:
    g = Graph(info)
    g.note(f"""The modular graph (NullFace on SD1.5), one block per step

What 'Anonymize Faces' does inside, as separate nodes, for people who want to change one block:
1. Detect Faces -> Crop Faces (aligned 512 px crops, one per face) and Face Identity (one ArcFace embedding per \
face: select all, combine batch).
2. VAE Encode -> Apply ID Adapter -> Invert Latent: the null-identity DDPM inversion (30 steps in the last 30% of \
the schedule), whose start noise, per-step noise maps and sigmas feed SamplerCustomAdvanced through Inversion \
Noise, Replay Sampler and Inversion Sigmas. Wire the SAME latent into Invert Latent and SamplerCustomAdvanced.
3. Identity Guider: guidance +10 away from the negated identity (identity_scale -1), gated by the face mask (Face \
Region Mask in crop coordinates) after 10 steps.
4. VAE Decode -> Paste Faces back into the photo (feathered face-shaped mask, colour matched).

Try another sampler-side block (a different guider, more steps) without redoing the inversion: ComfyUI caches it.

{MODELS_NOTE.format(ckpt=SD15_CKPT, faceid=SD15_FACEID)}

{PRIVACY_NOTE}""", col=0, height=560)
    ckpt, photo, analysis, adapter = _loaders(g, 1, SD15_CKPT, SD15_FACEID, PORTRAIT)
    detect, crop, identity, encode, patched, text, negative, noise, sampler, sigmas = _crop_and_invert(
        g, 2, ckpt, photo, analysis, adapter, size=512, solver="ddpm", steps=30, inversion_cfg=1.0,
        zero_negative=False)
    mask = g.node("FaceAnonRegionMask", 4, faces=detect["faces"], face_crops=crop["face_crops"], face=True,
                  eyes=False, mode="anonymize", dilation=0, feather=0.0, coordinates="crop")
    guider = g.node("FaceAnonIdentityGuider", 4, model=patched[0], positive=text[0], negative=text[0],
                    identity=identity["identity"], mask=mask[0], identity_scale=-1.0, cfg=10.0, mask_delay=10,
                    mask_feather=0.0)
    sample = g.node("SamplerCustomAdvanced", 4, noise=noise[0], guider=guider[0], sampler=sampler[0],
                    sigmas=sigmas[0], latent_image=encode[0])
    g.group("3. Sample away from the identity", [mask, guider, sample], color="#3f5f3f")
    decode = g.node("VAEDecode", 5, samples=sample[0], vae=ckpt["VAE"])
    paste = g.node("FaceAnonPasteFaces", 5, image=photo["IMAGE"], crops=decode[0], face_crops=crop["face_crops"])
    save = g.node("FaceAnonSaveImage", 5, images=paste["image"], filename_prefix="faceanon/modular")
    g.group("4. Paste back, save without metadata", [decode, paste, save], color="#5f3f5f")
    return g.to_ui()


def privacy_check(info: dict) -> dict:
    g = Graph(info)
    g.note(f"""The privacy check after anonymization

'Verify Anonymization' compares every face of the original with the anonymized image at the same place, with the \
ArcFace recognizer of the face analysis pack. A face FAILS when the similarity is at or above the threshold (0.25 \
by default: below common face-verification operating points) or when no face is found there any more. Here a \
failing face is blurred before saving ('on_failure'); 'stop with error' saves nothing instead, 'report only' just \
reports.

The report (below, and on the node after a run) gives each face's similarity. Passing means this recognizer no \
longer matches the face; it does not prove that nobody could recognise the person (hair, clothes, context). See \
the README's privacy section.

{MODELS_NOTE.format(ckpt=SD15_CKPT, faceid=SD15_FACEID)}

{PRIVACY_NOTE}""", col=0, height=500)
    ckpt, photo, analysis, adapter = _loaders(g, 1, SD15_CKPT, SD15_FACEID, PORTRAIT)
    anon = g.node("FaceAnonymize", 2, image=photo["IMAGE"], model=ckpt["MODEL"], clip=ckpt["CLIP"],
                  vae=ckpt["VAE"], face_analysis=analysis[0], id_adapter=adapter[0], preset="NullFace (SD1.5)",
                  seed=0, keep="nothing", if_no_face="error", overrides="")
    g.group("Anonymize", [anon], color="#3f5f3f")
    verify = g.node("FaceAnonVerify", 3, face_analysis=analysis[0], original=photo["IMAGE"],
                    anonymized=anon["image"], on_failure="blur failing faces")
    report = g.node("PreviewAny", 3, title="Identity check report", source=verify["report"])
    g.group("Check: is anyone still recognisable?", [verify, report], color="#5f5f3f")
    save = g.node("FaceAnonSaveImage", 4, images=verify["image"], filename_prefix="faceanon/checked")
    g.group("Save (no metadata)", [save], color="#5f3f5f")
    return g.to_ui()


VIDEO_NOTE = """Saving: 'Save Video, no metadata' writes an MP4 (H.264 + AAC) with no tags. Core Save Video would \
write this whole workflow, with your video's file name, into the file, and copy the source file's own tags (title, \
author...)."""


def _video(g: Graph, info_text: str, keep_references: bool) -> dict:
    g.note(info_text, col=0, height=600)
    ckpt = g.node("CheckpointLoaderSimple", 1, ckpt_name=SD15_CKPT)
    video = g.node("LoadVideo", 1, title="Video to anonymize", file=VIDEO)
    analysis = g.node("FaceAnonLoadFaceAnalysis", 1, model_pack=FACE_PACK, provider="auto")
    adapter = g.node("FaceAnonLoadIDAdapter", 1, adapter=SD15_FACEID, lora=EMBEDDED_LORA)
    g.group("Models and video", [ckpt, video, analysis, adapter])
    parts = g.node("GetVideoComponents", 2, video=video["VIDEO"])
    tracks = g.node("FaceAnonTrackFaces", 2, face_analysis=analysis[0], image=parts["images"])
    track_report = g.node("PreviewAny", 2, title="Tracks (who is where, frame by frame)", source=tracks["report"])
    g.group("Frames, audio, frame rate; one track per person", [parts, tracks, track_report], color="#5f5f3f")
    extra = {}
    people = []
    if keep_references:
        photos = g.node("LoadImage", 3, title="Photos of the people to KEEP", image=REFERENCE_PHOTO)
        refs = g.node("FaceAnonReferenceFaces", 3, face_analysis=analysis[0], image=photos["IMAGE"])
        people = [photos, refs]
        extra = {"references": refs["references"], "policy": "everyone except the reference people"}
    anon = g.node("FaceAnonAnonymizePeople", 4 if keep_references else 3, image=parts["images"],
                  model=ckpt["MODEL"], clip=ckpt["CLIP"], vae=ckpt["VAE"], face_analysis=analysis[0],
                  id_adapter=adapter[0], tracks=tracks["tracks"], preset="NullFace (SD1.5)", seed=0, keep="nothing",
                  if_no_face="error", overrides="", fallback="stop", **extra)
    report = g.node("PreviewAny", anon.column, title="Anonymization report",
                    source=anon["report"])
    if people:
        g.group("Reference people (kept as they are)", people, color="#3f5f5f")
    g.group("One stand-in per person", [anon, report], color="#3f5f3f")
    col = 5 if keep_references else 4
    create = g.node("CreateVideo", col, images=anon["image"], fps=parts["fps"], audio=parts["audio"])
    save = g.node("FaceAnonSaveVideo", col, video=create["VIDEO"],
                  filename_prefix="faceanon/keep_references" if keep_references else "faceanon/video")
    g.group("Original audio and frame rate; save without metadata", [create, save], color="#5f3f5f")
    return g.to_ui()


def video_sd15(info: dict) -> dict:
    return _video(Graph(info), f"""Anonymize a video, with its sound

Core 'Load Video' -> 'Get Video Components' gives the frames, the audio and the frame rate. 'Track Faces' follows \
every person through the clip (one track per person and shot: scene cuts end tracks; frames where the detector \
missed a face inside a track are filled in; boxes are smoothed). 'Anonymize People' gives every track ONE \
stand-in (the track's seed and identity), so the invented person does not change from frame to frame, and returns \
the same frames in order. 'Create Video' puts the original audio and frame rate back.

Reports: 'Tracks' lists, per person, the frames where they were seen, interpolated or LOST (a face lost for \
longer than max_gap frames: check those frames). 'Anonymization report' lists, per track, its seed and the frames \
anonymized. A face that cannot be anonymized stops the run (fallback 'stop'); 'blur' blurs it instead, never \
passes it through.

Long clips: chunk_frames bounds memory (frames anonymized at a time). Each face costs one inversion and one \
sampling: start with a few seconds of video. Faster tracking: detect_every 2-5.

{MODELS_NOTE.format(ckpt=SD15_CKPT, faceid=SD15_FACEID)}

{VIDEO_NOTE}""", keep_references=False)


def video_keep_reference_people_sd15(info: dict) -> dict:
    return _video(Graph(info), f"""Keep the people in these photos, anonymize everyone else (video)

'Reference Faces' turns photos of the people who agreed to be filmed (one person per photo; load several as a \
batch) into identities. 'Anonymize People' with policy 'everyone except the reference people' compares every track \
with them by a vote over the track's frames: a track that matches one reference person in at least min_votes of \
its frames (ArcFace similarity >= match_threshold, 0.4 by default) keeps its face, bit for bit; every other track \
is anonymized, including tracks that match only in a few frames (undecided = anonymized: it fails closed). The \
report gives each track's vote.

The other policy, 'only the reference people', anonymizes just the people in the photos.

{MODELS_NOTE.format(ckpt=SD15_CKPT, faceid=SD15_FACEID)}

{VIDEO_NOTE}""", keep_references=True)


# file stem -> (builder, the base model family it is for)
WORKFLOWS = {
    "faceanon_reverse_personalization_sdxl": (reverse_personalization_sdxl, "sdxl"),
    "faceanon_nullface_sd15_keep_eyes_mouth": (nullface_sd15_keep_eyes_mouth, "sd15"),
    "faceanon_group_photo_sd15": (group_photo, "sd15"),
    "faceanon_attribute_variants_sdxl": (attribute_variants_sdxl, "sdxl"),
    "faceanon_modular_nullface_sd15": (modular_nullface_sd15, "sd15"),
    "faceanon_privacy_check_sd15": (privacy_check, "sd15"),
    "faceanon_video_sd15": (video_sd15, "sd15"),
    "faceanon_video_keep_reference_people_sd15": (video_keep_reference_people_sd15, "sd15"),
}

# file stem -> the thumbnail's title
TITLES = {
    "faceanon_reverse_personalization_sdxl": "Reverse Personalization (SDXL) + attribute prompt",
    "faceanon_nullface_sd15_keep_eyes_mouth": "NullFace (SD1.5), real eyes and mouth kept",
    "faceanon_group_photo_sd15": "Group photo: detection preview, every face anonymized",
    "faceanon_attribute_variants_sdxl": "Invert once, three attribute variants (SDXL)",
    "faceanon_modular_nullface_sd15": "The modular graph (NullFace, SD1.5)",
    "faceanon_privacy_check_sd15": "Anonymize, then verify with ArcFace",
    "faceanon_video_sd15": "A video: every tracked person anonymized, sound kept",
    "faceanon_video_keep_reference_people_sd15": "A video: keep the people in the photos, anonymize the rest",
}
THUMBNAIL_SIZE = (512, 512)

# The inputs whose values are file names (checked against the default names, not against installed files).
FILE_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): {SD15_CKPT, SDXL_CKPT},
    ("FaceAnonLoadIDAdapter", "adapter"): {SD15_FACEID, SDXL_FACEID},
    ("FaceAnonLoadFaceAnalysis", "model_pack"): {FACE_PACK},
    ("LoadImage", "image"): {PORTRAIT, GROUP_PHOTO, REFERENCE_PHOTO},
    ("LoadVideo", "file"): {VIDEO},
}


def make_examples() -> None:
    """example_inputs/ from scikit-image's data files (sources and licences: example_inputs/SOURCES.md)."""
    from PIL import Image
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    camera = Image.fromarray(data.camera()).convert("RGB")
    EXAMPLES_DIR.mkdir(exist_ok=True)
    astronaut.save(EXAMPLES_DIR / PORTRAIT, quality=90, optimize=True)
    group = Image.new("RGB", (1024, 512))
    group.paste(astronaut, (0, 0))
    group.paste(camera, (512, 0))
    group.save(EXAMPLES_DIR / GROUP_PHOTO, quality=90, optimize=True)
    # the reference photo of the person to keep: another framing of the astronaut (her head and shoulders)
    astronaut.crop((96, 0, 352, 256)).save(EXAMPLES_DIR / REFERENCE_PHOTO, quality=90, optimize=True)
    # the video: 3 s at 8 fps, a slow pan and zoom over the group photo (no sound)
    import av
    import numpy as np

    with av.open(str(EXAMPLES_DIR / VIDEO), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=8, options={"crf": "28", "preset": "veryslow"})
        stream.width, stream.height, stream.pix_fmt = 512, 256, "yuv420p"
        for i in range(24):
            t = i / 23
            w = round(1024 - 128 * t)
            x = round((1024 - w) * t)
            frame = group.crop((x, 0, x + w, w // 2)).resize((512, 256), Image.LANCZOS)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")))
        container.mux(stream.encode())


def thumbnail(workflow: dict, title: str):
    """The template's thumbnail: the example photo it opens with, and its title underneath (a PIL image)."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    types = [n["type"] for n in workflow["nodes"]]
    photo_name = GROUP_PHOTO if "LoadVideo" in types else next(  # a video's frames come from the group photo
        n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "LoadImage")
    width, height = THUMBNAIL_SIZE
    band = 112
    canvas = Image.new("RGB", THUMBNAIL_SIZE, "#1d3a42")  # the pack's node colour (js/faceanon.js)
    with Image.open(EXAMPLES_DIR / photo_name) as photo:
        canvas.paste(ImageOps.fit(photo.convert("RGB"), (width, height - band)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=30)
    lines, line = [], ""
    for word in title.split():
        if line and draw.textlength(f"{line} {word}", font=font) > width - 32:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for i, text in enumerate(lines[:3]):
        draw.text((16, height - band + 12 + 34 * i), text, fill="#ffffff", font=font)
    return canvas


def build_all(info: dict) -> dict[str, dict]:
    return {stem: builder(info) for stem, (builder, _) in WORKFLOWS.items()}


def dumps(workflow: dict) -> str:
    return json.dumps(workflow, indent=1, ensure_ascii=False) + "\n"


def host_object_info(workdir: Path) -> dict:
    """/object_info of a ComfyUI loaded in-process with this pack (dev/host.py), folders in `workdir`."""
    from dev.host import ComfyHost, find_host, missing_host_requirements
    from faceanon.workflow import object_info

    path, why = find_host()
    if path is None:
        raise SystemExit(why)
    missing = missing_host_requirements()
    if missing:
        raise SystemExit(f"this interpreter lacks ComfyUI's requirement {missing}")
    host = ComfyHost(path, workdir)
    return object_info(host.nodes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    parser.add_argument("--examples", action="store_true", help="also remake example_inputs/ from scikit-image")
    args = parser.parse_args(argv)
    if args.examples and not args.check:
        make_examples()
    with tempfile.TemporaryDirectory(prefix="faceanon_build_") as tmp:
        built = build_all(host_object_info(Path(tmp)))
    stale = []
    for stem, workflow in built.items():
        path = WORKFLOWS_DIR / f"{stem}.json"
        text = dumps(workflow)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
            if not path.with_suffix(".jpg").is_file():
                stale.append(path.with_suffix(".jpg").name)
        else:
            path.write_text(text)
            thumbnail(workflow, TITLES[stem]).save(path.with_suffix(".jpg"), quality=85, optimize=True)
            print(f"wrote {path.relative_to(REPO_ROOT)} and its .jpg thumbnail")  # noqa: T201 - a command-line tool
    if stale:
        print("out of date (run scripts/build_workflows.py): " + ", ".join(stale))  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
