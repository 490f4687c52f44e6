"""The torch device the CPU simulator runs on, checked to be present before any tensor is made there.

``torch_device("cpu" | "cuda" | "cuda:N" | "mps")`` parses the name and asks torch whether this machine has it; a
name torch does not know, a device type the simulator does not run on, or one this machine lacks (``cuda``
without an NVIDIA driver, ``cuda:3`` on a one-GPU machine) is a ``BackendError`` naming the device."""
from __future__ import annotations

import torch
from snnc.ir.errors import BackendError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def torch_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch.device that exists on this machine (BackendError otherwise)."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise BackendError(f"device {str(name)!r}: not a torch device name (use one of {', '.join(DEVICE_TYPES)}, "
                           "or cuda:N)") from None
    if dev.type not in DEVICE_TYPES:
        raise BackendError(f"device {str(name)!r}: the simulator runs on {', '.join(DEVICE_TYPES)}, not "
                           f"{dev.type!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device {str(name)!r}: torch sees no CUDA device on this machine "
                               "(torch.cuda.is_available() is False: no NVIDIA GPU or driver); use cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise BackendError(f"device {str(name)!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BackendError(f"device {str(name)!r}: torch's MPS backend is not available on this machine; use cpu")
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise BackendError(f"device {str(name)!r}: there is one cpu device ('cpu')")
    return dev
