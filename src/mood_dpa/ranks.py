"""Where this process stands among several (torchrun, SLURM): the ONE reader of the rank variables.

Training (the run folder is prepared by rank 0 only), prediction (each rank scores its strided share)
and device choice (CUDA device ``LOCAL_RANK``) all ask here, so they agree on what a rank is.
"""

from __future__ import annotations

import os


def _env_int(names: tuple[str, ...], default: int) -> int:
    for var in names:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return default


def global_rank() -> int:
    """This process's rank over all nodes (``RANK``, else ``SLURM_PROCID``, else ``LOCAL_RANK``; 0 alone)."""
    return _env_int(("RANK", "SLURM_PROCID", "LOCAL_RANK"), 0)


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``, else ``SLURM_LOCALID``; 0 alone): its CUDA device."""
    return _env_int(("LOCAL_RANK", "SLURM_LOCALID"), 0)


def world_size() -> int:
    """How many processes share the work (``WORLD_SIZE``, else ``SLURM_NTASKS``; 1 alone)."""
    return _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)
