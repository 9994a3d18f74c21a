"""FaceAnonAnonymizePeople: anonymize tracked people (video) or the faces of photos, with a who-to-keep policy.

With `tracks` (from Track Faces) every face of a track uses the track's seed and the track's identity (the mean of
its normalised ArcFace embeddings), so each person gets one stand-in through the clip; interpolated faces are
anonymized too. Without `tracks` (still photos) every face is its own "track", with FaceAnonymize's per-face seeds.
The policy (everyone / everyone except the reference people / only the reference people) is decided per track by a
vote against the reference identities (see `faceanon.reference`); undecided tracks are anonymized.

The clip is rendered in chunks of `chunk_frames` frames by FaceAnonymize's `anonymize` (the diffusion work), and
`faceanon.video.anonymize_tracks` checks every face afterwards: a face that could not be anonymized stops the run or
gets the user's fallback (a strong blur of its box), never a silent pass-through.
"""

from __future__ import annotations

import logging

import comfy.model_management

from ..faceanon import faces as F  # noqa: N812
from ..faceanon.presets import apply_overrides
from ..faceanon.reference import EVERYONE, POLICIES, match_track, reference_matrix, to_anonymize
from ..faceanon.tracking import Track, Tracks
from ..faceanon.video import FALLBACKS, TrackPlan, anonymize_tracks, format_video_report
from .anonymize import KEEP_CHOICES, FaceAnonymize, anonymize, face_seed
from .faces import IF_NO_FACE, progress_callback, ui_payload
from .knobs import knob_input
from .types import Identity, Tracks as TracksType, io

logger = logging.getLogger(__name__)

# inputs shared with FaceAnonymize: declared once, there
SHARED = ("image", "model", "clip", "vae", "face_analysis", "id_adapter", "preset", "seed", "keep", "if_no_face",
          "overrides", "attribute_prompt", "threshold", "min_face_size")


def still_tracks(faces) -> Tracks:
    """Each face of a photo batch as its own track (id = the face's number, as FaceAnonymize numbers them)."""
    tracks = tuple(Track(id=k, faces=(f,), scene=f.image_index) for k, f in enumerate(faces))
    return Tracks(tracks=tracks, frame_count=faces.batch_size, image_size=faces.image_size,
                  observed=tuple(range(faces.batch_size)), model=faces.model, embedding_model=faces.embedding_model)


def plan_tracks(tracks: Tracks, policy: str, references=None, match_threshold: float = 0.4,
                min_votes: float = 0.5) -> list[TrackPlan]:
    """Per track: anonymize or exempt, with the vote that decided it."""
    if policy != EVERYONE and references is None:
        raise ValueError(f"the policy {policy!r} needs the reference people: connect Reference Faces to the "
                         "'references' input (or choose 'everyone')")
    refs = None
    if references is not None:
        if references.model and tracks.embedding_model and references.model != tracks.embedding_model:
            raise ValueError(f"the reference identities were made by {references.model} but the faces by "
                             f"{tracks.embedding_model}: embeddings of different recognizers cannot be compared; "
                             "use the same face analysis pack for both")
        refs = reference_matrix(references.embeddings.float().cpu().numpy())
    plans = []
    for t in tracks:
        if refs is None:
            plans.append(TrackPlan(t.id, True, f"policy {policy}"))
            continue
        m = match_track(t.embeddings(), refs, match_threshold, min_votes)
        plans.append(TrackPlan(t.id, to_anonymize(policy, m), f"{m.describe()} -> "
                               + ("anonymized" if to_anonymize(policy, m) else "EXEMPT") + f" ({policy})"))
    return plans


def anonymize_people(image, settings, *, model, clip, vae, analysis, adapter, seed, keep=(), tracks=None,
                     references=None, policy=EVERYONE, match_threshold=0.4, min_votes=0.5, fallback="stop",
                     chunk_frames=16, attribute=None, threshold=0.5, min_face_size=24,
                     if_no_face=F.IfNoFace.ERROR):
    """(frames, changed, report dict): see the module docstring."""
    notes = []
    if tracks is None:
        faces = F.detect(analysis, image, threshold=threshold, min_face_size=min_face_size,
                         if_no_face=if_no_face)
        tracks = still_tracks(faces)
        notes = [f"WARNING: image {i}: no face found, NOT anonymized (passed through)" for i in faces.missing]
    plans = plan_tracks(tracks, policy, references, match_threshold, min_votes)
    identity = {t.id: t.identity() for t in tracks}

    def render(images, faces, ids):
        if any(identity[i] is None for i in ids):
            raise ValueError(f"the face analysis pack {tracks.model!r} gave no ArcFace embeddings, so these faces "
                             "have no identity to anonymize against; use a pack with a recognizer")
        out, changed, _ = anonymize(images, settings, model=model, clip=clip, vae=vae, analysis=analysis,
                                    adapter=adapter, seed=seed, attribute=attribute, keep=keep, faces=faces,
                                    face_seeds=[face_seed(seed, i) for i in ids],
                                    identities=[identity[i] for i in ids])
        return out, changed

    tick = progress_callback(tracks.frame_count)
    out, changed, report = anonymize_tracks(
        image, tracks, render, plans, chunk_frames=chunk_frames, fallback=fallback,
        min_coverage=0.2 if keep else 0.5, passthrough_errors=(comfy.model_management.InterruptProcessingException,),
        progress=tick)
    for entry in report["tracks"]:
        entry["seed"] = face_seed(seed, entry["track"])
    report["notes"] = notes
    return out, changed, report


class FaceAnonAnonymizePeople(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        shared = {i.id: i for i in FaceAnonymize.define_schema().inputs}
        return io.Schema(
            node_id="FaceAnonAnonymizePeople",
            display_name="Anonymize People (FaceAnon)",
            category="FaceAnon/video",
            description=(
                "Anonymizes people in a video or in photos. With tracks (Track Faces), each person gets ONE "
                "consistent stand-in through the clip (the track's seed and identity), missed frames inside a "
                "track are anonymized too, and the same frames come out in order. With references (Reference "
                "Faces) you can keep the people who agreed to be filmed, bit for bit, or anonymize only them; a "
                "person who cannot be matched with confidence is anonymized. A face that cannot be anonymized "
                "stops the run or is blurred (fallback), never passed through."),
            inputs=[
                *(shared[k] for k in SHARED if k not in ("attribute_prompt", "threshold", "min_face_size")),
                TracksType.Input("tracks", optional=True,
                                 tooltip="From Track Faces (same frames). Leave unconnected for still photos: "
                                         "every face is then anonymized on its own"),
                Identity.Input("references", optional=True,
                               tooltip="From Reference Faces: the people the policy keeps or targets"),
                io.Combo.Input("policy", options=list(POLICIES), default=EVERYONE,
                               tooltip="everyone; everyone except the reference people (they keep their face, bit "
                                       "for bit); only the reference people. Undecided matches are anonymized"),
                knob_input("match_threshold"),
                knob_input("min_votes"),
                io.Combo.Input("fallback", options=list(FALLBACKS), default="stop",
                               tooltip="A face that could not be anonymized: stop the run with an error, or blur "
                                       "its box strongly (reported per frame). Never passed through"),
                knob_input("chunk_frames"),
                shared["attribute_prompt"], shared["threshold"], shared["min_face_size"],
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The same frames, in order, same size"),
                io.Mask.Output(display_name="changed", tooltip="1 where pixels were changed"),
                io.String.Output(display_name="report",
                                 tooltip="Per track: seed, match decision, frames seen / interpolated / anonymized "
                                         "/ exempt / blurred / lost"),
            ],
        )

    @classmethod
    def execute(cls, image, model, clip, vae, face_analysis, id_adapter, preset, seed, keep="nothing",
                if_no_face="error", overrides="", tracks=None, references=None, policy=EVERYONE,
                match_threshold=0.4, min_votes=0.5, fallback="stop", chunk_frames=16, attribute_prompt=None,
                threshold=0.5, min_face_size=24) -> io.NodeOutput:
        settings = apply_overrides(preset, overrides)
        out, changed, report = anonymize_people(
            image, settings, model=model, clip=clip, vae=vae, analysis=face_analysis, adapter=id_adapter, seed=seed,
            keep=KEEP_CHOICES[keep], tracks=tracks, references=references, policy=policy,
            match_threshold=match_threshold, min_votes=min_votes, fallback=fallback, chunk_frames=chunk_frames,
            attribute=attribute_prompt, threshold=threshold, min_face_size=min_face_size,
            if_no_face=IF_NO_FACE[if_no_face])
        text = "\n".join([format_video_report(report), *report["notes"]])
        return io.NodeOutput(out, changed, text, ui=ui_payload(text, report))


NODES = [FaceAnonAnonymizePeople]
