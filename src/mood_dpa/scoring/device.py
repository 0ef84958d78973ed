"""Which device a scoring process uses, and bf16 autocast on a GPU."""

from __future__ import annotations

import contextlib

import torch

from ..errors import MoodError
from ..ranks import local_rank


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; nothing elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_for_rank(device: str | None = None) -> torch.device:
    """The device a (possibly sharded) prediction process should use.

    An explicit ``device`` wins; otherwise CUDA device :func:`mood_dpa.ranks.local_rank` (mod the device
    count) when CUDA is available, else the CPU.
    """
    if device:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise MoodError(f"--device {device!r}: not a device name (use cpu, cuda or cuda:N)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise MoodError(f"--device {device}: CUDA is not available on this machine")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MoodError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


