"""A real ComfyUI, loaded in-process, with this pack loaded through ComfyUI's own custom-node loader.

Where the host comes from (first that exists):
1. the `COMFYUI_PATH` environment variable (scripts/test.sh sets it to each host that scripts/hosts.py finds or
   unpacks, in turn);
2. `~/ComfyUI` (the conventional place named in the README);
3. a tree that scripts/hosts.py unpacked or cloned into `.hosts/` (the newest version first).

The current interpreter must have ComfyUI's requirements installed (scripts/setup_test_env.sh installs them into the
test venv). Without a host, or without its requirements, host tests skip with the reason, and in CI
(`FACEANON_STRICT_SKIPS=1`) that skip is a failure.

Usage in tests: the session fixture `host` (tests/conftest.py) returns a `ComfyHost`; `host.run(prompt)` executes
an API-format graph and returns every executed node's raw outputs.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import uuid
from pathlib import Path

from faceanon.run.comfy import HeadlessServer, prompt_executor

REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)


def _version_key(name: str) -> tuple[int, ...]:
    """`comfyui-0.3.64` -> (0, 3, 64); names without a version sort first."""
    digits = "".join(c if c.isdigit() else " " for c in name).split()
    return tuple(int(d) for d in digits)


def find_host() -> tuple[Path | None, str]:
    """Return (path, "") of a ComfyUI tree, or (None, why none was found)."""
    candidates = []
    env = os.environ.get("COMFYUI_PATH")
    if env:
        candidates.append(("COMFYUI_PATH", Path(env).expanduser()))
    candidates.append(("~/ComfyUI", Path.home() / "ComfyUI"))
    unpacked = sorted(REPO_ROOT.glob(".hosts/*/ComfyUI"), key=lambda p: _version_key(p.parent.name), reverse=True)
    candidates += [(".hosts", path) for path in unpacked]
    tried = []
    for source, path in candidates:
        if (path / "comfy" / "samplers.py").is_file() and (path / "nodes.py").is_file():
            return path, ""
        tried.append(f"{source}={path}")
    why = (f"no ComfyUI found (tried {', '.join(tried)}); set COMFYUI_PATH to a ComfyUI checkout, or run "
           "scripts/test.sh, which unpacks or clones one (scripts/hosts.py)")
    return None, why


def missing_host_requirements() -> str:
    """Name the first of ComfyUI's requirements this interpreter lacks, or ""."""
    for module in ("torch", "torchvision", "safetensors", "einops", "transformers", "aiohttp", "yaml", "PIL",
                   "scipy", "tqdm", "psutil", "kornia", "spandrel", "av", "pydantic", "alembic", "sqlalchemy",
                   "requests"):
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any import failure means the host cannot boot
            return f"{module} ({type(e).__name__}: {e})"
    return ""


class _ServerStub(HeadlessServer):
    """The runner's stand-in for PromptServer, keeping every event for the tests to read."""

    def __init__(self):
        super().__init__()
        self.messages: list[tuple[str, object]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


class HostRunError(RuntimeError):
    """A graph failed to validate or to execute; the message is ComfyUI's."""


class ComfyHost:
    """ComfyUI at `path`, booted in this process (files under `workdir`), with the pack loaded by ComfyUI's own
    loader. `cpu=False` lets ComfyUI pick its device (a GPU benchmark); tests always run with `cpu=True`."""

    def __init__(self, path: Path, workdir: Path, cpu: bool = True):
        self.path = path
        self.cpu = cpu
        self.workdir = workdir
        self.models_dir = workdir / "models"
        self.input_dir = workdir / "input"
        self.output_dir = workdir / "output"
        self.temp_dir = workdir / "temp"
        for d in (self.models_dir, self.input_dir, self.output_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._boot()

    # -- boot -----------------------------------------------------------------------------------------------------
    def _boot(self) -> None:
        if str(self.path) not in sys.path:
            sys.path.insert(0, str(self.path))
        from comfy.cli_args import args

        # Must happen before anything imports comfy.model_management (it picks the device at import).
        args.cpu = self.cpu
        args.disable_all_custom_nodes = False
        import folder_paths

        folder_paths.set_output_directory(str(self.output_dir))
        folder_paths.set_input_directory(str(self.input_dir))
        folder_paths.set_temp_directory(str(self.temp_dir))
        for name in ("checkpoints", "vae", "loras", "diffusion_models", "text_encoders", "ipadapter", "insightface"):
            sub = self.models_dir / name
            sub.mkdir(exist_ok=True)
            folder_paths.add_model_folder_path(name, str(sub), is_default=True)

        # Order matters: `utils` (the package) and `server` before `nodes` (comfyui_api.md §4.4).
        import utils.extra_config  # noqa: F401
        import server  # noqa: F401
        import nodes
        import execution

        self.nodes = nodes
        self.execution = execution
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self.core_node_ids = set(nodes.NODE_CLASS_MAPPINGS)
        self.pack_loaded = asyncio.run(nodes.load_custom_node(str(REPO_ROOT), ignore=set(self.core_node_ids)))
        self.pack_node_ids = set(nodes.NODE_CLASS_MAPPINGS) - self.core_node_ids
        self.pack_module_name = str(REPO_ROOT).replace(".", "_x_")
        self.executor = self.new_executor()

    def new_executor(self):
        stub = _ServerStub()
        ex = prompt_executor(self.execution, stub)
        ex.stub = stub
        return ex

    # -- helpers --------------------------------------------------------------------------------------------------
    def pack(self, submodule: str = ""):
        """The pack's module (or a submodule such as "nodes.inversion") as ComfyUI loaded it."""
        name = self.pack_module_name + ("." + submodule if submodule else "")
        if name not in sys.modules:
            importlib.import_module(name)
        return sys.modules[name]

    def validate(self, prompt: dict) -> tuple[bool, object, list, dict]:
        return asyncio.run(self.execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict, executor=None, all_nodes: bool = False) -> dict[str, list]:
        """Validate and execute an API-format graph; return {node_id: raw outputs} of every node run or cached.

        `all_nodes` makes every node a target (ComfyUI's partial execution), for graphs without an output node."""
        if all_nodes:  # validation insists on output nodes; execute every node as a target instead
            outputs = list(prompt)
        else:
            ok, err, outputs, node_errors = self.validate(prompt)
            if not ok or node_errors:
                raise HostRunError(f"graph did not validate: {err} {node_errors}")
        ex = executor or self.executor
        ex.stub.messages.clear()
        ex.execute(prompt, str(uuid.uuid4()), {}, outputs)
        if not ex.success:
            errors = [m for m in ex.status_messages if m[0] in ("execution_error", "execution_interrupted")]
            detail = errors[-1][1] if errors else ex.status_messages
            if errors and errors[-1][0] == "execution_interrupted":
                raise HostRunError(f"execution_interrupted: {detail}")
            if isinstance(detail, dict):
                raise HostRunError(f"{detail.get('node_type')}: {detail.get('exception_type')}: "
                                   f"{detail.get('exception_message')}\n{''.join(detail.get('traceback', []))}")
            raise HostRunError(str(detail))
        return self.outputs_of(prompt, ex)

    def outputs_of(self, prompt: dict, executor=None) -> dict[str, list]:
        """{node_id: raw outputs} of the graph's nodes held in the executor's cache (after a run)."""
        ex = executor or self.executor
        results = {}
        for node_id in prompt:
            entry = ex.caches.outputs.get(node_id)
            if entry is not None:
                raw = entry.outputs if hasattr(entry, "outputs") else entry  # 0.4+: CacheEntry; 0.3: the list
                # one value per output socket (ComfyUI keeps a list per socket for list outputs)
                results[node_id] = [o[0] if isinstance(o, list) and len(o) == 1 else o for o in raw]
        return results

    def cached_nodes(self, executor=None) -> set[str]:
        """Node ids that ComfyUI reported as cached (not executed) in the last run."""
        ex = executor or self.executor
        cached: set[str] = set()
        for event, data in ex.status_messages:
            if event == "execution_cached":
                cached |= set(data.get("nodes", []))
        return cached


def ensure_tiny_sd15_checkpoint(host: ComfyHost, name: str = "faceanon_tiny_sd15.safetensors") -> str:
    """Write (once per session) a random SD1.5-layout checkpoint into the host's checkpoints folder; return its name."""
    path = host.models_dir / "checkpoints" / name
    if not path.exists():
        from dev.tiny_models import write_sd15_checkpoint

        write_sd15_checkpoint(path)
    return name
