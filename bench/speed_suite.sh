#!/usr/bin/env bash
# Every speed figure of docs/benchmarks.md and docs/performance.md in one command, on one GPU.
# Usage: bench/speed_suite.sh DATA_ROOT OUT_DIR [PART]
#   DATA_ROOT holds speech-22k/test: the clips' mel is that of
#   LJ001-0027 tiled to 10 s. PART: all (default), synth (synthesis and the layer kernel, the bundled model) or
#   train (training steps/s at batch 16 and 32, compiled, bf16). Each bench writes OUT_DIR/NAME.json and prints
#   its rows; docs/benchmarks.md has the reference DiffWave's rows beside ours.
#   CLIP_SECONDS (default 10) and REPEATS (default 5) shorten a smoke run; TRAIN_STEPS (default 100) likewise.
set -euo pipefail
data=$1 out=$2 part=${3:-all}
case $part in all|synth|train) ;; *) echo "error: PART must be all, synth or train, got '$part'" >&2; exit 2;; esac
clip=$data/speech-22k/test/LJ001-0027.flac
[ -f "$clip" ] || { echo "error: $clip not found; DATA_ROOT must hold speech-22k/test" >&2; exit 2; }
mkdir -p "$out"
cd "$(dirname "$0")/.."
synth() {
  python3 bench/synth_speed.py --audio "$clip" --seconds "${CLIP_SECONDS:-10}" --repeats "${REPEATS:-5}" \
    --modes eager-fp32 fused-bf16 "$@"
}
if [ "$part" != train ]; then
  echo "== synthesis, batch 1, 6 and 50 steps, default refinement"
  synth --steps 6 50 --batch 1 --out "$out/synth_b1.json"
  echo "== the same, raw output (--refine 0)"
  synth --steps 6 50 --batch 1 --refine 0 --out "$out/synth_b1_raw.json"
  echo "== 16 clips at once, 6 steps"
  synth --steps 6 --batch 16 --out "$out/synth_b16.json"
  echo "== one forward of the fused layer kernel against the torch layers"
  python3 bench/kernel_check.py --model audiodiff/pretrained/speech-22k --seconds "${CLIP_SECONDS:-10}" \
    --out "$out/kernel.json"
fi
if [ "$part" != synth ]; then
  for batch in 16 32; do
    echo "== training, batch $batch, compiled, bf16"
    python3 bench/train_speed.py --compile --batch "$batch" --steps "${TRAIN_STEPS:-100}" --out "$out/train_b$batch.json"
  done
fi
echo "wrote $out"
