"""Executors decide where runs execute.

An executor receives the planned runs and a function that executes one run (and writes its records
into the shared record store) and yields each outcome as it completes.

* :class:`LocalExecutor` (``--executor local``, the default) runs them one after another
  in-process. Under a multi-process launch of the CLI (``torchrun`` / ``accelerate launch``:
  ``WORLD_SIZE`` > 1) every process goes through the runs rank 0 planned, in rank 0's order, so all
  of them take part in each run's distributed training; only rank 0 writes the record store.
* :class:`RayExecutor` (``--executor ray``) makes each run a Ray task on an existing cluster
  (``--ray-address`` or ``RAY_ADDRESS``) or on a local one it starts. A worker rebuilds the suite
  runner from a :class:`WorkerSpec` (the same suite file, plugins, results folder and options, on a
  filesystem every node shares) and executes the run into the same record store as the local
  executor; the store's per-run locks keep two workers (or two drivers) from writing one run.
  A task asks for the resources its backbone and method declare (``resources``, see
  :data:`ttsadapt.components.RESOURCE_KEYS`), overridden by the suite's ``[resources]`` table. A
  worker that dies is retried up to ``max_retries`` times; then the run is recorded as failed with
  the reason. Interrupting the driver cancels the tasks (their workers are killed, their locks die
  with them); running the same command again resumes exactly as with the local executor. While
  the tasks run, the driver prints a per-run status table (queued / running / done / failed, the
  node and process, each run's ``run.log``).

Both keep a suite's chains in order (a run planned ``after`` another, see :mod:`ttsadapt.suite`):
the runs come sources first, the local executor runs them in that order and the Ray executor
submits a dependent run's task only once its source's task has finished (ok or not: the runner
fails a run whose source failed, naming it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from .errors import ConfigError, TTSAdaptError


class Executor:
    name = ""

    def map(self, fn: Callable[[Any], Any], runs: Sequence[Any]) -> Iterator[Any]:
        raise NotImplementedError


# --------------------------------------------------------------------------- local


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _runs_of_rank0(runs: Sequence[Any]) -> list[Any]:
    """Rank 0's list of runs, on every process of a multi-process launch."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState()  # joins the process group the launcher set up (env:// rendezvous)
    box = [list(runs)]
    broadcast_object_list(box, from_process=0)
    return box[0]


class Chains:
    """Which runs of one batch wait for another run of the batch: a run planned ``after`` a
    source run (``run.after["run_id"]``) that is itself in the batch waits until that source is
    :meth:`finished`; a source outside the batch (finished earlier, or skipped) holds nothing up."""

    def __init__(self, runs: Sequence[Any]) -> None:
        ids = {run.run_id for run in runs}
        self.ready: list[Any] = []  # runs that can start now, in the batch's order
        self._waiting: dict[str, list[Any]] = {}  # source run id -> runs waiting for it
        for run in runs:
            source = (getattr(run, "after", None) or {}).get("run_id")
            if source is not None and source in ids:
                self._waiting.setdefault(source, []).append(run)
            else:
                self.ready.append(run)

    def finished(self, run_id: str) -> list[Any]:
        """The runs released by ``run_id`` finishing (whatever its outcome)."""
        return self._waiting.pop(run_id, [])

    def waiting(self) -> list[Any]:
        """The runs still waiting for their source."""
        return [run for runs in self._waiting.values() for run in runs]


class LocalExecutor(Executor):
    """In-process, sequential; models stay loaded between runs where components cache them."""

    name = "local"

    def map(self, fn: Callable[[Any], Any], runs: Sequence[Any]) -> Iterator[Any]:
        if world_size() > 1:
            runs = _runs_of_rank0(runs)
        bar = tqdm(total=len(runs), desc="suite", unit="run", dynamic_ncols=True)
        try:
            for run in runs:
                bar.set_postfix_str(run.label()[:60])
                yield fn(run)
                bar.update(1)
        finally:
            bar.close()


# --------------------------------------------------------------------------- resources


def run_resources(
    run: Any,
    registry: Any,
    suite_spec: Any,
    device: str | None,
    cluster_gpus: float,
) -> dict[str, float | None]:
    """What one run asks the cluster for: the larger of its backbone's and its method's
    ``resources`` per key, then the suite's ``[resources]`` table. GPUs are asked for only where
    the run may use them: none with device ``cpu``, none with ``auto`` on a cluster without GPUs;
    ``cuda`` on a cluster without GPUs is an error."""
    from .components import RESOURCE_KEYS

    declared: dict[str, float | None] = {}
    for kind, name in (("backbone", run.backbone), ("method", run.method)):
        cls = registry.get(kind, name)
        for key, value in (getattr(cls, "resources", None) or {}).items():
            if key not in RESOURCE_KEYS:
                raise ConfigError(
                    f"{kind} {name!r} declares unknown resource {key!r}; "
                    f"known: {', '.join(RESOURCE_KEYS)}"
                )
            if value is not None:
                old = declared.get(key)
                declared[key] = value if old is None else max(old, value)
    out: dict[str, float | None] = {k: declared.get(k) for k in RESOURCE_KEYS}
    override = getattr(suite_spec, "resources", None)
    if override is not None:
        for key in RESOURCE_KEYS:
            value = getattr(override, key)
            if value is not None:
                out[key] = value
    out["num_cpus"] = 1 if out["num_cpus"] is None else out["num_cpus"]
    gpus = out["num_gpus"] or 0
    device = device or getattr(suite_spec, "device", "auto") or "auto"
    if device == "cpu" or (device == "auto" and cluster_gpus <= 0):
        gpus = 0
    elif device.startswith("cuda") and cluster_gpus <= 0:
        raise ConfigError(
            f"run {run.run_id} ({run.label()}) is to run on {device!r} but the Ray cluster has "
            "no GPU; use --device cpu or a cluster with GPUs"
        )
    elif device.startswith("cuda") and gpus == 0:
        gpus = 1
    out["num_gpus"] = gpus
    return out


def _ray_options(res: dict[str, float | None]) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": res["num_cpus"], "num_gpus": res["num_gpus"]}
    memory_gb = res.get("memory_gb")
    if memory_gb:
        opts["memory"] = int(float(memory_gb) * 2**30)
    return opts


def _check_fits(run: Any, res: dict[str, float | None], nodes: list[dict[str, float]]) -> None:
    """A task no node can hold would wait forever: name the run, its needs and the nodes."""
    need = {"CPU": res["num_cpus"] or 0, "GPU": res["num_gpus"] or 0}
    memory_gb = res.get("memory_gb")
    if memory_gb:
        need["memory"] = float(memory_gb) * 2**30
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    have = ", ".join(
        f"{k}={largest.get(k, 0) / 2**30:.1f} GB" if k == "memory" else f"{k}={largest.get(k, 0):g}"
        for k in need
    )
    want = ", ".join(
        f"{k}={v / 2**30:.1f} GB" if k == "memory" else f"{k}={v:g}" for k, v in need.items()
    )
    raise ConfigError(
        f"run {run.run_id} ({run.label()}) needs {want} but the largest node of the Ray cluster "
        f"has {have}; lower the suite's [resources] or add bigger nodes"
    )


# --------------------------------------------------------------------------- the worker side


@dataclass(frozen=True)
class WorkerSpec:
    """How a Ray worker rebuilds the driver's suite runner (paths absolute, on a shared fs)."""

    suite_path: str
    suite_sha256: str
    results: str
    overwrite: str
    device: str | None = None
    cache_dir: str | None = None
    disabled: tuple[str, ...] = ()
    extra_modules: tuple[str, ...] = ()


_WORKER_RUNNERS: dict[WorkerSpec, Any] = {}


def _explicit_cache_dir(runner: Any) -> str | None:
    """The runner's score cache when it is not the default one; ``None`` lets each worker use
    its own default (``$TTSADAPT_CACHE/scores``, forwarded, or its node's home)."""
    from .paths import score_cache_dir

    if runner.cache_dir is None or Path(runner.cache_dir) == score_cache_dir():
        return None
    return str(Path(runner.cache_dir).resolve())


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def worker_runner(spec: WorkerSpec) -> Any:
    """The suite runner of ``spec`` in this worker process (built once; Ray reuses workers)."""
    runner = _WORKER_RUNNERS.get(spec)
    if runner is not None:
        return runner
    from .registry import build_registry
    from .runner import SuiteRunner
    from .suite import load_suite

    path = Path(spec.suite_path)
    host = socket.gethostname()
    if not path.is_file():
        raise TTSAdaptError(
            f"worker on {host}: suite file {path} not found; the suite, its corpus and the "
            "results folder must be on a filesystem every node of the cluster shares"
        )
    if _sha256(path) != spec.suite_sha256:
        raise TTSAdaptError(
            f"worker on {host}: suite file {path} differs from the driver's (edited after the "
            "driver started, or a different file at the same path on this node)"
        )
    registry = build_registry(disabled=spec.disabled, extra_modules=spec.extra_modules)
    registry.pm.hook.ttsadapt_configure.call_historic(
        kwargs={
            "config": {
                "results": spec.results,
                "disabled": list(spec.disabled),
                "argv": ["run", spec.suite_path, "--executor", "ray"],
            }
        }
    )
    suite = load_suite(path, registry)
    runner = SuiteRunner(
        suite,
        registry,
        results=spec.results,
        overwrite=spec.overwrite,
        device=spec.device,
        cache_dir=Path(spec.cache_dir) if spec.cache_dir else None,
    )
    _WORKER_RUNNERS.clear()
    _WORKER_RUNNERS[spec] = runner
    return runner


def execute_on_worker(spec: WorkerSpec, run_id: str, board: Any = None) -> tuple[Any, dict]:
    """The body of a run's Ray task: what to do with the run is decided here, from the store as
    it is now (a run another process finished meanwhile is skipped; a half-written one left by a
    worker that died is redone), exactly as the local executor's runner decides."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "start": time.time()}
    try:
        import ray

        ctx = ray.get_runtime_context()
        info["node"] = ctx.get_node_id()[:8]
        info["resources"] = ctx.get_assigned_resources()
    except Exception:  # noqa: BLE001 - outside Ray (tests call this directly)
        pass
    if board is not None:
        board.start.remote(run_id, info)
    from .runner import RunOutcome

    runner = worker_runner(spec)
    run = next((r for r in runner.suite.runs if r.run_id == run_id), None)
    if run is None:
        raise TTSAdaptError(f"run {run_id} is not a run of suite {spec.suite_path}")
    action = dict((r.run_id, a) for r, a in runner.plan())[run_id]
    gpus = int((info.get("resources") or {}).get("GPU", 0))
    if action == "skip":
        outcome = RunOutcome(run.run_id, run.label(), "skipped")
    elif gpus > 1 and action == "run":
        outcome = _execute_on_gpus(spec, runner, run, gpus)
    else:
        outcome = runner.execute(run, rescore=action == "rescore")
    info["end"] = time.time()
    return outcome, info


def launch_command(spec: WorkerSpec, run_id: str, processes: int) -> list[str]:
    """``torchrun`` running one run of the suite on ``processes`` processes (one per GPU)."""
    plugins = [x for name in spec.disabled for x in ("-p", f"no:{name}")]
    plugins += [x for name in spec.extra_modules for x in ("-p", name)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={processes}", "-m", "ttsadapt", *plugins, "run", spec.suite_path]
    cmd += ["--results", spec.results, "--overwrite", spec.overwrite, "--only", run_id]
    cmd += ["--no-leaderboard"] + (["--device", spec.device] if spec.device else [])
    return cmd


def _execute_on_gpus(spec: WorkerSpec, runner: Any, run: Any, gpus: int) -> Any:
    """A task that owns several GPUs runs its run on one process per GPU (DDP, see
    :mod:`ttsadapt.training.loop`); rank 0 writes the record store. The processes see the
    task's GPUs (Ray sets ``CUDA_VISIBLE_DEVICES``); their output goes to the worker's log."""
    import subprocess

    from .runner import RunOutcome

    t0 = time.perf_counter()
    cmd = launch_command(spec, run.run_id, gpus)
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    sys.stderr.write(proc.stderr)
    status = runner.store.status(run.run_id)
    if status == "ok":
        return RunOutcome(run.run_id, run.label(), "ok", None, seconds)
    error_file = runner.store.run_dir(run.run_id) / "error.txt"
    if status == "failed" and error_file.is_file():
        error = error_file.read_text(encoding="utf-8").strip()
        return RunOutcome(run.run_id, run.label(), "failed", error, seconds)
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    raise TTSAdaptError(
        f"{gpus}-process launch of run {run.run_id} exited {proc.returncode} without finishing "
        f"it ({' '.join(cmd)}): {tail}"
    )


class _Board:
    """A Ray actor the workers tell when (and where) they start a run; the driver reads it."""

    def __init__(self) -> None:
        self.started: dict[str, list[dict[str, Any]]] = {}

    def start(self, run_id: str, info: dict[str, Any]) -> None:
        self.started.setdefault(run_id, []).append(info)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return self.started


# --------------------------------------------------------------------------- the driver side


# environment the driver passes to workers (where set): caches, offline switches, plugin loading
FORWARDED_ENV = (
    "TTSADAPT_CACHE",
    "TTSADAPT_DISABLE_PLUGIN_AUTOLOAD",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "TQDM_DISABLE",
)


@dataclass
class RunState:
    run_id: str
    label: str
    log: Path
    resources: dict[str, Any]
    state: str = "queued"  # waiting | queued | running | done | failed | skipped | locked
    attempts: int = 0
    where: str = ""
    started: float | None = None
    seconds: float | None = None


@dataclass
class StatusTable:
    """The per-run status the driver shows while Ray runs."""

    rows: dict[str, RunState] = field(default_factory=dict)
    t0: float = field(default_factory=time.time)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def headline(self) -> str:
        order = ("queued", "running", "done", "failed", "skipped", "locked", "waiting")
        counts = self.counts()
        parts = [f"{counts.get(s, 0)} {s}" for s in order if counts.get(s) or s in order[:4]]
        return f"[ray] {len(self.rows)} runs: {', '.join(parts)} ({time.time() - self.t0:.0f} s)"

    def render(self) -> str:
        lines = [self.headline()]
        rows = [
            [
                r.run_id,
                r.state + (f" (try {r.attempts})" if r.attempts > 1 else ""),
                r.where,
                "" if r.seconds is None else f"{r.seconds:.1f}",
                str(r.log),
            ]
            for r in self.rows.values()
        ]
        header = ["run id", "status", "where", "s", "log"]
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        for row in [header, *rows]:
            lines.append("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip())
        return "\n".join(lines)


class RayExecutor(Executor):
    """Each run a Ray task on a cluster; outcomes yielded as tasks finish (any order).

    :param runner: the driver's :class:`~ttsadapt.runner.SuiteRunner` (its suite, registry,
        record store and options are what the workers rebuild).
    :param address: a cluster to connect to (``ray://…`` or ``host:port``); default
        ``$RAY_ADDRESS``, else a local cluster is started (and stopped at the end).
    :param num_cpus: CPUs of a local cluster (default: all of this machine's).
    :param num_gpus: GPUs of a local cluster (default: those Ray detects).
    :param max_retries: how many times a run whose worker died is retried.
    :param device: the ``--device`` given to the driver (``None``: the suite's), resolved on
        each worker (a GPU worker's ``auto`` is its CUDA device).
    :param plugins: ``(disabled, extra_modules)`` as given with ``-p`` to the driver.
    """

    name = "ray"

    def __init__(
        self,
        runner: Any,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        max_retries: int = 2,
        device: str | None = None,
        plugins: tuple[Sequence[str], Sequence[str]] = ((), ()),
        out: TextIO | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"--max-retries must be 0 or more (got {max_retries})")
        self.runner = runner
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.device = device
        disabled, extra = plugins
        suite_path = Path(runner.suite.path).resolve()
        self.spec = WorkerSpec(
            suite_path=str(suite_path),
            suite_sha256=_sha256(suite_path),
            results=str(Path(runner.store.results).resolve()),
            overwrite=runner.overwrite,
            device=device,
            cache_dir=_explicit_cache_dir(runner),
            disabled=tuple(disabled),
            extra_modules=tuple(extra),
        )
        self.out = out if out is not None else sys.stderr
        self.refresh_s = refresh_s
        self.table = StatusTable()
        self.started_cluster = False
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ cluster

    def _worker_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        paths = []
        for name in self.spec.extra_modules:  # a -p MODULE plugin must import on the workers too
            module = sys.modules.get(name)
            file = getattr(module, "__file__", None)
            if file:
                top = Path(file).resolve().parent
                if Path(file).name == "__init__.py":
                    top = top.parent
                paths.append(str(top))
        paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def connect(self) -> Any:
        """Connect to the cluster (or start a local one); returns the ``ray`` module."""
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(
                "--executor ray needs Ray: pip install 'ttsadapt[ray]' (or pip install 'ray>=2.9')"
            ) from exc
        t = time.perf_counter()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "runtime_env": {"env_vars": self._worker_env()},
                "log_to_driver": False,
                "configure_logging": False,
            }
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs.update(
                    num_cpus=self.num_cpus or os.cpu_count() or 1,
                    num_gpus=self.num_gpus,
                    include_dashboard=False,
                    object_store_memory=256 * 2**20,
                )
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise TTSAdaptError(
                    f"cannot connect to the Ray cluster at {self.address}: {exc}"
                ) from exc
            self.started_cluster = True
        self.timings["connect_s"] = time.perf_counter() - t
        return ray

    # ------------------------------------------------------------------ map

    def map(self, fn: Callable[[Any], Any], runs: Sequence[Any]) -> Iterator[Any]:
        """``fn`` is not used: the driver's in-memory runner cannot travel to other machines, so
        each worker rebuilds it from :attr:`spec` and executes the run by id."""
        if not runs:
            return
        ray = self.connect()
        try:
            yield from self._map(ray, runs)
        finally:
            if self.started_cluster:
                ray.shutdown()
                self.started_cluster = False

    def _map(self, ray: Any, runs: Sequence[Any]) -> Iterator[Any]:
        from ray.exceptions import RayError

        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        cluster_gpus = sum(n.get("GPU", 0.0) for n in nodes)
        suite_spec = self.runner.suite.spec
        resources = {
            run.run_id: run_resources(
                run, self.runner.registry, suite_spec, self.device, cluster_gpus
            )
            for run in runs
        }
        for run in runs:
            _check_fits(run, resources[run.run_id], nodes)
        board = ray.remote(num_cpus=0)(_Board).remote()
        task = ray.remote(execute_on_worker)
        pending: dict[Any, Any] = {}
        chains = Chains(runs)  # a run planned after another of this batch waits for it

        def submit(run: Any) -> None:
            self.table.rows[run.run_id].state = "queued"
            ref = task.options(
                **_ray_options(resources[run.run_id]),
                max_retries=self.max_retries,
                name=f"run:{run.run_id}",
            ).remote(self.spec, run.run_id, board)
            pending[ref] = run

        for run in runs:
            self.table.rows[run.run_id] = RunState(
                run.run_id,
                run.label(),
                self.runner.store.run_dir(run.run_id) / "run.log",
                resources[run.run_id],
                state="waiting",
            )
        for run in chains.ready:
            submit(run)
        self._print(self.table.render())
        last_table = time.time()
        tty = bool(getattr(self.out, "isatty", lambda: False)())
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.refresh_s)
                self._poll_board(ray, board)
                for ref in ready:
                    run = pending.pop(ref)
                    row = self.table.rows[run.run_id]
                    try:
                        outcome, info = ray.get(ref)
                    except RayError as exc:
                        outcome = self._lost(run, exc)
                    else:
                        row.seconds = outcome.seconds
                        row.where = row.where or f"{info.get('host')}:{info.get('pid')}"
                    row.state = _STATE.get(outcome.status, outcome.status)
                    self._print(
                        f"[ray] {row.state}: {run.run_id} ({run.label()})"
                        + (f": {(outcome.error or '').splitlines()[0]}" if outcome.error else "")
                        + f"; log {row.log}"
                    )
                    for waiting in chains.finished(run.run_id):  # its chained runs may start
                        submit(waiting)
                    yield outcome
                if ready and (tty or time.time() - last_table > 60 or not pending):
                    self._print(self.table.render())
                    last_table = time.time()
        finally:
            held = chains.waiting()
            if held:  # interrupted before their sources finished: never submitted
                self._print(f"[ray] {len(held)} runs waiting for their source were not started")
            if pending:  # interrupted: stop the workers; their locks die with them
                # a local cluster of ours goes down with its workers at shutdown (cancelling
                # first can crash Ray's core worker on the late replies); on a shared cluster
                # the tasks are cancelled and their workers killed
                for ref in pending if not self.started_cluster else ():
                    with contextlib.suppress(Exception):  # best effort on the way out
                        ray.cancel(ref, force=True)
                self._print(
                    f"[ray] cancelled {len(pending)} unfinished runs; run the same command "
                    "again to resume"
                )

    def _poll_board(self, ray: Any, board: Any) -> None:
        try:
            started = ray.get(board.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - the table is informative only
            return
        for run_id, attempts in started.items():
            row = self.table.rows.get(run_id)
            if row is None or row.state not in ("queued", "running"):
                continue
            last = attempts[-1]
            if row.state == "queued" or len(attempts) != row.attempts:
                row.state, row.attempts = "running", len(attempts)
                row.started = last.get("start")
                row.where = f"{last.get('host')}:{last.get('pid')}"
                retry = f" (attempt {len(attempts)}, a worker died)" if len(attempts) > 1 else ""
                self._print(f"[ray] running{retry}: {run_id} on {row.where}; log {row.log}")

    def _lost(self, run: Any, exc: Exception) -> Any:
        """A task that failed in Ray itself (worker died on every attempt, or the worker could
        not rebuild the runner): the run is recorded as failed with the reason."""
        from ray.exceptions import RayTaskError

        from .runner import RunOutcome
        from .store import RunLockedError

        row = self.table.rows[run.run_id]
        if isinstance(exc, RayTaskError):
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            error = f"worker error: {type(cause).__name__}: {cause}"
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            error = (
                f"worker died on each of {self.max_retries + 1} attempts "
                f"({type(exc).__name__}: {first})"
            )
        try:
            status = self.runner.store.record_lost(
                run.run_id, run.config(), error, attempts=row.attempts or None
            )
        except RunLockedError as locked:
            return RunOutcome(run.run_id, run.label(), "locked", str(locked))
        if status == "ok":  # it wrote DONE before its worker went
            return RunOutcome(run.run_id, run.label(), "ok")
        return RunOutcome(run.run_id, run.label(), "failed", error)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


_STATE = {"ok": "done", "rescored": "done"}

EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def get_executor(name: str, **options: Any) -> Executor:
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](**options)
