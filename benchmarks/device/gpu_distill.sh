#!/bin/bash
# fastmc device run (issue 13, session 13): flows trained on refined samples of a refined flow
# ("distillation" of the classifier refinement into the flow).  On the GPU: the teacher model
# MODEL (a flow with its refiner.safetensors) generates NR refined events (rejection), they are
# joined with the teacher's own training events into one store, and the flows of VARIANTS are
# trained on it concurrently (batch BS), each for as many epochs of 50 batches as fit TRAIN_S seconds
# (measured by a 2-epoch probe of all of them at once, so that the cosine rate ends at the last
# epoch).  Then gen_speed.py on SPEED_MODEL.  The trained model directories come back as tar
# files under $OUT; their whole-event evaluation runs on the CPU (docs/results.md, session 13).
# Inputs carried with the call (not committed): .whl/ (cp312 wheels: zuko, uproot, awkward,
# awkward_cpp, vector, cramjam), .dev/ (MODEL and SPEED_MODEL directories without checkpoints,
# data/ttbar_60k_s4.parquet, data/ttbar_40k_s8.parquet: `fastmc simulate ttbar -n N --seed S`).
# Rehearse on the CPU: LOCAL=1 DEV=cpu NR=3000 TRAIN_S=20 bash benchmarks/device/gpu_distill.sh
set -u
R=$PWD; O=${OUT:-/tmp/devout}; W=${WORK:-/tmp/wd}; DEV=${DEV:-cuda}
rm -rf "$W"; mkdir -p "$W"/{log,m} "$O"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T0=$(date +%s)
. benchmarks/device/env.sh
F="$PY -m fastmc"; D=.dev/data
MODEL=${MODEL:-.dev/m200}; SPEED_MODEL=${SPEED_MODEL:-.dev/m200_t100}
NR=${NR:-800000}; TRAIN_S=${TRAIN_S:-270}; BS=${BS:-2048}; CFG=src/fastmc/configs/flow_large.yaml
# name|extra training flags (each variant: flow_large.yaml plus these)
VARIANTS=${VARIANTS:-"large| wide|--set=hidden=256 deep|--set=transforms=10"}
t() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$W/log/timeline.txt"; }
t "start dev=$DEV $(nproc) cores"
machine_info > "$W/log/machine.txt"

OMP_NUM_THREADS=16 $F generate "$MODEL" -n "$NR" --seed 101 --device "$DEV" --threads 16 \
  --refine-mode reject --batch-size "${GEN_BATCH:-100000}" -o "$W/r.parquet" > "$W/log/gen.log" 2>&1 || { t "generate failed"; cat "$W/log/gen.log"; }
t "refined events: $(tail -c 400 "$W/log/gen.log" | tr '\n' ' ')"
$F prepare "$W/r.parquet" $D/ttbar_60k_s4.parquet $D/ttbar_40k_s8.parquet -o "$W/std" --val 0.05 \
  --test 0 --seed 0 > "$W/log/prep.log" 2>&1 || { t "prepare failed"; cat "$W/log/prep.log"; }
t "store ready"

train() {  # name, epochs, logfile, extra flags...
  local name=$1 ep=$2 log=$3; shift 3
  # shellcheck disable=SC2068
  $F train "$W/std" -o "$W/m/$name" --config $CFG --epochs "$ep" --batch-size "$BS" --device "$DEV" --threads 1 $@ > "$log" 2>&1
}
# probe: 2 epochs of every variant at once -> seconds per epoch when they share the GPU
for v in $VARIANTS; do n=${v%%|*}; x=${v#*|}; train "probe_$n" 2 "$W/log/probe_$n.log" $x & done; wait
declare -A EP
for v in $VARIANTS; do n=${v%%|*}
  s=$(grep -o "(\([0-9.]*\) s)" "$W/log/probe_$n.log" | tail -1 | tr -d '(s) ')
  EP[$n]=$($PY -c "print(max(5, int($TRAIN_S / max(float('${s:-1}'), 0.01))))")
  t "probe $n: ${s:-?} s/epoch -> ${EP[$n]} epochs"
done
rm -rf "$W"/m/probe_*
for v in $VARIANTS; do n=${v%%|*}; x=${v#*|}
  train "$n" "${EP[$n]}" "$W/log/train_$n.log" $x --max-minutes $(( TRAIN_S / 60 + 2 )) &
done; wait
for v in $VARIANTS; do n=${v%%|*}; t "train $n: $(tail -c 250 "$W/log/train_$n.log" | tr '\n' ' ')"; done

if [ -d "$SPEED_MODEL" ]; then
  OMP_NUM_THREADS=16 timeout "${SPEED_LIMIT:-120}" $PY benchmarks/device/gen_speed.py "$SPEED_MODEL" \
    --device "$DEV" --batch 10000,100000 --threads 16 --events "${SPEED_EVENTS:-100000}" \
    --json "$W/log/speed.json" > "$W/log/speed.md" 2>&1
  t "speed done"
fi
cp "$W/log/timeline.txt" "$O"/; [ -f "$W/log/speed.md" ] && cp "$W/log/speed.md" "$O"/
tar -cf "$O/logs.tar" -C "$W" log
for v in $VARIANTS; do n=${v%%|*}
  [ -f "$W/m/$n/weights.safetensors" ] || continue
  tar -cf - -C "$W/m" --exclude='checkpoint*' "$n" | split -b 15m -d - "$O/model_$n.tar."
done
t "done"; ls -la "$O"
