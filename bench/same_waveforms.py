"""Fingerprints of synthesis: record waveforms at a few settings, then check that a refactor reproduces them bit for bit.

    python bench/same_waveforms.py record /tmp/ref-inference      # before a change
    python bench/same_waveforms.py check /tmp/ref-inference       # after it: exit 1 unless every output is identical

Each case vocodes the same short mel (1.5 s of a demo recording, the bundled model's front end) with one seed and
one set of settings (defaults, raw output, another sampler and step count, small chunks one at a time, a batch,
bf16, raw then refined afterwards) and saves the waveform as ``CASE.npy``. ``check`` compares with
``np.array_equal``: the same operations on the same values give the same bits, so any difference is a change in
behaviour, not rounding. Runs on the CPU by default (``--device``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402

CASES = {  # name: (from_pretrained settings, call settings, batched input, raw then refine_waveform)
    "default": ({}, {}, False, False),
    "refine0": ({"refine": 0}, {}, False, False),
    "ddim4": ({"sampler": "ddim", "steps": 4}, {}, False, False),
    "ddim4_call": ({}, {"sampler": "ddim", "steps": 4}, False, False),
    "chunked": ({"chunk_frames": 48, "overlap_frames": 8, "max_batch": 1, "refine": 3}, {}, False, False),
    "batched_chunked": ({"chunk_frames": 48, "overlap_frames": 8, "max_batch": 3, "refine": 0}, {}, True, False),
    "bf16": ({"precision": "bf16", "refine": 0}, {}, False, False),
    "momentum0": ({"refine": 4, "refine_momentum": 0.0}, {}, False, False),
    "raw_then_refined": ({"refine": 5}, {}, False, True),
}


def synthesise(device: str, seconds: float, seed: int) -> dict[str, np.ndarray]:
    demo = sorted((REPO / "data" / "demo").glob("*.flac")) or sorted(Path("/work/main/data/demo").glob("*.flac"))
    if not demo:
        raise SystemExit("no demo recordings found under data/demo")
    base = Vocoder.from_pretrained(device=device)
    audio, _ = load_audio(demo[0], base.sample_rate)
    mel = base.mel(audio[: int(seconds * base.sample_rate)]).cpu().numpy()  # [80, F]
    out = {}
    for name, (settings, call, batched, afterwards) in CASES.items():
        voc = Vocoder.from_pretrained(device=device, **settings)
        m = np.stack([mel, mel[:, ::-1].copy()]) if batched else mel
        if afterwards:
            out[name] = voc.refine_waveform(voc(m, seed=seed, refine=False, **call), m)
        else:
            out[name] = voc(m, seed=seed, **call)
        print(f"{name}: shape {out[name].shape}, rms {float(np.sqrt(np.mean(out[name] ** 2))):.5f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("record", "check"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = synthesise(args.device, args.seconds, args.seed)
    if args.mode == "record":
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, wav in out.items():
            np.save(args.dir / f"{name}.npy", wav)
        print(f"recorded {len(out)} waveforms in {args.dir}")
        return
    bad = [name for name, wav in out.items() if not np.array_equal(np.load(args.dir / f"{name}.npy"), wav)]
    if bad:
        raise SystemExit(f"differ from {args.dir}: {', '.join(bad)}")
    print(f"all {len(out)} waveforms identical to {args.dir}")


if __name__ == "__main__":
    main()
