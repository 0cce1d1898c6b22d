"""Running a sweep's cells: in this process (``local``) or on Ray actors (``ray``).

A cell is one ordinary run (:func:`~plantain_core.execute.execute`) into its own folder
under the sweep folder, resumed when that folder holds a partial run. A worker keeps the
last model it loaded and takes cells of that model first, so each model is loaded once
per worker. Only the driver writes ``sweep.json``.

Ray is optional (``pip install 'plantain[distributed]'``); the Ray executor starts actors,
one per GPU where the cluster has GPUs, else one per ``--workers`` CPU, and requeues the
cell of a worker that dies (a lost worker is not the cell's fault and does not count
against ``--retries``). See ``docs/sweeps.md``.
"""

from __future__ import annotations

import os
import pathlib
import socket
import time
from typing import Any, Callable, Iterable

import attrs

from ..config import RunConfig
from ..errors import PlantainError
from .grid import Cell

EXECUTORS = ("local", "ray")
MAX_WORKER_LOSSES = 3  # per cell: a cell that takes down its worker this often is failed


@attrs.frozen(kw_only=True)
class SweepOptions:
    """How a sweep runs: executor, Ray address and workers, retries, figures, progress."""

    executor: str = "local"
    address: str | None = None
    workers: int | None = None
    retries: int = 0
    figures: bool = True
    progress: bool = False
    threads: int | None = None  # torch threads per Ray worker (default: its CPUs)

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise PlantainError(f"--executor: unknown executor {self.executor!r}; choose from {', '.join(EXECUTORS)}")
        if self.retries < 0 or (self.workers is not None and self.workers < 1):
            raise PlantainError("--retries must be ≥ 0 and --workers ≥ 1")


def model_key(config: RunConfig) -> tuple:
    return (config.model, config.revision, config.device, config.dtype, config.offload)


class ModelCache:
    """The last model loaded, kept for the next cell of the same model."""

    def __init__(self):
        self.key: tuple | None = None
        self.bundle = None
        self.loads = 0

    def get(self, config: RunConfig):
        from ..capture.prepare import load_for

        key = model_key(config)
        if key != self.key:
            self.bundle = self.key = None  # free the old model before the new one loads
            self.bundle = load_for(config)
            self.key, self.loads = key, self.loads + 1
        return self.bundle


def run_cell(config_data: dict, cell_dir: str, cache: ModelCache, figures: bool) -> dict[str, Any]:
    """One cell: load its probe, resume its folder if it holds a partial run, run it."""
    from ..execute import execute
    from ..spec.probes import load_probe

    config = RunConfig.from_dict(config_data)
    probe = load_probe(config.probe)
    out = pathlib.Path(cell_dir)
    resume = (out / "manifest.json").is_file()
    start = time.perf_counter()
    execute(probe, config, out, resume=resume, progress=False, figures=figures,
            model=cache.get(config.for_spec(probe.spec)))
    return {"seconds": round(time.perf_counter() - start, 3), "resumed": resume}


def _worker_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@attrs.frozen
class CellOutcome:
    """What became of one attempt at a cell."""

    cell: Cell
    ok: bool
    error: str | None = None
    seconds: float | None = None
    worker: str | None = None
    lost_worker: bool = False


def cell_error(exc: BaseException) -> str:
    """One line for sweep.json: a PlantainError's message, else the exception's type and first line."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, PlantainError) else f"{type(exc).__name__}: {text}"


def run_local(cells: list[Cell], out: pathlib.Path, options: SweepOptions, started: Callable[[Cell, str], None],
              tally: dict) -> Iterable[CellOutcome]:
    """Cells one after another in this process, grouped by model (each loaded once)."""
    cache = ModelCache()
    for cell in sorted(cells, key=lambda c: tuple(map(str, model_key(c.config)))):
        started(cell, _worker_name())
        loads = cache.loads
        try:
            got = run_cell(cell.config.as_dict(), str(out / cell.name), cache, options.figures)
        except Exception as exc:  # one cell's failure, whatever it is, is that cell's; Ctrl-C stops the sweep
            tally["model_loads"] = tally.get("model_loads", 0) + cache.loads - loads
            yield CellOutcome(cell, False, cell_error(exc), worker=_worker_name())
            continue
        got["loads_delta"] = cache.loads - loads
        tally["model_loads"] = tally.get("model_loads", 0) + got["loads_delta"]
        yield CellOutcome(cell, True, seconds=got["seconds"], worker=_worker_name())


def _ray():
    try:
        import ray
    except ImportError:
        raise PlantainError("--executor ray needs Ray: pip install 'plantain[distributed]'") from None
    return ray


def run_ray(cells: list[Cell], out: pathlib.Path, options: SweepOptions, started: Callable[[Cell, str], None],
            tally: dict) -> Iterable[CellOutcome]:
    """Cells on Ray actors, each loading a model once and taking its model's cells first.
    A worker that dies is replaced and its cell requeued (resumed from its flushed batches)."""
    ray = _ray()
    import logging

    if not ray.is_initialized():
        if options.address:
            check_address(options.address)  # ray.init retries an address nothing answers for ever
        kwargs: dict[str, Any] = {"address": options.address} if options.address else \
            {"num_cpus": options.workers or os.cpu_count() or 1}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = options.workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
    threads = options.threads or 1
    Worker = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_restarts=0)(_CellWorker)

    def new_workers(count: int) -> list[tuple]:
        actors = [Worker.remote(threads) for _ in range(count)]  # they start (import torch) side by side
        return list(zip(actors, ray.get([a.name.remote() for a in actors])))

    pending = list(cells)
    losses: dict[str, int] = {}
    idle = new_workers(min(n, len(pending)))
    current: dict[str, tuple | None] = {name: None for _, name in idle}  # worker -> model key it holds
    running: dict[Any, tuple] = {}
    while pending or running:
        while idle and pending:
            actor, name = idle.pop()
            held = current.get(name)
            pick = next((c for c in pending if model_key(c.config) == held), pending[0])
            pending.remove(pick)
            started(pick, name)
            current[name] = model_key(pick.config)
            ref = actor.run.remote(pick.config.as_dict(), str(out / pick.name), options.figures)
            running[ref] = (actor, name, pick, held != current[name])
        done, _ = ray.wait(list(running), num_returns=1)
        ref = done[0]
        actor, name, cell, loads = running.pop(ref)
        try:
            got = ray.get(ref)
        except ray.exceptions.ActorDiedError:
            # the model it loaded for this cell died with it, unreported: still a load the sweep paid for
            tally["model_loads"] = tally.get("model_loads", 0) + int(loads)
            losses[cell.name] = losses.get(cell.name, 0) + 1
            current.pop(name, None)
            if losses[cell.name] >= MAX_WORKER_LOSSES:
                yield CellOutcome(cell, False, f"its worker died {losses[cell.name]} times", worker=name, lost_worker=True)
            else:
                pending.insert(0, cell)  # resumed on the next free worker
                yield CellOutcome(cell, False, "worker lost; requeued", worker=name, lost_worker=True)
            if pending:
                fresh = new_workers(1)[0]
                current[fresh[1]] = None
                idle.append(fresh)
            continue
        except ray.exceptions.RayTaskError as exc:
            yield CellOutcome(cell, False, cell_error(exc.cause if getattr(exc, "cause", None) is not None else exc),
                              worker=name)
        else:
            tally["model_loads"] = tally.get("model_loads", 0) + got["loads_delta"]
            yield CellOutcome(cell, True, seconds=got["seconds"], worker=name)
        idle.append((actor, name))


def check_address(address: str, timeout: float = 10.0) -> None:
    """``--address HOST:PORT`` (or ``ray://HOST:PORT``) answers a TCP connect within
    ``timeout`` seconds; else one error, instead of ray.init retrying without end.
    ``auto`` and ``local`` are Ray's own and pass."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PlantainError(f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise PlantainError(f"--address {address}: no Ray cluster answers there ({why} within {timeout:g} s); start "
                            "one with `ray start --head` on that machine, or leave --address out to start a local "
                            "one") from None


class _CellWorker:
    """A Ray actor: one model at a time, cells of it one after another."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.cache = ModelCache()

    def name(self) -> str:
        return _worker_name()

    def run(self, config_data: dict, cell_dir: str, figures: bool) -> dict[str, Any]:
        before = self.cache.loads
        got = run_cell(config_data, cell_dir, self.cache, figures)
        return {**got, "loads_delta": self.cache.loads - before}


def run_cells(cells: list[Cell], out: pathlib.Path, options: SweepOptions, started: Callable[[Cell, str], None],
              tally: dict) -> Iterable[CellOutcome]:
    runner = run_ray if options.executor == "ray" else run_local
    yield from runner(cells, out, options, started, tally)
