"""FaceAnon: training-free, attribute-preserving face anonymization for ComfyUI.

ComfyUI loads this folder as a custom-node package and calls `comfy_entrypoint`.
Nothing from ComfyUI is imported at module level, so the host-independent
package `faceanon` (the maths) can be imported and tested without a host.
"""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes.extension import FaceAnonExtension

    return FaceAnonExtension()
