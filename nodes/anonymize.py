"""FaceAnonymize: the whole method in one box, for every face of every image.

For every face: aligned crop -> VAE encode -> null-identity inversion (once) -> replay with the identity guider
(own seed, own identity) -> VAE decode -> restore the pixels outside the anonymized region -> paste back with a
feathered face-shaped mask. The faces of one call (one image, a batch of images) go through these steps together,
in chunks that fit the free memory: one UNet call per step carries every face's guidance branches. Never fails
open: an image without a face either stops the run or is passed through *flagged* in the report and the UI; a face
that cannot be processed stops the run.
"""

from __future__ import annotations

import hashlib
import logging

import comfy.utils
import numpy as np
import torch

from ..faceanon import faces as F
from ..faceanon.branches import branch_plan
from ..faceanon.guidance import restore_outside
from ..faceanon.presets import PRESETS, apply_overrides, describe, guidance_warning
from ..faceanon.verify import analysis_embedder
from .faces import IF_NO_FACE, progress_callback, ui_payload
from .guidance import IdentityGuider, encode_prompt, identity_guider, zero_out
from .id_adapter import apply_id_adapter
from .inversion import InversionNoise, invert_latent, replay_sampler, rows_per_call
from .knobs import knob_input
from .types import FaceAnalysis, IDAdapter, io

logger = logging.getLogger(__name__)

KEEP_CHOICES = {
    "nothing": (),
    "eyes": ("eyes",),
    "mouth": ("mouth",),
    "eyes + mouth": ("eyes", "mouth"),
    "eyes + nose + mouth": ("eyes", "nose", "mouth"),
    "nose": ("nose",),
    "eyes + brows": ("eyes", "brows"),
}


def face_seed(seed: int, face_number: int) -> int:
    """A distinct, reproducible 64-bit seed per face, derived from one seed."""
    digest = hashlib.sha256(f"faceanon:{seed}:{face_number}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0xFFFFFFFFFFFFFFFF


def gate_masks(faces, crop_info, settings, keep: tuple[str, ...]) -> torch.Tensor | None:
    """[N, S, S] masks in crop coordinates of where the identity may change (1 = change), or None (whole crop)."""
    if not keep and not settings.gate_face:
        return None
    face = F.region_mask(faces, "face", mode="anonymize", coordinates="crop", crop_info=crop_info)
    if not keep:
        return face
    kept = F.region_mask(faces, "+".join(keep), mode="keep", coordinates="crop", crop_info=crop_info)
    return face * kept


def conditioning_rows(conditioning, rows: list[int], total: int):
    """The rows of a CONDITIONING that belong to faces `rows` of `total`: a conditioning of batch 1 is shared by
    every face; one of batch `total` holds one row per face (its own attribute prompt)."""
    if conditioning is None:
        return None
    out = []
    for tensor, options in conditioning:
        if tensor.shape[0] == 1:
            out.append([tensor, options])
            continue
        if tensor.shape[0] != total:
            raise ValueError(f"the attribute prompt has a batch of {tensor.shape[0]} but {total} faces were found: "
                             f"give one prompt (shared by every face) or one per face, in face order")
        options = dict(options)
        pooled = options.get("pooled_output")
        if pooled is not None and pooled.shape[0] == total:
            options["pooled_output"] = pooled[rows]
        out.append([tensor[rows], options])
    return out


def sampling_branches(model, positive, negative, attribute, gated: bool) -> int:
    """UNet branches per sampling step of the identity guider with these texts (its own `branch_plan`)."""
    guider = IdentityGuider(model)
    guider.set_conds(positive, negative, attribute)
    return len(branch_plan(gated, *guider.free_flags).branches)


def faces_per_call(model, settings, branches: int) -> int:
    """Faces whose sampling branches (`branches` each) fit one UNet call in the free memory, or the setting when it
    is not 0 (1 = face by face)."""
    if settings.faces_per_call:
        return settings.faces_per_call
    side = settings.resolution // 8
    return max(1, rows_per_call(model, [4, side, side]) // branches)


def sample_faces(model, vae, crops, embeddings, seeds, settings, positive, negative, attribute=None, masks=None):
    """Invert and sample a batch of aligned face crops together, each with its own identity, seed, noise maps and
    mask: one UNet call per sampling step carries every face's branches. Returns the decoded crops [n, S, S, 3]
    with the pixels outside each mask restored. The same, within float rounding, as calling it face by face."""
    crops = crops[..., :3]
    latent = {"samples": vae.encode(crops)}
    inverted = invert_latent(model, positive, negative, latent, settings.solver, settings.steps, settings.skip,
                             settings.eta, settings.inversion_cfg, seeds[0], seeds=seeds,
                             steps_per_call=settings.steps_per_call)
    guider = identity_guider(model, positive, negative, embeddings, settings.identity_scale, settings.cfg, attribute,
                             masks, settings.mask_delay, settings.mask_feather, inversion=inverted)
    noise = InversionNoise(inverted).generate_noise(latent)
    sampled = guider.sample(noise, latent["samples"], replay_sampler(inverted, settings.keep_final_residual),
                            inverted.core.sigmas, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seeds[0])
    decoded = vae.decode(sampled)[..., :3].to(crops.device, crops.dtype)
    if decoded.shape != crops.shape:
        decoded = torch.nn.functional.interpolate(decoded.movedim(-1, 1), size=crops.shape[1:3],
                                                  mode="bilinear").movedim(1, -1)
    if masks is not None:
        decoded = restore_outside(crops, decoded, masks, feather=settings.resolution / 128)
    return decoded


def sample_all(model, vae, crops, embeddings, seeds, settings, positive, negative, attribute=None, masks=None,
               tick=None):
    """`sample_faces` over every face, in chunks of `faces_per_call` faces; `tick(done, total)` between chunks."""
    n = crops.shape[0]
    chunk = faces_per_call(model, settings, sampling_branches(model, positive, negative, attribute, masks is not None))
    logger.debug("FaceAnon: %d face(s), %d per UNet call", n, chunk)
    outputs = []
    for start in range(0, n, chunk):
        if tick is not None:
            tick(start, n)
        rows = list(range(start, min(start + chunk, n)))
        outputs.append(sample_faces(model, vae, crops[rows], embeddings[rows], [seeds[k] for k in rows], settings,
                                    positive, negative, conditioning_rows(attribute, rows, n),
                                    None if masks is None else masks[rows]))
    if tick is not None:
        tick(n, n)
    return torch.cat(outputs)


def anonymize(images, settings, *, model, clip, vae, analysis, adapter, seed: int = 0, attribute=None, keep=(),
              threshold: float = 0.5, min_face_size: float = 24, if_no_face: F.IfNoFace = F.IfNoFace.ERROR,
              color_match: str = "mean", faces=None, face_seeds=None, identities=None):
    """Anonymize every face of `images` with `settings` (a `faceanon.presets.Settings`).

    The faces of every image are sampled together in chunks of ``settings.faces_per_call`` (0: as many as fit in
    the free memory), each with its own seed ``face_seed(seed, k)``, identity, noise maps and mask; the result equals
    face-by-face processing (``faces_per_call = 1``) within float rounding.

    `faces` (already detected, e.g. a chunk of tracked faces) skips detection; `face_seeds` and `identities` (one
    per face: a seed, a [512] normalised embedding) replace the per-face seed and the face's own embedding (video:
    every face of a track uses the track's seed and identity).

    Returns:
        `(images, changed mask [B, H, W], report dict)`.
    """
    if faces is None:
        faces = F.detect(analysis, images, threshold=threshold, min_face_size=min_face_size, if_no_face=if_no_face)
    report = {"settings": describe(settings).splitlines(), "faces": [], "not_anonymized_images": list(faces.missing),
              "notes": list(faces.notes), "warnings": []}
    mismatch = guidance_warning(settings)
    if mismatch:
        logger.warning("FaceAnonymize: %s", mismatch)
        report["warnings"].append(mismatch)
    if len(faces) == 0:
        return images.clone(), torch.zeros(images.shape[:3]), report
    for k, face in enumerate(faces):
        if face.embedding is None and identities is None:
            raise ValueError(f"face {k} (image {face.image_index}) has no ArcFace embedding: the face analysis pack "
                             f"{faces.model!r} has no recognizer, so it cannot be anonymized")
    crops, info = F.crop_faces(images, faces, size=settings.resolution, margin=settings.margin)
    masks = gate_masks(faces, info, settings, keep)
    patched = apply_id_adapter(model, adapter, weight=settings.adapter_weight, lora_strength=settings.lora_strength)
    positive = encode_prompt(clip, "", zero_if_empty=False)
    negative = zero_out(positive) if settings.zero_negative else positive
    n = len(faces)
    seeds = [face_seed(seed, k) for k in range(n)] if face_seeds is None else [int(s) for s in face_seeds]
    embeddings = torch.from_numpy(np.stack([face.embedding for face in faces] if identities is None else
                                           [np.asarray(e, np.float32) for e in identities]))
    # the progress callback also honours Cancel between chunks of faces
    decoded = sample_all(patched, vae, crops, embeddings, seeds, settings, positive, negative, attribute, masks,
                         tick=progress_callback(n))
    for k, face in enumerate(faces):
        report["faces"].append({"face": k, "image": face.image_index, "box": [round(float(v), 1) for v in face.box],
                                "score": round(float(face.score), 3), "seed": seeds[k], "anonymized": True})
    pasted, changed = F.paste_faces(images, decoded, info, mask=masks, mask_space="crop",
                                    feather=max(2.0, settings.resolution / 32), color_match=color_match)
    if keep:
        # kept regions are the photo's own pixels, bit for bit (the paste's feather must not reach into them)
        kept = F.region_mask(faces, "+".join(keep), mode="anonymize", coordinates="image", device=pasted.device)
        pasted = torch.where(kept[..., None] > 0, images.to(pasted.dtype), pasted)
        changed = changed * (kept <= 0)
    # Cheap check (one ArcFace call per face): similarity of the original embedding with the result, aligned on the
    # original's keypoints. FaceAnonVerify is the full check (second alignment, thresholds, actions).
    embed = analysis_embedder(analysis)
    for entry, face in zip(report["faces"], faces, strict=True):
        if face.embedding is None:  # an interpolated video face: no detection to compare with
            continue
        after = embed(pasted[face.image_index], face.kps[None])[0]
        entry["identity_similarity"] = round(float(np.dot(face.embedding, after)), 4)
    return pasted, changed, report


def format_report(report: dict) -> str:
    lines = [f"FaceAnon: {len(report['faces'])} face(s) anonymized"]
    for f in report["faces"]:
        lines.append(f"  face {f['face']} (image {f['image']}, box {f['box']}, seed {f['seed']}): anonymized, "
                     f"ArcFace similarity to the original {f.get('identity_similarity', 'n/a')}")
    for i in report["not_anonymized_images"]:
        lines.append(f"  WARNING: image {i}: no face found, NOT anonymized (passed through)")
    lines += [f"  WARNING: {w}" for w in report.get("warnings", ())]
    return "\n".join(lines)


class FaceAnonymize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonymize",
            display_name="Anonymize Faces (FaceAnon)",
            category="FaceAnon/anonymize",
            description=(
                "Removes the identity of every face while keeping pose, expression, gaze, hair, lighting and "
                "background: detect -> align/crop -> invert with the null identity -> sample away from the "
                "person's identity (FaceID) -> paste back. Each face gets its own seed. Pick the preset of your "
                "model family; any value can be overridden. Images without a face stop the run or are passed "
                "through flagged NOT anonymized (never silently)."),
            inputs=[
                io.Image.Input("image"),
                io.Model.Input("model", tooltip="An SD1.5 or SDXL checkpoint's MODEL (matching the FaceID file)."),
                io.Clip.Input("clip"),
                io.Vae.Input("vae"),
                FaceAnalysis.Input("face_analysis"),
                IDAdapter.Input("id_adapter"),
                io.Combo.Input("preset", options=list(PRESETS), default="NullFace (SD1.5)",
                               tooltip="NullFace: SD1.5, the last 30 of 100 DDPM steps, negated identity, cfg +10, "
                                       "face mask after 10 steps. Reverse Personalization: SDXL, 100 DPM-Solver++ "
                                       "steps, positive identity, one cfg -10 for inversion and sampling, attribute "
                                       "prompt. Both replay their reference pipeline's timesteps and last step."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Each face's seed is derived from this one (face number k -> its own seed)."),
                io.Combo.Input("keep", options=list(KEEP_CHOICES), default="nothing",
                               tooltip="Face regions kept as in the photo (the real eyes / mouth...); the rest of "
                                       "the face is anonymized."),
                io.Combo.Input("if_no_face", options=list(IF_NO_FACE), default="error",
                               tooltip="An image without a face: stop with an error, or pass it through flagged as "
                                       "NOT anonymized in the report."),
                io.String.Input("overrides", default="", multiline=True,
                                tooltip="Optional 'key = value' lines overriding the preset, e.g. 'cfg = 7.5' or "
                                        "'steps = 50' (Reverse Personalization: 'cfg = -7.5' sets its inversion's "
                                        "scale too). Keys: " + ", ".join(describe(PRESETS["NullFace (SD1.5)"])
                                                                           .replace(" = ", "=").splitlines())),
                io.Conditioning.Input("attribute_prompt", optional=True,
                                      tooltip="From Attribute Prompt: replaces the unconditional text during "
                                              "sampling (age, sex, ethnicity)."),
                knob_input("detection_threshold", "threshold"),
                knob_input("min_face_size"),
            ],
            outputs=[
                io.Image.Output(display_name="image"),
                io.Mask.Output(display_name="changed", tooltip="1 where pixels were changed."),
                io.String.Output(display_name="report", tooltip="Per face: image, box, seed; images NOT anonymized."),
            ],
        )

    @classmethod
    def execute(cls, image, model, clip, vae, face_analysis, id_adapter, preset, seed, keep="nothing",
                if_no_face="error", overrides="", attribute_prompt=None, threshold=0.5,
                min_face_size=24) -> io.NodeOutput:
        settings = apply_overrides(preset, overrides)
        out, changed, report = anonymize(image, settings, model=model, clip=clip, vae=vae, analysis=face_analysis,
                                         adapter=id_adapter, seed=seed, attribute=attribute_prompt,
                                         keep=KEEP_CHOICES[keep], threshold=threshold, min_face_size=min_face_size,
                                         if_no_face=IF_NO_FACE[if_no_face])
        text = format_report(report)
        ui = ui_payload(text, {k: v for k, v in report.items() if k != "settings"})
        return io.NodeOutput(out, changed, text, ui=ui)


NODES = [FaceAnonymize]
