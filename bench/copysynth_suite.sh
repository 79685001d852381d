#!/usr/bin/env bash
# Every copy-synthesis figure of the bundled model's card, in parallel processes (one GPU, many CPU cores: the
# metrics run on the CPU). Usage: bench/copysynth_suite.sh MODEL_DIR DATA_ROOT OUT_DIR [REFINE] [LIMIT] [PART]
#   DATA_ROOT holds speech-22k/test and speech-16k-multi/test;
#   REFINE is the number of mel-consistency iterations of the refined rows (default 32, the Vocoder's; raw rows: 0);
#   LIMIT the first files of each split (default 0: all 24 and 20);
#   PART: all (default), seeds (the default rows with seeds $SEEDS, next to Griffin-Lim with the same seeds) or
#   other (raw, 50 steps, full band). On an H100 machine with 16 cores: seeds about 8 minutes, other about 3.
# F0 RMSE turns on a few frames of a few files, so the default rows and Griffin-Lim run with several seeds
# (SEEDS, default "0 1 2 3") and bench/seeds.py pools them (docs/quality.md).
set -euo pipefail
model=$1 data=$2 out=$3 r=${4:-32} limit=${5:-0} part=${6:-all}
case $part in all|seeds|other) ;; *) echo "error: PART must be all, seeds or other, got '$part'" >&2; exit 2;; esac
mkdir -p "$out"
# Two of the eight runs once segfaulted at their first file. librosa.pyin is numba-compiled and numba caches to
# one folder, which parallel writers are a likely cause for, so each process gets its own cache.
run() {
  name=$1; shift
  NUMBA_CACHE_DIR="$out/.numba/$name" python3 -m audiodiff eval "$model" "$@" --limit "$limit" --out "$out/$name.json" \
    > "$out/$name.log" 2>&1
}
if [ "$part" != other ]; then
  for s in ${SEEDS:-0 1 2 3}; do
    run s22_6_r${r}_seed$s "$data/speech-22k/test" --steps 6 --refine $r --seed $s --baseline griffinlim &
    run m16_6_r${r}_seed$s "$data/speech-16k-multi/test" --steps 6 --refine $r --seed $s --baseline griffinlim &
  done
fi
if [ "$part" != seeds ]; then
  run s22_6_r0     "$data/speech-22k/test" --steps 6 --refine 0 &
  run s22_50_r$r    "$data/speech-22k/test" --steps 50 --sampler ddpm --refine $r --fast &
  run s22_50_r0    "$data/speech-22k/test" --steps 50 --sampler ddpm --refine 0 --fast &
  run m16_6_r0     "$data/speech-16k-multi/test" --steps 6 --refine 0 --fast &
  run m16_50_r$r    "$data/speech-16k-multi/test" --steps 50 --sampler ddpm --refine $r --fast &
  run m16_6_r${r}_fb  "$data/speech-16k-multi/test" --steps 6 --refine $r --full-band --baseline griffinlim --fast &
fi
wait
for f in "$out"/*.log; do echo "== $(basename "$f" .log)"; grep -v "eval:" "$f" | tail -12; done
here=$(dirname "$0")
for split in s22 m16; do
  ls "$out"/${split}_6_r${r}_seed*.json > /dev/null 2>&1 || continue
  echo "== $split, 6 steps, refine $r: pooled over seeds"
  python3 "$here/seeds.py" "$out"/${split}_6_r${r}_seed*.json
done
