"""The one parser of ``device`` arguments (``--device``, ``Vocoder.from_pretrained(device=...)``, training's set-up):
a string or ``torch.device`` in, a device that exists on this machine out, or one ``AudiodiffError`` line."""

from __future__ import annotations

import torch

from audiodiff.errors import AudiodiffError

KINDS = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = None, default: str | None = None) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N", "mps" or a ``torch.device``) checked against this machine; ``None`` gives
    ``default``, else "cuda" when a GPU is available and "cpu" otherwise."""
    if device is None:
        device = default or ("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise AudiodiffError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__} "
                             f"{device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in KINDS:
        raise AudiodiffError(f"unknown device {str(device)!r}; expected 'cpu', 'cuda' or 'cuda:N' (N a GPU index)")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise AudiodiffError(f"device {str(device)!r}: no CUDA GPU is available here "
                                 f"(torch.cuda.is_available() is False); use device 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise AudiodiffError(f"device {str(device)!r}: this machine has {count} CUDA GPU(s), "
                                 f"cuda:0 to cuda:{count - 1}; pass one of those")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise AudiodiffError(f"device {str(device)!r}: Apple's MPS backend is not available here; use device 'cpu'")
    return torch.device("cpu") if dev.type == "cpu" else dev
