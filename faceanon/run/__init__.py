"""Headless runs: a shared workflow over a folder, a video or a list of files, in ComfyUI in-process, resumable.

``python -m faceanon.run --workflow WF.json --input photos/ --output out/`` (``--help`` for every option;
README "Headless runs"). The modules:

* `items`: what to run (one item per image or video, each with the relative path its output keeps);
* `graph`: the workflow made headless (UI converted to API, overrides, the source swapped for a path reader, cut
  down to the one metadata-free save node);
* `comfy`: ComfyUI booted in this process, models loaded once, one item executed at a time;
* `manifest`: the JSON-lines record that makes a rerun resume;
* `runner`: the embedded loop, atomic outputs, summary; `ray_runner`: the same job on a Ray cluster;
* `cli`: the command line.

Importing this package imports neither ComfyUI nor torch nor ray.
"""

from .items import Item, list_items
from .manifest import FIELDS, Manifest

__all__ = ["FIELDS", "Item", "Manifest", "list_items"]
