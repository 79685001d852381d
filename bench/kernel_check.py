"""Check and time the fused Triton residual-layer kernel (``audiodiff/kernels/diffwave_triton.py``) on a GPU.

    python bench/kernel_check.py [--model DIR] [--channels 128] [--seconds 10] [--sweep] [--out results.json]

For a 10 s clip at 22.05 kHz (861 frames x hop 256) it prints (1) the relative L2 error of one ``FusedDiffWave``
forward against the float32 eager backbone at t = 1, 10, 40, next to the error of the eager bf16 backbone for
scale, and (2) the time of one forward (CUDA events after warm-up, median of ``--repeats``) for eager fp32, eager
bf16 and fused bf16, each also replayed from a CUDA graph, with the implied x real time for 6 sampling steps.
``--sweep`` also times the fused kernel for each BLOCK_T / num_warps / pipeline stages, to choose ``launch_config``.
Without --model it builds the speech recipe's BASE DiffWave with random weights (speed does not depend on them;
the zero-initialised output layer is randomised so that the error check compares non-zero outputs).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from audiodiff.kernels import diffwave_triton  # noqa: E402


def build_net(args) -> torch.nn.Module:
    if args.model:
        from audiodiff.vocoder import Vocoder

        net = Vocoder.from_pretrained(args.model, device="cuda").net
    else:  # recipes/speech.yaml's model: DiffWave's defaults are BASE (30 layers, 64 channels, cycle 10, 80 mels)
        from audiodiff.models import DiffWave

        net = DiffWave(residual_channels=args.channels or 64)
    net = net.float().cuda().eval().requires_grad_(False)
    if not net.output_proj.weight.any():  # untrained: give the output layer weights so outputs are non-zero
        torch.manual_seed(1)
        with torch.no_grad():
            net.output_proj.weight.normal_(0, net.output_proj.in_channels ** -0.5)
            net.output_proj.bias.normal_(0, 0.1)
    return net


def graphed(fn):
    """``fn`` recorded in a CUDA graph (warm-up on a side stream first); returns the replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def time_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="exported model directory (default: random BASE DiffWave of recipes/speech.yaml)")
    ap.add_argument("--channels", type=int, help="residual channels of the random model (64 BASE, 128 LARGE)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sample-rate", type=int, default=22050)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--steps", type=int, default=6, help="sampling steps for the x real time figure")
    ap.add_argument("--sweep", action="store_true", help="also time every BLOCK_T / num_warps / stages choice")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernel_check: no CUDA device found; this benchmark needs a GPU (the kernel is tested on the "
                 "CPU by tests/test_kernels.py through Triton's interpreter)")
    if not diffwave_triton.available():
        sys.exit("kernel_check: triton is not importable; install it (pip install triton)")
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true float32
    torch.backends.cudnn.allow_tf32 = False

    net = build_net(args)
    frames = round(args.seconds * args.sample_rate / net.hop_length)
    T = frames * net.hop_length
    audio_s = T / args.sample_rate
    g = torch.Generator(device="cuda").manual_seed(0)
    mel = -5 + 2 * torch.randn(args.batch, net.n_mels, frames, device="cuda", generator=g)
    x = torch.randn(args.batch, 1, T, device="cuda", generator=g)
    with torch.no_grad():
        cond = net.upsample(mel)
    net_bf16 = copy.deepcopy(net).bfloat16()
    cond_bf16, x_bf16 = cond.bfloat16(), x.bfloat16()
    fused = diffwave_triton.FusedDiffWave(net, dtype=torch.bfloat16)
    C = fused.channels
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; DiffWave {len(net.layers)} layers, C={C}, "
          f"n_mels={net.n_mels}; batch {args.batch}, T={T} ({audio_s:.2f} s); "
          f"BLOCK_T={fused.block_t}, num_warps={fused.num_warps}, stages={fused.stages}")

    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "layers": len(net.layers),
              "channels": C, "batch": args.batch, "T": T, "audio_s": audio_s, "block_t": fused.block_t,
              "num_warps": fused.num_warps, "stages": fused.stages, "accuracy": [], "timing": [], "sweep": []}
    print("\nrelative L2 error vs eager fp32")
    print(f"{'t':>5} {'fused bf16':>12} {'eager bf16':>12}")
    with torch.no_grad():
        for step in (1.0, 10.0, 40.0):
            t = torch.full((args.batch,), step, device="cuda")
            ref = net(x, t, cond=cond)
            err_fused = rel_l2(fused(x, t, cond=cond), ref)
            err_bf16 = rel_l2(net_bf16(x_bf16, t, cond=cond_bf16), ref)
            print(f"{step:5.0f} {err_fused:12.3e} {err_bf16:12.3e}")
            result["accuracy"].append({"t": step, "fused_bf16": err_fused, "eager_bf16": err_bf16})

    t = torch.full((args.batch,), 10.0, device="cuda")
    modes = {"eager fp32": lambda: net(x, t, cond=cond),
             "eager bf16": lambda: net_bf16(x_bf16, t, cond=cond_bf16),
             "fused bf16": lambda: fused(x, t, cond=cond)}
    print(f"\ntime per forward (median of {args.repeats}); x real time = {audio_s:.2f} s / ({args.steps} x forward)")
    print(f"{'mode':<18} {'ms':>9} {'x real time':>12}")
    with torch.no_grad():
        for name, fn in modes.items():
            for graph in (False, True):
                label = name + (" graph" if graph else "")
                ms = time_ms(graphed(fn) if graph else fn, args.repeats)
                xrt = audio_s * args.batch / (args.steps * ms / 1000)
                print(f"{label:<18} {ms:9.3f} {xrt:12.1f}")
                result["timing"].append({"mode": label, "ms": ms, "x_real_time": xrt})
                torch.cuda.empty_cache()
        if args.sweep:
            print("\nfused bf16 graph, by launch configuration")
            print(f"{'BLOCK_T':>7} {'warps':>5} {'stages':>6} {'ms':>9}")
            for block_t in (32, 64, 128):
                for warps in (4, 8):
                    for stages in (2, 3, 4):
                        try:
                            variant = diffwave_triton.FusedDiffWave(net, torch.bfloat16, block_t=block_t,
                                                                    num_warps=warps, stages=stages)
                            ms = time_ms(graphed(lambda: variant(x, t, cond=cond)), args.repeats)
                        except Exception as err:  # e.g. out of shared memory or registers for this tile
                            print(f"{block_t:7d} {warps:5d} {stages:6d}   failed: {type(err).__name__}: "
                                  f"{str(err)[:80]}")
                            continue
                        print(f"{block_t:7d} {warps:5d} {stages:6d} {ms:9.3f}")
                        result["sweep"].append({"block_t": block_t, "num_warps": warps, "stages": stages, "ms": ms})
    if args.out:
        import json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
