#!/usr/bin/env bash
# An ablation in ONE device call of at most 10 minutes: six variants trained from scratch on the same data
# for the same wall-clock, side by side on one GPU, then raw (and, from the same pass, refined) output at 2, 6 and
# 50 steps on the first 16 and 10 files of the two test splits.
#
#   bench/ablation.sh stage                    here, once: stages .data/ and .whl/ and prints the device call
#   bench/ablation.sh run                      on the device (run with carry [".whl", ".data"], timeout_s 600)
#   bench/ablation.sh unpack FILES_AT DEST     here: untars what came back into DEST/<variant>/
#   python bench/ablation_render.py score DEST/<variant>/renders --data $DATA/speech-22k/test \
#       $DATA/speech-16k-multi/test --out DEST/<variant>/scores.json     (every metric, raw and refined)
#
# Variants (VARIANTS picks a subset, COMBO replaces the last one's settings):
#   plain     recipes/speech.yaml as it is
#   energy    + diffusion.prior=energy       (PriorGrad)
#   envelope  + diffusion.prior=envelope     (SpecGrad)
#   mel       + train.mel_loss=1
#   stft      + train.stft_loss=1
#   combo     + diffusion.prior=envelope + train.mel_loss=1: the best guess (the mel loss was the one change that
#             helped in docs/quality.md's runs; the envelope prior is SpecGrad's gain over PriorGrad)
#   ref       + the reference DiffWave's mel scaling ([0, 1] for speech) and He-normal initialisation
#   refmel    ref + train.mel_loss=1
#   refcombo  ref + combo
#   dw        the reference DiffWave's own mel (preset diffwave) and initialisation
#   refmel16  refmel in fp16 (the reference's precision) instead of bf16
#   refmel10  ref + train.mel_loss=10
#
# The plan and its arithmetic (H100/H200, recipes/speech.yaml, batch 16, compiled, bf16; docs/benchmarks.md,
# docs/quality.md):
# - Concurrent, not sequential. Solo, a run trains at 20-24 steps/s once compiled; three side by side gave about
#   10 steps/s each, 1.5x the solo throughput. Sequentially, six runs in ~400 s of training time would get ~65 s
#   each, of which compilation takes 60-90 s: nothing left. Side by side they share ~30-33 steps/s: ~5.5 each.
#   Memory: 6 x 9.4 GB = 56 GB, inside 78 GB. CPU: 16 cores for 6 trainers with 2 loader workers each.
# - Compilation once: a warm-up run (3 steps, ~60-90 s) fills Inductor's FX-graph and AOT-autograd caches and
#   Triton's kernel cache, so the six start in ~20-30 s instead of compiling six times over on 16 cores.
# - Budget, seconds: pip 15 + warm-up ~75 + trainer start-up 25 + training TRAIN + export/render RENDER_S (90) +
#   tar and margin MARGIN_S (35) = 575 (LIMIT, the call's 600 less 25 s), so TRAIN ~ 335 s. train.max_minutes is computed after the
#   warm-up from what is left (it counts the loop's own time; the 25 s of start-up before it are subtracted; a
#   trainer still running 45 s after its share is stopped with SIGTERM, on which it saves a checkpoint). With
#   ~30 s of it spent tracing and loading the cached kernels, ~305 s at ~5.5 steps/s: about 1,700 steps per
#   variant, short of 8-10 minutes alone on the GPU (~11,000 steps), and longer than the 1,600 steps
#   of docs/quality.md's runs, which were too short to decide. A warm machine keeps runs/: `bench/ablation.sh run` again
#   resumes every variant for another TRAIN (max_minutes grows by it) and renders again.
# - Rendering: 4 s from each of 32 files (16 per split) at 2 + 6 + 50 steps is ~7,400 audio-seconds of network
#   evaluation per variant; at ~360x real time per 6 steps (docs/performance.md) that is ~3 s of GPU, the rest
#   is graph capture, refinement and CPU metrics: six side by side in RENDER_S.
# - What comes back (at most 8 files, each under 16 MB): one tar per variant with its raw FLAC (16-bit, 22.05 kHz:
#   3 rows x 32 files x 4 s = 384 s, ~13 MB at a FLAC ratio of 0.75), metrics.json (fast metrics of raw and
#   refined output, from one sampling pass), its training log and config.yaml; summary.tar with the plan's
#   timings, the warm-up log and nvidia-smi. A tar over 15.5 MB drops its 2-step rows, 16 kHz split first.
#   Refined audio is recomputed here by `ablation_render.py score` (a function of the raw output and the mel).
# - Data: the tree carried is at most 64 MiB: the code (~12.8 MB), wheels (2.3 MB), speech-22k/train (44.7 MB)
#   and the first 16 files of each test split (6.5 MB) fit (66.3 MB = 63.3 MiB); speech-22k/valid does not, so
#   validation uses speech-22k/test's crops (a logged loss only, never trained on; valid_every is off anyway).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

ALL_VARIANTS="plain energy envelope mel stft combo ref refmel refcombo dw refmel16 refmel10"
VARIANTS=${VARIANTS:-$ALL_VARIANTS}
LIMIT=${LIMIT:-575}  # the call's 600 s less 25: the tars must be written before the device's timeout
RENDER_S=${RENDER_S:-150}  # five renderers side by side took over 110 s for 2 rows of 16 files
MARGIN_S=${MARGIN_S:-35}
SECONDS_PER_FILE=${SECONDS_PER_FILE:-4}
ROWS=${ROWS:-6 2 50}  # sampling steps, the most important first: a call that runs out of time has it
TRAIN_DATA=.data/speech-22k/train
TESTS=".data/speech-22k/test .data/speech-16k-multi/test"
EXTRA_SETS=${EXTRA_SETS:-}  # appended to every training command (a CPU dry run: a tiny model, no compile)
TRAIN_MINUTES=${TRAIN_MINUTES:-}  # a fixed training time per variant (a time-to-quality run) instead of what is left
SPEED=${SPEED:-}  # set: bench/train_speed.py (compiled, 200 steps) of every variant after rendering, one at a time
SPEED_S=${SPEED_S:-110}  # the seconds kept for it
RAW_WEIGHTS=${RAW_WEIGHTS:-}  # variants also rendered from their raw (not EMA) weights, into renders/raw-weights/
LOADER=${LOADER:-}  # set: bench/loader_speed.py from disk with 14 workers first (the 16-core figure, at most 40 s)

REF="--set model.mel_shift=9.21 --set model.mel_scale=0.087 --set model.init=kaiming"
settings() {
  case "$1" in
    plain) echo "" ;;
    energy) echo "--set diffusion.prior=energy" ;;
    envelope) echo "--set diffusion.prior=envelope" ;;
    mel) echo "--set train.mel_loss=1" ;;
    stft) echo "--set train.stft_loss=1" ;;
    combo) echo "${COMBO:---set diffusion.prior=envelope --set train.mel_loss=1}" ;;
    ref) echo "$REF" ;;
    dw) echo "--set mel.preset=diffwave --set model.init=kaiming" ;;  # the reference's own mel and initialisation
    refmel16) echo "$REF --set train.mel_loss=1 --set train.precision=fp16" ;;
    refmel10) echo "$REF --set train.mel_loss=10" ;;
    refmel) echo "$REF --set train.mel_loss=1" ;;
    refcombo) echo "$REF --set diffusion.prior=envelope --set train.mel_loss=1" ;;
    *) echo "unknown variant $1 (expected one of $ALL_VARIANTS)" >&2; exit 2 ;;
  esac
}

stage() {
  local shared="$root/../shared"
  [ -d "$shared/data/speech-22k/train" ] || { echo "no $shared/data/speech-22k: run from a checkout beside shared/" >&2; exit 2; }
  local exclude
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  for d in /.whl/ /.data/ /runs/; do grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"; done
  rm -rf .whl .data && mkdir -p .whl .data/speech-22k/test .data/speech-16k-multi/test
  cp "$shared"/device/wheels/*.whl .whl/
  cp -r "$shared/data/speech-22k/train" .data/speech-22k/train
  # The first 16 (speech-22k, REFERENCE.md's protocol) and 10 (speech-16k-multi, the acceptance run's) files in
  # find_audio_files' (sorted) order: 16 of both went over the carried tree's 64 MiB.
  for split in speech-22k/test:16 speech-16k-multi/test:10; do
    ls "$shared/data/${split%:*}" | grep -iE '\.(flac|wav)$' | sort | head -"${split#*:}" | while read -r f; do
      cp "$shared/data/${split%:*}/$f" ".data/${split%:*}/"; done
  done
  local code staged
  code=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  staged=$(du -cb .whl .data | tail -1 | cut -f1)
  echo "staged $(du -sh .data | cut -f1) data, $(ls .whl | wc -l) wheels; carried tree $(( (code + staged) / 1048576 )) MiB of 64"
  [ $(( code + staged )) -lt 67108864 ] || { echo "over 64 MiB: stage less" >&2; exit 1; }
  echo 'device call: run(command="bash bench/ablation.sh run", carry=[".whl", ".data"], timeout_s=600)'
}

log() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/ablation/plan.log"; }

train_cmd() {  # variant, minutes
  # shellcheck disable=SC2046
  python3 -m audiodiff train recipes/speech.yaml --data "$TRAIN_DATA" --run-dir "runs/abl-$1" --no-progress \
    --set data.valid_path=.data/speech-22k/test --set data.num_workers=2 --set train.max_minutes="$2" \
    --set train.valid_every=1000000 --set train.checkpoint_every=1000000 --set train.log_every=100 $(settings "$1") \
    $EXTRA_SETS
}

run() {
  T0=$(date +%s)
  OUT=${OUT:-$root/out}
  mkdir -p "$OUT/ablation" runs
  if [ -z "${SKIP_PIP:-}" ]; then  # the staged wheels, installed offline
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit 1
  fi
  export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
  nvidia-smi > "$OUT/ablation/nvidia-smi.txt" 2>&1
  log "variants: $VARIANTS; limit $LIMIT s, render $RENDER_S s, margin $MARGIN_S s"

  if [ -n "$LOADER" ]; then
    timeout 40 python3 bench/loader_speed.py --data "$TRAIN_DATA" --preload false --workers 14 --batches 3000 \
      --repeat 1000 --out "$OUT/ablation/loader.json" > "$OUT/ablation/loader.log" 2>&1
    log "loader (rc $?): $(tail -1 "$OUT/ablation/loader.log")"
  fi

  # 1. Warm the compile caches (a throwaway run of 3 steps of the same recipe).
  rm -rf runs/abl-warmup
  timeout 180 python3 -m audiodiff train recipes/speech.yaml --data "$TRAIN_DATA" --run-dir runs/abl-warmup \
    --no-progress --set data.valid_path=.data/speech-22k/test --set data.num_workers=2 --set train.max_steps=3 \
    --set train.valid_every=1000000 $EXTRA_SETS > "$OUT/ablation/warmup.log" 2>&1
  log "warm-up done (rc $?)"

  # 2. Train every variant side by side for the same wall-clock (resuming, on a warm machine, those that exist).
  local now left minutes pids=() v
  now=$(date +%s)
  local speed_reserve=0
  [ -n "$SPEED" ] && speed_reserve=$SPEED_S
  left=$(( T0 + LIMIT - now - RENDER_S - MARGIN_S - 25 - speed_reserve ))  # 25 s: a trainer's start-up
  if [ -n "$TRAIN_MINUTES" ]; then
    local fixed
    fixed=$(python3 -c "print(int($TRAIN_MINUTES * 60))")
    [ "$fixed" -le "$left" ] || { log "TRAIN_MINUTES=$TRAIN_MINUTES needs $fixed s, only $left s left: stopping"; exit 1; }
    left=$fixed
  fi
  [ "$left" -gt 60 ] || { log "only $left s left for training: stopping"; exit 1; }
  for v in $VARIANTS; do
    local done_min=0
    if [ -f "runs/abl-$v/config.yaml" ]; then  # resumed: its restored elapsed time counts towards max_minutes
      done_min=$(python3 - "$v" <<'PY'
import sys, torch
from audiodiff.training.checkpoint import list_checkpoints, load_checkpoint
ck = list_checkpoints(f"runs/abl-{sys.argv[1]}")
print(f"{float(load_checkpoint(ck[-1])['elapsed']) / 60:.3f}" if ck else "0")
PY
)
    fi
    minutes=$(python3 -c "print(round($done_min + $left / 60, 3))")
    train_cmd "$v" "$minutes" > "$OUT/ablation/train-$v.log" 2>&1 &
    pids+=($!)
    log "started $v (pid $!): max_minutes $minutes $(settings "$v")"
  done
  local deadline=$(( $(date +%s) + left + 45 ))
  # Wait, and stop by pid any trainer that overruns its budget by 45 s: SIGTERM, on which it saves a checkpoint.
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
    kill -0 "${pids[$i]}" 2>/dev/null && { log "stopping ${pids[$i]} (over time)"; kill "${pids[$i]}"; }
    wait "${pids[$i]}"; log "trainer ${pids[$i]} exited ($?)"
  done
  for v in $VARIANTS; do grep "steps/s" "$OUT/ablation/train-$v.log" | tail -2 | sed "s/^/$v: /" \
    | tee -a "$OUT/ablation/plan.log"; done

  # 3. Export and render every variant side by side, inside what is left.
  local render_left=$(( T0 + LIMIT - $(date +%s) - 20 ))
  [ "$render_left" -gt 10 ] || render_left=10
  local render_t0
  render_t0=$(date +%s)
  log "rendering, $render_left s left"
  pids=()
  for v in $VARIANTS; do
    ( python3 -m audiodiff export "runs/abl-$v" "runs/abl-$v/model" \
      && timeout $(( render_left - $(date +%s) + render_t0 )) python3 bench/ablation_render.py render --model "runs/abl-$v/model" --data $TESTS \
           --seconds "$SECONDS_PER_FILE" --rows $ROWS --out "runs/abl-$v/renders" ) > "$OUT/ablation/render-$v.log" 2>&1 &
    pids+=($!)
  done
  for v in $RAW_WEIGHTS; do
    ( python3 -m audiodiff export "runs/abl-$v" "runs/abl-$v/model-raw" --weights model \
      && timeout $(( render_left - $(date +%s) + render_t0 )) python3 bench/ablation_render.py render --model "runs/abl-$v/model-raw" --data $TESTS \
           --seconds "$SECONDS_PER_FILE" --rows $ROWS --out "runs/abl-$v/renders/raw-weights" ) > "$OUT/ablation/render-$v-raw.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; log "renderer $p exited ($?)"; done

  # 3b. Training cost per step, each variant alone on the GPU (the compiled backbone's cache is warm).
  if [ -n "$SPEED" ]; then
    for v in $VARIANTS; do
      # shellcheck disable=SC2046
      timeout $(( SPEED_S / $(echo $VARIANTS | wc -w) )) python3 bench/train_speed.py --compile --steps 200 \
        $(settings "$v") --out "$OUT/ablation/speed-$v.json" > "$OUT/ablation/speed-$v.log" 2>&1
      log "speed $v (rc $?): $(tail -1 "$OUT/ablation/speed-$v.log")"
    done
  fi

  # 4. One tar per variant (under 16 MB: 2-step rows dropped if need be), one for the plan and logs.
  for v in $VARIANTS; do
    cp "runs/abl-$v/config.yaml" "runs/abl-$v/renders/train-config.yaml" 2>/dev/null
    cp "$OUT/ablation/train-$v.log" "$OUT/ablation/render-$v.log" "runs/abl-$v/renders/" 2>/dev/null
    local drop=""
    for extra in "" speech-16k-multi-test/steps2-refine0 speech-22k-test/steps2-refine0; do
      [ -n "$extra" ] && drop="$drop --exclude=renders/$extra"
      # shellcheck disable=SC2086
      tar -cf "$OUT/$v.tar" -C "runs/abl-$v" $drop renders 2>/dev/null
      [ "$(stat -c %s "$OUT/$v.tar")" -lt 16252928 ] && break
    done
    log "$v.tar: $(du -h "$OUT/$v.tar" | cut -f1)${drop:+ (dropped:$drop)}"
  done
  log "done"
  tar -cf "$OUT/summary.tar" -C "$OUT" ablation && rm -rf "$OUT/ablation"
}

unpack() {
  local src=$1 dest=$2
  mkdir -p "$dest"
  for t in "$src"/*.tar; do
    local name
    name=$(basename "$t" .tar)
    mkdir -p "$dest/$name" && tar -xf "$t" -C "$dest/$name"
  done
  ls "$dest"
}

case "${1:-}" in
  stage) stage ;;
  run) run ;;
  unpack) unpack "$2" "$3" ;;
  *) echo "usage: bench/ablation.sh stage | run | unpack FILES_AT DEST" >&2; exit 2 ;;
esac
