"""How the transformer runs while plantain captures: compiled or eager, on which of diffusers'
attention backends, and never under a step-skipping cache.

``--compile`` replaces the transformer's ``forward`` by ``torch.compile(forward)`` for the
duration of the capture. plantain's capture pre-hooks sit on submodules, so dynamo traces
them into the same graph (no graph breaks: tests/test_compile.py counts them); the
transformer's own pre-/post-hook, which forms the unit sums and moves them to the host,
run outside the compiled region. Shapes: dynamo compiles once for the first batch shape and
once more, with the changed dimension dynamic, when a batch size or token count first
differs; later batches of any size reuse that graph (``torch._dynamo`` recompiles stay
bounded by the number of dimensions that vary, not the number of batches).

Step-skipping caches (diffusers' FirstBlockCache, MagCache, PyramidAttentionBroadcast,
FasterCache, ...) return cached block outputs instead of computing them: a capture under one
would record stale numbers, so a run refuses a transformer that has one installed.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..errors import PlantainError

#: diffusers hook-registry names (prefixes) of step-skipping caches -> what a user calls them
STEP_CACHES = {"fbc_": "FirstBlockCache", "mag_cache": "MagCache", "pyramid_attention_broadcast": "PAB",
               "faster_cache": "FasterCache", "teacache": "TeaCache", "tea_cache": "TeaCache",
               "sea_cache": "SeaCache", "taylorseer": "TaylorSeerCache", "layer_skip": "LayerSkip"}


#: torch.compile backend of ``--compile`` (tests swap in "eager" to check tracing without inductor's time)
BACKEND = "inductor"


def step_caches(transformer) -> list[str]:
    """The step-skipping caches installed anywhere in ``transformer`` (diffusers' HookRegistry
    ``_diffusers_hook`` on any submodule), by name, sorted."""
    found = set()
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        for name in getattr(registry, "hooks", {}) or {}:
            found.update(label for prefix, label in STEP_CACHES.items() if str(name).startswith(prefix))
    return sorted(found)


def refuse_step_caches(transformer) -> None:
    caches = step_caches(transformer)
    if caches:
        raise PlantainError(f"the transformer has a step-skipping cache installed ({', '.join(caches)}): its passes "
                            "reuse cached block outputs, so captures would be stale; remove it "
                            "(transformer.disable_cache()) before running plantain")


@contextlib.contextmanager
def compiled(transformer, enabled: bool = True, backend=None) -> Iterator[None]:
    """Inside: ``transformer.forward`` is ``torch.compile``'d (``backend``, default
    :data:`BACKEND`), hooks included; the
    eager forward is back on exit. A no-op when not ``enabled``."""
    if not enabled:
        yield
        return
    import torch

    import torch._dynamo

    had = "forward" in vars(transformer)
    eager = transformer.forward
    transformer.forward = torch.compile(eager, backend=backend or BACKEND)
    transformer._plantain_compiled = True
    # dynamo skips guards on module hooks by default: a graph traced without the capture's
    # hooks (or with another capture's) would be reused silently, capturing nothing or into
    # a stale object. With the guards, each hook state gets its own graph.
    try:
        with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
            yield
    finally:
        if had:
            transformer.forward = eager
        else:
            del transformer.forward
        transformer._plantain_compiled = False


def backend_names() -> list[str]:
    """diffusers' attention dispatcher backends (every name, installed or not)."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    return [b.value for b in AttentionBackendName]


@contextlib.contextmanager
def attention_backend(name: str | None) -> Iterator[None]:
    """Inside: diffusers' attention dispatcher uses backend ``name`` (None: as configured);
    an unknown or uninstalled backend is one error naming it."""
    if name is None:
        yield
        return
    from diffusers.models.attention_dispatch import attention_backend as use

    if name not in backend_names():
        from ..errors import suggest

        raise PlantainError(f"--attention-backend: unknown backend {name!r}{suggest(name, backend_names())}")
    try:
        context = use(name)
        context.__enter__()
    except (ValueError, RuntimeError, ImportError) as exc:
        raise PlantainError(f"--attention-backend {name}: not usable here ({exc})") from None
    try:
        yield
    finally:
        context.__exit__(None, None, None)


def graph_breaks() -> int:
    """Graph breaks dynamo has counted in this process (``torch._dynamo`` counters)."""
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))


@contextlib.contextmanager
def running(transformer, compile: bool = False, backend: str | None = None) -> Iterator[None]:
    """How a run's passes run: step caches refused, ``backend`` attention, compiled if asked."""
    refuse_step_caches(transformer)
    with attention_backend(backend), compiled(transformer, compile):
        yield
