#!/usr/bin/env bash
# Few-step fine-tuning of the bundled model in ONE device call (docs/fewstep.md, "To measure" 1-3): train
# recipes/speech-fewstep.yaml from the bundled model for what the call's LIMIT leaves, export it (fp16), render
# its raw output at 2 (and 1, 4) steps on the staged test files, and time synthesis beside the bundled model.
#
#   bench/ablation.sh stage                      here, once (stages .data/ and .whl/)
#   run(command="LIMIT=560 bash bench/fewstep_gpu.sh", carry=[".whl", ".data"], timeout_s=600)
#   python bench/ablation_render.py score FILES_AT/renders --data DATA/speech-22k/test DATA/speech-16k-multi/test
# A second call continues from the first's export: copy it into .data/init/NAME (set test files aside to stay
# within the carried 64 MiB) and pass INIT=.data/init/NAME; the discriminators start afresh (they are not exported).
#
# Budget (seconds): pip 15, training start-up and compilation ~90, training TRAIN, export 10, renders ~60,
# speed ~45, margin 25: TRAIN = LIMIT - 245. If the compiled run fails at start-up it runs again eagerly.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
LIMIT=${LIMIT:-560}
OUT=${OUT:-$PWD/out}
RUN=runs/fewstep-2
EXTRA_SETS=${EXTRA_SETS:-}  # appended to the training command, e.g. "--set train.lr=1e-4"
INIT=${INIT:-}  # an exported model to start from instead of the bundled one (a second call: the export of the first)
TESTS=$(for d in .data/speech-22k/test .data/speech-16k-multi/test; do [ -d "$d" ] && echo "$d"; done)
mkdir -p "$OUT" runs
log() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/plan.log"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit 1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
(nvidia-smi --query-gpu=memory.used --format=csv -l 15 > "$OUT/memory.csv" 2>/dev/null &)

train() {  # minutes, extra settings
  python3 -m audiodiff train speech-fewstep --data .data/speech-22k/train --run-dir "$RUN" --no-progress \
    --set data.valid_path=.data/speech-22k/test --set data.num_workers=8 --set train.max_minutes="$1" \
    --set train.log_every=50 --set train.valid_every=1000000 --set train.checkpoint_every=1000000 ${INIT:+--init "$INIT"} \
    ${2:-} $EXTRA_SETS \
    >> "$OUT/train.log" 2>&1
}
minutes() { python3 -c "print(round(max(1.0, ($T0 + $LIMIT - 155 - $(date +%s)) / 60 - 1.5), 2))"; }

m=$(minutes); log "training $m minutes (compiled)"
t=$(date +%s); train "$m"; rc=$?
log "trainer exited ($rc)"
if [ $rc -ne 0 ] && [ $(( $(date +%s) - t )) -lt 200 ]; then
  rm -rf "$RUN"; m=$(minutes); log "again, eager: $m minutes"
  train "$m" "--set train.compile=false"; log "trainer exited ($?)"
fi
grep "steps/s" "$OUT/train.log" | tail -3 | tee -a "$OUT/plan.log"

python3 -m audiodiff export "$RUN" "$OUT/fewstep-2" --fp16 >> "$OUT/plan.log" 2>&1 || { log "export failed"; exit 1; }
left=$(( T0 + LIMIT - $(date +%s) - 60 ))
log "rendering ($left s)"
timeout $(( left > 20 ? left : 20 )) python3 bench/ablation_render.py render --model "$OUT/fewstep-2" \
  --data $TESTS --seconds 30 --rows 2 1 4 --out runs/fs-renders \
  > "$OUT/render.log" 2>&1
log "render exited ($?)"
drop=""  # under 16 MB to come back: the 4- and then the 1-step rows are dropped if need be (30 s rows 2 1 4 were over)
for rows in "" "steps4-*" "steps1-*"; do
  [ -n "$rows" ] && drop="$drop --exclude=$rows"
  # shellcheck disable=SC2086
  tar -cf "$OUT/renders.tar" -C runs $drop fs-renders
  [ "$(stat -c %s "$OUT/renders.tar")" -lt 16252928 ] && break
done
log "renders.tar: $(du -h "$OUT/renders.tar" | cut -f1)${drop:+ (dropped:$drop)}"
left=$(( T0 + LIMIT - $(date +%s) - 10 ))
if [ "$left" -gt 30 ]; then
  timeout $(( left / 2 )) python3 bench/synth_speed.py --model "$OUT/fewstep-2" --steps 2 1 --batch 1 16 --modes eager-fp32 fused-bf16 \
    --out "$OUT/fewstep-speed.json" > "$OUT/speed.log" 2>&1
  timeout $(( left / 2 )) python3 bench/synth_speed.py --steps 6 --batch 1 16 --modes eager-fp32 fused-bf16 --out "$OUT/bundled-speed.json" \
    >> "$OUT/speed.log" 2>&1
  log "speed done"
fi
cp -r "$RUN/logs" "$OUT/logs" 2>/dev/null
log "done"
