#!/usr/bin/env bash
# Time to quality in one device call (issue 19's target): one recipe trained from scratch on speech-22k/train for
# MINUTES of wall-clock (train.max_minutes, compilation included), then its EMA and raw weights exported in fp16
# for scoring here (bench/ablation_render.py render --rows 6 --seconds 30 on the first 16 files of speech-22k/test,
# REFERENCE.md's protocol; then score). Runs alone or beside another job (then its figure is an upper bound on the
# time it needs alone).
#
#   run(command="MINUTES=5 bash bench/ttq_gpu.sh", carry=[".whl", ".data"], timeout_s=600)   (NAME, SETS: another variant)
#   SKIP_PIP=1 MINUTES=0.2 SETS="--set model.residual_layers=2 --set train.compile=false" bash bench/ttq_gpu.sh   (a CPU dry run)
set -uo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-refmel}
MINUTES=${MINUTES:-5}
SETS=${SETS:---set model.mel_shift=9.21 --set model.mel_scale=0.087 --set model.init=kaiming --set train.mel_loss=1}
OUT=${OUT:-$PWD/out}
RUN=runs/ttq-$NAME
mkdir -p "$OUT" runs
if [ -z "${SKIP_PIP:-}" ]; then  # the staged wheels, installed offline (SKIP_PIP: a dry run where they are installed)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-ttq \
    .whl/*.whl && export PYTHONPATH=/tmp/site-ttq:$PWD PYTHONUNBUFFERED=1 || exit 1
fi
rm -rf "$RUN"
# shellcheck disable=SC2086
python3 -m audiodiff train recipes/speech.yaml --data .data/speech-22k/train --run-dir "$RUN" --no-progress \
  --set data.valid_path=.data/speech-22k/test --set data.num_workers=4 --set train.max_minutes="$MINUTES" \
  --set train.valid_every=1000000 --set train.checkpoint_every=1000000 --set train.log_every=200 $SETS \
  > "$OUT/ttq-$NAME.log" 2>&1
echo "trainer exited ($?)" >> "$OUT/ttq-$NAME.log"
python3 -m audiodiff export "$RUN" "$OUT/ttq-$NAME" --fp16 >> "$OUT/ttq-$NAME.log" 2>&1
python3 -m audiodiff export "$RUN" "$OUT/ttq-$NAME-raw" --fp16 --weights model >> "$OUT/ttq-$NAME.log" 2>&1
