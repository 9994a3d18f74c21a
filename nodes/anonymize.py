"""FaceAnonymize: the whole method in one box, for every face of every image.

For each face: aligned crop -> VAE encode -> null-identity inversion (once) -> replay with the identity guider
(own seed, own identity) -> VAE decode -> restore the pixels outside the anonymized region -> paste back with a
feathered face-shaped mask. Never fails open: an image without a face either stops the run or is passed through
*flagged* in the report and the UI; a face that cannot be processed stops the run.
"""

from __future__ import annotations

import hashlib
import logging

import comfy.utils
import numpy as np
import torch

from ..faceanon import faces as F
from ..faceanon.guidance import restore_outside
from ..faceanon.presets import PRESETS, apply_overrides, describe
from ..faceanon.verify import analysis_embedder
from .faces import IF_NO_FACE, progress_callback, ui_payload
from .guidance import encode_prompt, identity_guider, zero_out
from .id_adapter import apply_id_adapter
from .inversion import InversionNoise, invert_latent, replay_sampler
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


def anonymize(images, model, clip, vae, analysis, adapter, settings, seed: int, attribute=None, keep=(),
              threshold: float = 0.5, min_face_size: float = 24, if_no_face: F.IfNoFace = F.IfNoFace.ERROR,
              color_match: str = "mean"):
    """Anonymize every face; returns (images, changed mask [B, H, W], report dict)."""
    faces = F.detect(analysis, images, threshold=threshold, min_face_size=min_face_size, if_no_face=if_no_face)
    report = {"settings": describe(settings).splitlines(), "faces": [], "not_anonymized_images": list(faces.missing),
              "notes": list(faces.notes)}
    if len(faces) == 0:
        return images.clone(), torch.zeros(images.shape[:3]), report
    crops, info = F.crop_faces(images, faces, size=settings.resolution, margin=settings.margin)
    masks = gate_masks(faces, info, settings, keep)
    patched = apply_id_adapter(model, adapter, weight=settings.adapter_weight, lora_strength=settings.lora_strength)
    positive = encode_prompt(clip, "", zero_if_empty=False)
    negative = zero_out(positive) if settings.zero_negative else positive
    tick = progress_callback(len(faces))
    outputs = []
    for k, face in enumerate(faces):
        tick(k, len(faces))  # also honours Cancel between faces
        if face.embedding is None:
            raise ValueError(f"face {k} (image {face.image_index}) has no ArcFace embedding: the face analysis pack "
                             f"{faces.model!r} has no recognizer, so it cannot be anonymized")
        s = face_seed(seed, k)
        crop = crops[k:k + 1, :, :, :3]
        latent = {"samples": vae.encode(crop)}
        inverted = invert_latent(patched, positive, negative, latent, settings.solver, settings.steps, settings.skip,
                                 settings.eta, settings.inversion_cfg, s)
        mask = None if masks is None else masks[k:k + 1]
        guider = identity_guider(patched, positive, negative, torch.from_numpy(face.embedding)[None],
                                 settings.identity_scale, settings.cfg, attribute, mask, settings.mask_delay,
                                 settings.mask_feather)
        noise = InversionNoise(inverted).generate_noise(latent)
        sampled = guider.sample(noise, latent["samples"], replay_sampler(inverted, settings.keep_final_residual),
                                inverted.core.sigmas, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=s)
        decoded = vae.decode(sampled)[..., :3].to(crop.device, crop.dtype)
        if decoded.shape != crop.shape:
            decoded = torch.nn.functional.interpolate(decoded.movedim(-1, 1), size=crop.shape[1:3],
                                                      mode="bilinear").movedim(1, -1)
        if mask is not None:
            decoded = restore_outside(crop, decoded, mask, feather=settings.resolution / 128)
        outputs.append(decoded)
        report["faces"].append({"face": k, "image": face.image_index, "box": [round(float(v), 1) for v in face.box],
                                "score": round(float(face.score), 3), "seed": s, "anonymized": True})
    tick(len(faces), len(faces))
    pasted, changed = F.paste_faces(images, torch.cat(outputs), info, mask=masks, mask_space="crop",
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
                               tooltip="NullFace: SD1.5, 30 DDPM steps, negated identity, cfg +10, face mask after "
                                       "10 steps. Reverse Personalization: SDXL, 100 DPM-Solver++ steps, positive "
                                       "identity, cfg -10, attribute prompt."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Each face's seed is derived from this one (face number k -> its own seed)."),
                io.Combo.Input("keep", options=list(KEEP_CHOICES), default="nothing",
                               tooltip="Face regions kept as in the photo (the real eyes / mouth...); the rest of "
                                       "the face is anonymized."),
                io.Combo.Input("if_no_face", options=list(IF_NO_FACE), default="error",
                               tooltip="An image without a face: stop with an error, or pass it through flagged as "
                                       "NOT anonymized in the report."),
                io.String.Input("overrides", default="", multiline=True,
                                tooltip="Optional 'key = value' lines overriding the preset, e.g. 'cfg = -7.5' or "
                                        "'steps = 50'. Keys: " + ", ".join(describe(PRESETS["NullFace (SD1.5)"])
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
        out, changed, report = anonymize(image, model, clip, vae, face_analysis, id_adapter, settings, seed,
                                         attribute_prompt, KEEP_CHOICES[keep], threshold, min_face_size,
                                         IF_NO_FACE[if_no_face])
        text = format_report(report)
        ui = ui_payload(text, {k: v for k, v in report.items() if k != "settings"})
        return io.NodeOutput(out, changed, text, ui=ui)


NODES = [FaceAnonymize]
