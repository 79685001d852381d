"""The accuracy of ``audio/convert.py`` on real speech, for the table of docs/interop.md.

For each pair of front ends (SOURCE -> TARGET) and each recording: the source mel of the recording (resampled to the
source's rate), converted to the target's convention, against the target mel computed from the recording itself
(resampled to the target's rate). Errors are in dB of the linear mel, both sides floored at 1e-5 (hifigan's floor),
over every band and frame but the first and last two (whose padding differs); mean and 95th percentile over all
values of all files, the mean over the bands that peak below 8 kHz, and, where the two have the same band count, the
mean error of the source mel given to the target unconverted (what a mismatched vocoder sees).

    python bench/mel_conversion.py --data /path/to/speech-22k/test [--limit 24]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audiodiff.audio.convert import approximations, convert_mel  # noqa: E402
from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.audio.mel import MelSpectrogram, decompress, mel_config  # noqa: E402

PAIRS = [("espnet", "hifigan"), ("coqui", "hifigan"), ("nemo", "hifigan"), ("speechbrain", "hifigan"),
         ("bigvgan-22k", "hifigan"), ("bigvgan-24k", "hifigan"), ("diffwave", "hifigan"), ("hifigan", "espnet"),
         ("hifigan", "coqui"), ("hifigan", "bigvgan-24k"), ("nemo", "bigvgan-24k")]


def _db(mel: torch.Tensor, cfg) -> torch.Tensor:
    return 20 * decompress(mel.double(), cfg).clamp(min=1e-5).log10()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A folder of speech recordings")
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args()
    files = sorted(p for p in args.data.iterdir() if p.suffix in (".wav", ".flac"))[: args.limit]
    print("| source -> target | approximates | mean dB | p95 dB | mean dB below 8 kHz | unconverted: mean dB |")
    print("|---|---|---|---|---|---|")
    for src_name, dst_name in PAIRS:
        src, dst = mel_config(src_name), mel_config(dst_name)
        fs, fd = MelSpectrogram(src), MelSpectrogram(dst)
        errs, low, raw = [], [], []
        for f in files:
            a, _ = load_audio(f, src.sample_rate)
            b, _ = load_audio(f, dst.sample_rate)
            mel = fs(torch.from_numpy(a))
            got = convert_mel(mel, src, dst)
            want = fd(torch.from_numpy(b))
            n = min(got.shape[-1], want.shape[-1])
            e = (_db(got[:, 2:n - 2], dst) - _db(want[:, 2:n - 2], dst)).abs()  # [bands, frames]
            errs.append(e.flatten())
            centres = fd.fbank.argmax(1) * dst.sample_rate / dst.n_fft  # [bands] the peak of each filter, Hz
            low.append(e[centres < 8000].flatten())
            if src.n_mels == dst.n_mels:
                m = min(mel.shape[-1], want.shape[-1])
                raw.append((_db(mel[:, 2:m - 2], dst) - _db(want[:, 2:m - 2], dst)).abs().flatten())
        e, lo = torch.cat(errs), torch.cat(low)
        what = "; ".join(approximations(src, dst)) or "nothing (exact)"
        unconverted = f"{float(torch.cat(raw).mean()):.1f}" if raw else "(other band count)"
        print(f"| {src_name} -> {dst_name} | {what} | {float(e.mean()):.2f} | {float(e.quantile(0.95)):.2f} | "
              f"{float(lo.mean()):.2f} | {unconverted} |")


if __name__ == "__main__":
    main()
