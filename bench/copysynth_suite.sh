#!/usr/bin/env bash
# Every copy-synthesis figure of the bundled model's card, in parallel processes (one GPU, many CPU cores: the
# metrics run on the CPU). Usage: bench/copysynth_suite.sh MODEL_DIR DATA_ROOT OUT_DIR
#   DATA_ROOT holds speech-22k/test and speech-16k-multi/test (../shared/data, or what device/prep staged).
set -euo pipefail
model=$1 data=$2 out=$3
mkdir -p "$out"
run() { name=$1; shift; python3 -m audiodiff eval "$model" "$@" --out "$out/$name.json" > "$out/$name.log" 2>&1; }
run s22_6_r8     "$data/speech-22k/test" --steps 6 --baseline griffinlim &
run s22_6_r0     "$data/speech-22k/test" --steps 6 --refine 0 &
run s22_50_r8    "$data/speech-22k/test" --steps 50 --sampler ddpm --fast &
run s22_50_r0    "$data/speech-22k/test" --steps 50 --sampler ddpm --refine 0 --fast &
run m16_6_r8     "$data/speech-16k-multi/test" --steps 6 --baseline griffinlim &
run m16_6_r0     "$data/speech-16k-multi/test" --steps 6 --refine 0 --fast &
run m16_50_r8    "$data/speech-16k-multi/test" --steps 50 --sampler ddpm --fast &
run m16_6_r8_fb  "$data/speech-16k-multi/test" --steps 6 --full-band --baseline griffinlim --fast &
wait
for f in "$out"/*.log; do echo "== $(basename "$f" .log)"; grep -v "eval:" "$f" | tail -12; done
