"""Every custom socket type of the pack, declared once.

Import `io` from here too, so that a change of ComfyUI API version is a one-line change.
"""

from comfy_api.latest import ComfyExtension, io  # noqa: F401

Inversion = io.Custom("FACEANON_INVERSION")
FaceAnalysis = io.Custom("FACEANON_FACE_ANALYSIS")
Faces = io.Custom("FACEANON_FACES")
Identity = io.Custom("FACEANON_IDENTITY")
FaceCrops = io.Custom("FACEANON_FACE_CROPS")
IDAdapter = io.Custom("FACEANON_ID_ADAPTER")
Tracks = io.Custom("FACEANON_TRACKS")
