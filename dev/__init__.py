"""Development tools shared by the tests, the benchmarks and the scripts (not part of the node pack; nothing in
faceanon/ or nodes/ imports them).

* `dev.host`: boot a real ComfyUI in-process with this pack loaded through ComfyUI's own loader (`ComfyHost`), and
  find one (`find_host`);
* `dev.tiny_models`: random-weight models in the real SD1.5 / SDXL layouts (import after the host has booted);
* `dev.faceid_files`: IP-Adapter FaceID files with the real key names for any UNet layout;
* `dev.onnx_packs`: synthesized insightface packs with the real file names and signatures.
"""
