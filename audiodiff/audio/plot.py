"""Mel-spectrogram pictures (PNG), for TensorBoard and for `audiodiff generate`."""

from __future__ import annotations

import io

import torch


def mel_png(mel: torch.Tensor, title: str) -> bytes:
    """A log-mel ``[n_mels, F]`` rendered as PNG bytes (frames across, bands up); needs matplotlib (the
    ``plots`` or ``train`` extra)."""
    try:
        import matplotlib
    except ImportError:
        from audiodiff.errors import AudiodiffError

        raise AudiodiffError("mel pictures need matplotlib, which an inference-only install leaves out: "
                             "pip install 'audiodiff[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    ax.imshow(torch.as_tensor(mel).float().cpu().numpy(), origin="lower", aspect="auto", interpolation="none")
    ax.set_title(title)
    ax.set_xlabel("frame")
    ax.set_ylabel("mel band")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
