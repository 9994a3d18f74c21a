"""The offline real-photo set: face photos that ship inside package-registry artifacts, cached on disk.

Nothing is committed to the repository (some photos are third-party copyright: local test input only) and nothing
comes from a model hub. Sources (shared research eval_tools.md §4):

- astronaut.png: scikit-image `skimage.data.astronaut()` (installed in .venv-eval); Eileen Collins, NASA, PD;
- obama.jpg, obama2.jpg, obama3.jpg, biden.jpg: face_recognition 1.3.0 sdist `tests/test_images/`; three
  different photos of one person and one of another;
- t1.jpg: insightface 2.1 wheel `insightface/data/images/`; a group photo with 6 faces;
- tom_hanks.png: insightface 2.1 wheel (`Tom_Hanks_54745.png`); a 112x112 aligned face crop.

The two archives are fetched once with `pip download --no-deps` (3.2 MB + 1.2 MB; needs the package registry the
first time only) and the photos are extracted into the cache folder, checked against their SHA-256.

    .venv-eval/bin/python -m faceanon.evaluate.photos            # prints the folder holding the photos
    .venv-eval/bin/python -m faceanon.evaluate.photos --dest DIR

Cache folder: `--dest`, else `$FACEANON_PHOTO_DIR`, else `$XDG_CACHE_HOME/faceanon/photos` (`~/.cache/...`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

# file name -> (source, member path inside the archive, sha256 or None)
PHOTOS = {
    "astronaut.png": ("skimage", "astronaut", None),
    "obama.jpg": ("face_recognition", "face_recognition-1.3.0/tests/test_images/obama.jpg",
                  "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
    "obama2.jpg": ("face_recognition", "face_recognition-1.3.0/tests/test_images/obama2.jpg",
                   "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
    "obama3.jpg": ("face_recognition", "face_recognition-1.3.0/tests/test_images/obama3.jpg",
                   "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
    "biden.jpg": ("face_recognition", "face_recognition-1.3.0/tests/test_images/biden.jpg",
                  "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    "t1.jpg": ("insightface", "insightface/data/images/t1.jpg",
               "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"),
    "tom_hanks.png": ("insightface", "insightface/data/images/Tom_Hanks_54745.png",
                      "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083"),
}
# source -> (requirement, extra pip args, archive file name)
ARCHIVES = {
    "face_recognition": ("face_recognition==1.3.0", ["--no-binary", "face_recognition"],
                         "face_recognition-1.3.0.tar.gz"),
    "insightface": ("insightface==2.1", [], "insightface-2.1-py3-none-any.whl"),
}
OFFLINE_SET = tuple(PHOTOS)  # 7 photos, 12 faces, 10 identities
TEST_SET = ("astronaut.png", "obama2.jpg", "t1.jpg")  # 3 photos, 8 faces: the stability test


class PhotoFetchError(RuntimeError):
    pass


def default_dir() -> Path:
    env = os.environ.get("FACEANON_PHOTO_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "faceanon" / "photos"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _valid(path: Path, sha: str | None) -> bool:
    return path.is_file() and path.stat().st_size > 0 and (sha is None or _sha256(path) == sha)


def _pip_download(source: str, into: Path) -> Path:
    requirement, extra, archive = ARCHIVES[source]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "-d", str(into), *extra, requirement]
    logger.info("fetching %s from the package registry (%s)", requirement, " ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    path = into / archive
    if proc.returncode != 0 or not path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise PhotoFetchError(
            f"could not download {requirement} with pip (exit {proc.returncode}): {' / '.join(tail)}. The photo "
            "set is pulled from package-registry artifacts the first time (needs access to the registry pip is "
            f"configured for); afterwards it is cached in {default_dir()} (or $FACEANON_PHOTO_DIR)")
    return path


def _extract(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive, "r:gz") as t:
        f = t.extractfile(member)
        if f is None:
            raise PhotoFetchError(f"{member} not found in {archive.name}")
        return f.read()


def fetch_photos(dest: Path | None = None, names: tuple[str, ...] | list[str] = OFFLINE_SET) -> Path:
    """Make sure the photos `names` are in `dest` (default: `default_dir()`) and return that folder.

    Present and intact photos are not fetched again (a second call costs a few hash checks).
    """
    dest = Path(dest) if dest is not None else default_dir()
    unknown = [n for n in names if n not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown photo(s) {unknown}; known: {', '.join(PHOTOS)}")
    dest.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not _valid(dest / n, PHOTOS[n][2])]
    if not todo:
        return dest
    archives: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="faceanon-photos-") as tmp:
        for name in todo:
            source, member, sha = PHOTOS[name]
            if source == "skimage":
                import cv2
                import skimage.data

                ok, buf = cv2.imencode(".png", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
                data = buf.tobytes()
            else:
                if source not in archives:
                    archives[source] = _pip_download(source, Path(tmp))
                data = _extract(archives[source], member)
            if sha is not None and hashlib.sha256(data).hexdigest() != sha:
                raise PhotoFetchError(f"{name} from {source} has an unexpected SHA-256; the archive changed or is "
                                      "corrupt; delete the cache folder and retry")
            part = dest / (name + ".part")
            part.write_bytes(data)
            part.replace(dest / name)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faceanon.evaluate.photos",
                                     description="Fetch the offline real-photo set into a cache folder.")
    parser.add_argument("--dest", type=Path, default=None, help=f"folder (default {default_dir()})")
    parser.add_argument("--names", nargs="+", default=list(OFFLINE_SET), choices=list(PHOTOS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = fetch_photos(args.dest, args.names)
    except PhotoFetchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
