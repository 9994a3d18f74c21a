"""Example photos: shipped with their sources, copied into an input folder without ever touching a user's file."""

from __future__ import annotations

import os

from PIL import Image

from faceanon import examples


def test_examples_are_shipped_with_their_sources():
    files = examples.example_files()
    assert {f.name for f in files} >= {"faceanon_example_portrait.jpg", "faceanon_example_group.jpg"}
    sources = (examples.EXAMPLES_DIR / "SOURCES.md").read_text()
    for f in files:
        assert f"`{f.name}`" in sources, f"{f.name} has no source/licence row in example_inputs/SOURCES.md"
        assert f.stat().st_size < 300_000
        if f.suffix == ".mp4":
            import av

            with av.open(str(f)) as clip:
                assert clip.streams.video[0].frames >= 8
            continue
        with Image.open(f) as img:
            assert min(img.size) >= 256 and img.mode == "RGB"


def test_install_copies_once_and_never_overwrites(tmp_path):
    names = [f.name for f in examples.example_files()]
    assert examples.install_examples(tmp_path) == {n: "copied" for n in names}
    assert examples.install_examples(tmp_path) == {n: "present" for n in names}
    # a user's own file of the same name: left exactly as it is (content and mtime)
    mine = tmp_path / names[0]
    mine.write_bytes(b"my own photo")
    os.utime(mine, ns=(1_000_000_000, 1_000_000_000))
    result = examples.install_examples(tmp_path)
    assert result[names[0]] == "kept yours"
    assert mine.read_bytes() == b"my own photo" and mine.stat().st_mtime_ns == 1_000_000_000
    # a folder of that name is not replaced either
    (tmp_path / names[1]).unlink()
    (tmp_path / names[1]).mkdir()
    assert examples.install_examples(tmp_path)[names[1]] == "kept yours" and (tmp_path / names[1]).is_dir()


def test_unwritable_input_folder_is_reported_not_raised(tmp_path):
    blocked = tmp_path / "file_not_folder"
    blocked.write_bytes(b"x")
    result = examples.install_examples(blocked)
    assert result and all(s.startswith("failed: ") for s in result.values())
