"""The caching passes' view of a multi-process launch (``accelerate launch`` / ``torchrun``).

One process is the default: ``python -m training.stage2.cache ...`` caches everything. Under
a launcher every rank caches its share of the shards on its own device (``cache.Part``).
"""

from __future__ import annotations

import torch

from .cache import Part


def launched_part(device: str) -> tuple[Part, torch.device]:
    """This process's ``Part`` and the device its models run on (``auto``: the rank's GPU, else the CPU)."""
    from accelerate import PartialState

    # accelerate only uses the multi-process CPU (gloo) backend when told to run on the CPU.
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    return Part(state.process_index, state.num_processes, state.wait_for_everyone), \
        state.device if device == "auto" else torch.device(device)
