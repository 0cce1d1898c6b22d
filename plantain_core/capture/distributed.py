"""One run split across processes: ``accelerate launch`` or ``torchrun`` starts the
processes, accelerate's ``PartialState`` joins them (gloo on CPU, NCCL on GPUs), each
process captures its share of the pairs (``split_between_processes``), and the main
process gathers the rows and alone writes the run folder.

Nothing here runs unless the launcher set ``WORLD_SIZE`` > 1. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

from ..errors import PlantainError


class Share:
    """This process's place in a run split across processes."""

    def __init__(self, state):
        self.state = state

    @property
    def index(self) -> int:
        return int(self.state.process_index)

    @property
    def count(self) -> int:
        return int(self.state.num_processes)

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    @property
    def device(self) -> str:
        return str(self.state.device)

    def mine(self, items: Sequence) -> list:
        """This process's contiguous part of ``items`` (the earlier processes get one more
        where they do not divide evenly)."""
        with self.state.split_between_processes(list(items)) as part:
            return list(part)

    def gather(self, obj: Any) -> list:
        """``obj`` of every process, in process order, on every process."""
        from accelerate.utils import gather_object

        return gather_object([obj])


@functools.lru_cache(maxsize=1)
def current_share() -> Share | None:
    """The share of this process when a launcher started several, else None."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    try:
        import torch
        from accelerate import PartialState
    except ImportError:
        raise PlantainError("this process was started by a distributed launcher (WORLD_SIZE > 1), which needs "
                            "accelerate: pip install 'plantain[distributed]'") from None
    state = PartialState(cpu=not torch.cuda.is_available())
    return Share(state) if state.num_processes > 1 else None
