"""CPU speed of the vocoder at batch 1: one network call (eager and time-tiled layers), whole synthesis, ONNX
Runtime, and streaming per block size (x real time and algorithmic latency); a short clip is enough.

    python bench/cpu_speed.py [--model DIR] [--steps 6] [--seconds 2] [--threads 2] [--blocks 32 64 128]
                              [--refine N] [--repeats 3] [--onnx] [--skip calls synth stream] [--out results.json]

Every row gives the load average before and after it: on a machine shared with other jobs the times move with
it, so compare rows measured side by side (the network-call rows alternate their variants for that reason and
report the minimum). The mel is the first ``--seconds`` of the first demo recording (``data/demo``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, describe, write_json  # noqa: E402

from audiodiff.audio.io import load_audio  # noqa: E402
from audiodiff.inference.cpu_layers import TiledDiffWave  # noqa: E402
from audiodiff.inference.stream import MelStream  # noqa: E402
from audiodiff.vocoder import Vocoder  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    return "%.1f" % os.getloadavg()[0]


def wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def net_calls(voc, mel, repeats: int) -> list[dict]:
    """Seconds per network call per mel frame, eager and tiled, alternated."""
    net = voc.net
    x = torch.randn(1, 1, mel.shape[-1] * voc.hop_length, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3.0])
    with torch.no_grad():
        cond = net.upsample(mel)
        variants = {"network call, eager": lambda: net(x, t, cond=cond),
                    "network call, time-tiled layers": lambda: TiledDiffWave(net)(x, t, cond=cond)}
        for fn in variants.values():
            fn()
        times = {k: [] for k in variants}
        before = load()
        for _ in range(repeats):
            for k, fn in variants.items():
                times[k].append(wall(fn))
    frames = mel.shape[-1]
    return [{"row": k, "ms_per_frame_min": 1000 * min(v) / frames, "ms_per_frame_median":
             1000 * statistics.median(v) / frames, "load_before": before, "load_after": load()}
            for k, v in times.items()]


def synth_rows(voc, mel, steps: int, audio_s: float, repeats: int) -> list[dict]:
    rows = []
    for name, kwargs in (("synth, eager layers (kernel=False)", {"kernel": False}),
                         ("synth, default (time-tiled layers)", {"kernel": True})):
        voc.kernel = kwargs["kernel"]
        voc(mel, steps=steps, seed=0)
        before = load()
        sec = min(wall(lambda: voc(mel, steps=steps, seed=0)) for _ in range(repeats))
        rows.append({"row": name, "steps": steps, "seconds": sec, "x_real_time": audio_s / sec,
                     "load_before": before, "load_after": load()})
    voc.kernel = True
    return rows


def onnx_row(voc, mel, steps: int, audio_s: float, repeats: int, threads: int, tmp: Path) -> dict:
    import onnxruntime as ort

    from audiodiff.inference.onnx import export_onnx, vocoder_noise

    path = export_onnx(voc, tmp / "bench-cpu.onnx", steps=steps)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    draws = int(sess.get_modelmeta().custom_metadata_map["noise_draws"])
    feed = {"mel": mel.numpy(), "noise": vocoder_noise(draws, 0, mel.shape[-1], voc.hop_length).numpy()}
    sess.run(None, feed)
    before = load()
    sec = min(wall(lambda: sess.run(None, feed)) for _ in range(repeats))
    return {"row": "onnxruntime, raw (no refinement)", "steps": steps, "seconds": sec, "x_real_time": audio_s / sec,
            "load_before": before, "load_after": load()}


def stream_row(voc, mel, steps: int, block: int, audio_s: float) -> dict:
    s = MelStream(voc, seed=0, block_frames=block, steps=steps)
    before = load()
    t0 = time.perf_counter()
    first = None
    for f in range(mel.shape[-1]):  # one frame at a time, as an acoustic model makes them
        if len(s.push(mel[0, :, f:f + 1])) and first is None:
            first = time.perf_counter() - t0
    s.finish()
    sec = time.perf_counter() - t0
    hop_s = voc.hop_length / voc.sample_rate
    return {"row": f"stream, block {block} frames", "steps": steps, "refine": voc.refine, "block_frames": block,
            "overlap_frames": s.overlap, "lookahead_frames": s.lookahead_frames, "latency_frames": s.latency_frames,
            "latency_ms": 1000 * s.latency_frames * hop_s, "x_real_time": audio_s / sec,
            "first_block_compute_s": first, "load_before": before, "load_after": load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blocks", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--refine", type=int, help="refinement iterations [default: the model's]; the stream's "
                    "look-ahead grows with them")
    ap.add_argument("--onnx", action="store_true", help="also time the ONNX graph in onnxruntime")
    ap.add_argument("--skip", nargs="*", default=[], choices=["calls", "synth", "stream"])
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    voc = Vocoder.from_pretrained(args.model, device="cpu", refine=args.refine)
    audio, _ = load_audio(sorted((ROOT / "data" / "demo").glob("*.flac"))[0], voc.sample_rate)
    mel = voc.mel(torch.from_numpy(audio[: int(args.seconds * voc.sample_rate)]))[None]  # [1, n_mels, F]
    audio_s = mel.shape[-1] * voc.hop_length / voc.sample_rate
    head = {**describe(), "cpu": cpu_name(), "threads": args.threads, "audio_s": audio_s}
    print(f"{head['cpu']}, {args.threads} threads, torch {head['torch']}, {audio_s:.2f} s of audio", flush=True)
    rows = []
    if "calls" not in args.skip:
        rows += net_calls(voc, mel, max(args.repeats, 4))
    if "synth" not in args.skip:
        rows += synth_rows(voc, mel, args.steps, audio_s, args.repeats)
    if args.onnx:
        rows.append(onnx_row(voc, mel, args.steps, audio_s, args.repeats, args.threads, Path(os.environ.get(
            "TMPDIR", "/tmp"))))
    if "stream" not in args.skip:
        rows += [stream_row(voc, mel, args.steps, block, audio_s) for block in args.blocks]
    for row in rows:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    if args.out:
        write_json({"machine": head, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
