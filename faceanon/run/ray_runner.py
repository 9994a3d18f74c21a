"""Scale-out on a Ray cluster with Ray Data (optional extra: ``pip install -r requirements-ray.txt``).

The remaining items become a dataset (one item a block, so a retried task redoes one item);
`Dataset.map_batches` runs them through a pool of `Worker` actors (``concurrency`` = workers, ``num_gpus`` per
actor), each of which boots ComfyUI and loads the graph's models once (`faceanon.run.comfy.Engine`). Results stream
back to this process, which alone writes the outputs and the manifest (`faceanon.run.runner.Job.finish`): the same
files and records as the embedded runner. Ray restarts a killed actor and retries its task (``max_restarts`` and
``max_task_retries`` unlimited); an item whose result comes back twice is recorded once.

Every node of the cluster must see the originals at the same paths (a shared file system) and have ComfyUI and
this pack installed (at ``--comfyui`` / ``COMFYUI_PATH``); only this process needs the output folder.
"""

from __future__ import annotations

import json
import logging
import os
import time

from .comfy import Engine, Result, Spec
from .items import Item
from .runner import Job, Summary, drive

__all__ = ["Worker", "run_ray"]

logger = logging.getLogger(__name__)

PACK_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SetupError(RuntimeError):
    """A worker could not boot ComfyUI or validate the workflow: the run stops."""


class Worker:
    """Ray Data actor: ComfyUI and the graph's models, loaded once; each call runs a batch of items."""

    def __init__(self, spec: Spec):
        self.pid = os.getpid()
        try:
            self.engine, self.setup_error = Engine(spec), None
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run
            self.engine, self.setup_error = None, f"{type(exc).__name__}: {exc}"

    def __call__(self, batch: dict) -> dict:
        out = {"path": [], "rel": [], "kind": [], "result": [], "data": []}
        for path, rel, kind in zip(batch["path"], batch["rel"], batch["kind"], strict=True):
            item = Item(str(path), str(rel), str(kind))
            if self.engine is None:
                result, fatal = Result("failed", error=self.setup_error), True
            else:
                result, fatal = self.engine.run(item), False
            fields = {k: v for k, v in vars(result).items() if k != "data"}
            out["path"].append(item.path)
            out["rel"].append(item.rel)
            out["kind"].append(item.kind)
            out["result"].append(json.dumps({**fields, "fatal": fatal, "pid": self.pid}))
            out["data"].append(result.data or b"")
        return out


def _init(address: str, workers: int, object_store_mb: int | None, verbose: bool) -> None:
    import ray

    env = {"PYTHONPATH": os.pathsep.join(p for p in (PACK_ROOT, os.environ.get("PYTHONPATH")) if p)}
    if os.environ.get("COMFYUI_PATH"):
        env["COMFYUI_PATH"] = os.environ["COMFYUI_PATH"]
    kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": verbose, "configure_logging": verbose}
    if address == "local":  # a private single-machine cluster, started and stopped by this run
        kwargs.update(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False,
                      _node_ip_address="127.0.0.1")
        if object_store_mb:
            kwargs["object_store_memory"] = object_store_mb * 1024 * 1024
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SetupError(f"cannot join the Ray cluster at {address!r}: {exc}. Start one with `ray start --head` "
                         "(and `ray start --address HEAD:6379` on the other machines), or use --ray local") from exc


def _results(dataset, by_rel: dict):
    """(item, Result) pairs from the workers' rows as they stream in; a worker's setup error stops the run."""
    for row in dataset.iter_rows():
        fields = json.loads(row["result"])
        if fields.pop("fatal"):
            raise SetupError(f"a Ray worker could not start: {fields['error']}")
        logger.debug("%s ran on worker pid %s", row["rel"], fields.pop("pid"))
        yield by_rel[str(row["rel"])], Result(**fields, data=bytes(row["data"]) or None)


def run_ray(spec: Spec, job: Job, address: str = "auto", workers: int | None = None,
            gpus_per_worker: float | None = None, cpus_per_worker: float = 1, object_store_mb: int | None = None,
            show_progress: bool = True, verbose: bool = False) -> Summary:
    """Run the job's remaining items on a Ray cluster (``"auto"``, an address, or ``"local"``).

    Args:
        workers (`int`, *optional*): actors; default the cluster's GPUs, or 1 without GPUs.
        gpus_per_worker (`float`, *optional*): GPUs per actor; default 1 when the cluster has GPUs, else 0.
        cpus_per_worker (`float`): CPUs per actor (also its torch threads, rounded up).
    """
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the extra's `ray[data]`
    except ImportError as exc:
        raise SetupError("--ray needs the `ray` package (with Ray Data): pip install -r requirements-ray.txt "
                         "(or `pip install 'ray[data]'`)") from exc
    start = time.monotonic()
    todo = job.todo()
    if not todo:
        job.summary.seconds = time.monotonic() - start
        return job.summary
    _init(address, workers or 1, object_store_mb, verbose)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus_per_worker is None:
            gpus_per_worker = 1 if gpus else 0
        if workers is None:
            workers = max(1, int(gpus // gpus_per_worker)) if gpus_per_worker else 1
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        spec = Spec(**{**vars(spec), "threads": spec.threads or max(1, int(-(-cpus_per_worker // 1)))})
        rows = [{"path": it.path, "rel": it.rel, "kind": it.kind} for it in todo]
        by_rel = {it.rel: it for it in todo}
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        results = ds.map_batches(Worker, fn_constructor_kwargs={"spec": spec}, batch_size=1, batch_format="numpy",
                                 concurrency=workers, num_gpus=gpus_per_worker, num_cpus=cpus_per_worker,
                                 max_restarts=-1, max_task_retries=-1)
        drive(job, _results(results, by_rel), len(todo), show_progress, f"anonymizing on {workers} Ray worker(s)")
    finally:
        ray.shutdown()
        job.summary.seconds = time.monotonic() - start
    return job.summary
