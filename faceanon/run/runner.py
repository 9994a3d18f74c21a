"""The run itself: which items are left, the progress bar, atomic outputs, the manifest and the summary.

`Job` is shared by the embedded runner (`run_embedded`, one ComfyUI in this process) and the Ray runner
(`faceanon.run.ray_runner`): both hand each item's `Result` to `Job.finish`, the only place that writes to the
output folder and the manifest, so the two give the same files and the same records.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .comfy import Engine, Result, Spec
from .items import Item, output_relpath
from .manifest import FINISHED, Manifest

__all__ = ["Job", "Summary", "drive", "run_embedded", "write_atomic"]

logger = logging.getLogger(__name__)

PART_SUFFIX = ".faceanon-part"


def write_atomic(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a hidden temporary file in the same folder, synced, then renamed: readers
    see the whole file or none; an interrupted write leaves no `target` (and its temporary file is removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}{PART_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class Summary:
    """Counts of a run; `failed` lists (input, error) of the items that failed in this run."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    no_face: int = 0
    failed: list = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed else 0

    def text(self, manifest: Path) -> str:
        ran = self.done + self.no_face + len(self.failed)
        lines = [f"faceanon.run: {self.total} item(s): {self.done} anonymized, {self.no_face} without a face (nothing "
                 f"written), {len(self.failed)} failed (nothing written), {self.skipped} finished by an earlier run"
                 + (f", {self.total - self.skipped - ran} not run (interrupted)" if self.interrupted else "")
                 + f"; {self.seconds:.1f} s"]
        for rel, error in self.failed[:10]:
            lines.append(f"  FAILED {rel}: {error}")
        if len(self.failed) > 10:
            lines.append(f"  ... and {len(self.failed) - 10} more")
        if self.failed or self.no_face:
            lines.append(f"every item's record: {manifest} (rerun the same command to retry the failed ones)")
        if self.interrupted:
            lines.append("interrupted: rerun the same command to go on where it stopped")
        return "\n".join(lines)


class Job:
    """The items of a run against its output folder and manifest."""

    def __init__(self, items: list[Item], output: Path, manifest: Path | None = None):
        self.items = items
        self.output = Path(output)
        self.manifest = Manifest(manifest or self.output / "faceanon_manifest.jsonl")
        self.summary = Summary(total=len(items))
        self._seen: set[str] = set()

    def todo(self) -> list[Item]:
        """Items without a finished record whose output (if any) is in place; removes stale temporary files."""
        if self.output.is_dir():
            for part in self.output.rglob(f".*{PART_SUFFIX}"):
                part.unlink(missing_ok=True)
        records = self.manifest.read()
        left = []
        for item in self.items:
            rec = records.get(item.rel)
            finished = rec is not None and rec.get("status") in FINISHED and (
                rec.get("output") is None or (self.output / rec["output"]).is_file())
            if finished:
                self._seen.add(item.rel)
            else:
                left.append(item)
        self.summary.skipped = len(self.items) - len(left)
        return left

    def finish(self, item: Item, result: Result) -> dict | None:
        """Write the item's output (done only) and then its manifest record; an input finished once is ignored."""
        if item.rel in self._seen:
            logger.warning("%s came back twice (a retried task): the first result is kept", item.rel)
            return None
        output = None
        if result.status == "done":
            output = output_relpath(item, result.suffix)
            try:
                write_atomic(self.output / output, result.data)
            except OSError as exc:
                output, result = None, Result("failed", faces=result.faces, seconds=result.seconds,
                                              error=f"cannot write {self.output / output}: {exc.strerror or exc}")
        record = {"input": item.rel, "output": output, "status": result.status, "faces": result.faces,
                  "similarity_min": result.similarity_min, "similarity_max": result.similarity_max,
                  "error": result.error, "seconds": result.seconds}
        self.manifest.append(record)
        self._seen.add(item.rel)
        if result.status == "done":
            self.summary.done += 1
        elif result.status == "no_face":
            self.summary.no_face += 1
        else:
            self.summary.failed.append((item.rel, result.error))
        return record


def progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="item", desc=desc, dynamic_ncols=True, smoothing=0.1)


def postfix(bar, summary: Summary) -> None:
    bar.set_postfix(done=summary.done, no_face=summary.no_face, failed=len(summary.failed), refresh=False)


def drive(job: Job, results, total: int, show_progress: bool, desc: str) -> None:
    """Finish each (item, result) of `results` as it comes, under the progress bar; Ctrl-C marks the run
    interrupted (the manifest holds whole records only)."""
    try:
        with job.manifest, progress(total, show_progress, desc) as bar:
            for item, result in results:
                if job.finish(item, result) is not None:
                    bar.update(1)
                    postfix(bar, job.summary)
    except KeyboardInterrupt:
        job.summary.interrupted = True


def run_embedded(spec: Spec, job: Job, show_progress: bool = True) -> Summary:
    """Run the job's remaining items one by one in this process (ComfyUI booted once)."""
    start = time.monotonic()
    todo = job.todo()
    if todo:
        engine = Engine(spec)
        try:
            drive(job, ((item, engine.run(item)) for item in todo), len(todo), show_progress, "anonymizing")
        finally:
            engine.close()
    job.summary.seconds = time.monotonic() - start
    return job.summary
