"""The run's manifest: one JSON line per finished item, appended and synced as each item ends.

Fields of a record:

* ``input``: the item's relative path (its key; a rerun skips inputs whose last record is finished);
* ``output``: the output's path relative to the output folder, or ``null`` when nothing was written;
* ``status``: ``"done"`` (anonymized and written), ``"no_face"`` (no face found: nothing written) or ``"failed"``
  (an error: nothing written; a rerun tries it again);
* ``faces``: faces anonymized (``null`` when the workflow reports none);
* ``similarity_min`` / ``similarity_max``: ArcFace cosine similarity between each face of the original and the
  result (lower is less recognisable; ``null`` without a report);
* ``error``: why the item failed or was left out, else ``null``;
* ``seconds``: time spent on the item.

A line is written whole (one ``write`` of the line, then ``fsync``); a run killed mid-write leaves at most one
partial last line, which the next run ignores and closes with a newline before appending.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["FIELDS", "FINISHED", "STATUSES", "Manifest"]

logger = logging.getLogger(__name__)

FIELDS = ("input", "output", "status", "faces", "similarity_min", "similarity_max", "error", "seconds")
STATUSES = ("done", "no_face", "failed")
FINISHED = ("done", "no_face")  # a rerun does not redo these


class Manifest:
    """Append-only JSON-lines record of a run (see the module docstring for the fields)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def read(self) -> dict[str, dict]:
        """The last record of every input in the manifest ({} when there is none yet); partial lines are skipped."""
        records: dict[str, dict] = {}
        if not self.path.exists():
            return records
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    records[rec["input"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning("%s:%d: not a manifest record (a run stopped while writing it?): skipped",
                                   self.path, number)
        return records

    def open(self) -> Manifest:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a partial line from a killed run: end it so it stays one bad line
                    os.write(self._fd, b"\n")
        return self

    def append(self, record: dict) -> None:
        if set(record) != set(FIELDS) or record["status"] not in STATUSES:
            raise ValueError(f"a manifest record has the fields {FIELDS} and a status in {STATUSES}; got {record}")
        line = json.dumps({k: record[k] for k in FIELDS}, ensure_ascii=False) + "\n"
        os.write(self._fd, line.encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Manifest:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
