"""Host-independent maths of the FaceAnon pack.

Import rule: nothing in this package imports ComfyUI (`comfy*`, `folder_paths`,
`nodes`, `server`, `comfy_api`). Host facts (the training sigmas, the
prediction type) arrive as arguments. insightface/onnxruntime are imported
lazily inside the functions that need them.
"""
