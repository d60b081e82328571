#!/bin/bash
# fastmc device run (issues 13 and 14): Pythia on the CPU cores, trainings on the GPU, generation,
# whole-event evaluation.  Every lane is independent; whatever finished by the deadline is packed
# into at most 8 tar files under $OUT (the device tool's limits).  Run from the repository root:
#   SCALE=full|tiny  DEV=cuda|cpu  LOCAL=1 (use the local venv, no wheels)  DEADLINE=seconds
# Inputs, carried with the call (not committed): .whl/ (cp312 wheels of pythia8mc, fastjet, zuko,
# awkward, awkward_cpp, vector, uproot, cramjam) and .dev/data/ (ttbar_100k_s4.parquet,
# ttbar_20k_s2.parquet, ttbar_20k_s6.parquet: `fastmc simulate ttbar -n N --seed S`; the real
# file sqsq1_sq1400_neut800_chan1.csv split into its first 2,878 lines, sqsq_train.csv, and its
# last 1,233, sqsq_test.csv).  Results of the 2026-11-29 run: docs/results.md (issue 13).
# Rehearse on the CPU first: LOCAL=1 SCALE=tiny DEV=cpu bash benchmarks/device/gpu_run.sh
set -u
SCALE=${SCALE:-full}; DEV=${DEV:-cuda}
R=$PWD; O=${OUT:-/tmp/devout}; W=${WORK:-/tmp/w}
rm -rf "$W"; mkdir -p "$W"/{log,rep,gen,sim,m,st} "$O"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T0=$(date +%s)
. benchmarks/device/env.sh
F="$PY -m fastmc"; D=${DATA:-$R/.dev/data}
t() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$W/log/timeline.txt"; }
t "start scale=$SCALE dev=$DEV $(nproc) cores"
machine_info > "$W/log/machine.txt"

if [ "$SCALE" = full ]; then
  DEADLINE=${DEADLINE:-555}; M1=5; M2=3; MSEP=0.75; MQ=3; NG=20000; NGP=10000
  NW=10000; NWR=8000; NGL=12000; NST=20000; NSTR=8000; JW=3; JWR=2
  BIG="cfm_dim: 192, cfm_layers: 6, cfm_heads: 8"; SMALL="cfm_dim: 128, cfm_layers: 4, cfm_heads: 4"
  BS=1024; BPE=200; STEPS=32
else
  DEADLINE=${DEADLINE:-400}; M1=0.3; M2=0.2; MSEP=0.05; MQ=0.2; NG=400; NGP=300
  NW=120; NWR=100; NGL=120; NST=150; NSTR=100; JW=1; JWR=1
  BIG="cfm_dim: 32, cfm_layers: 2, cfm_heads: 2"; SMALL="cfm_dim: 32, cfm_layers: 1, cfm_heads: 2"
  BS=128; BPE=5; STEPS=4
fi
TR="--epochs 100000 --patience 0 --device $DEV --seed 0"
cfg() {  # name, yaml model_config body
  printf 'model: flow\nmodel_config: {%s}\n' "$2" > "$W/$1.yaml"; }
cfg big "mode: matching, $BIG, ode_steps: $STEPS, ode_solver: midpoint"
cfg small "mode: matching, $SMALL, ode_steps: $STEPS, ode_solver: midpoint"
cfg smallr "mode: matching, $SMALL, ode_steps: $STEPS, ode_solver: midpoint, max_jets: 14"
cfg coup "mode: coupling, transforms: 4, hidden: 128, bins: 8"
if [ -n "${NOMATCH:-}" ]; then cfg big "mode: coupling"; cfg small "mode: coupling"; cfg smallr "mode: coupling, max_jets: 14"; fi

run() {  # label, command...: logged, timed, never fatal
  local lab=$1; shift; t "$lab: start"; "$@" > "$W/log/$lab.log" 2>&1; local rc=$?; t "$lab: rc=$rc"; return $rc; }
ev() {  # label, reference, [--reference2 R2], generated...  (3 BLAS threads)
  local lab=$1; shift; OMP_NUM_THREADS=3 run "eval_$lab" $F evaluate --no-plots -o "$W/rep/$lab" "$@"; }
waitfile() { while [ ! -s "$1" ]; do sleep 2; [ $(( $(date +%s) - T0 )) -gt $((DEADLINE - 120)) ] && return 1; done; return 0; }

# slices of the carried ttbar sample for the 4-process model
slice() { $PY -c "import sys
from fastmc.io import read_events, write_events
e = read_events(sys.argv[1]); n = int(sys.argv[3]); write_events(sys.argv[2], e[:n], meta={**e.meta, 'n_events': min(n, len(e)), 'sliced_from': sys.argv[1]})" "$@"; }
slice "$D/ttbar_100k_s4.parquet" "$W/sim/tt_train.parquet" "$NW"

# ---------------------------------------------------------------- Pythia on the CPU cores
sim() { local out=$1 n=$2 jobs=$3 seed=$4; shift 4
  run "sim_$out" timeout $((DEADLINE - 200)) $F simulate "$@" -n "$n" --jobs "$jobs" --seed "$seed" -o "$W/sim/$out.tmp.parquet" \
    && mv "$W/sim/$out.tmp.parquet" "$W/sim/$out.parquet"; }
sim w_train $NW $JW 11 w_jets & sim w_ref $NWR $JWR 12 w_jets &
sim z_train $NW $JW 13 z_jets & sim z_ref $NWR $JWR 14 z_jets &
sim stop_train $NST $JW 15 stop_02 & sim stop_ref $NSTR 1 16 stop_02 &
for m in 1000 1400 1800 1600; do sim g$m $NGL $JWR $((20 + m / 100)) gluino_01 --param m_gluino=$m --param m_neutralino=100 & done

# ---------------------------------------------------------------- GPU lanes
lane_tt() {  # issue 13 headline: ttbar 100k, matching (and coupling at the same budget)
  run prep_tt_$1 $F prepare "$D/ttbar_100k_s4.parquet" -o "$W/st/tt_$1" --val 0.05 --test 0 --seed 0 || return
  run train_tt_$1 $F train "$W/st/tt_$1" -o "$W/m/tt_$1" --config "$W/$2.yaml" $TR --max-minutes $M1 \
      --batch-size $3 --batches-per-epoch $BPE --lr $4 || return
  run gen_tt_$1 $F generate "$W/m/tt_$1" -n $NG --seed 1 --device $DEV -o "$W/gen/tt_$1.parquet" || return
  ev tt_$1 -r "$D/ttbar_20k_s2.parquet" --reference2 "$D/ttbar_20k_s6.parquet" -g "$W/gen/tt_$1.parquet" -l "$1"
  run bench_tt_$1 $F bench "$W/m/tt_$1" --no-simulate --device $DEV --scale 0.2 --json
}
lane_sqsq() {  # issue 13: a real Dark Machines signal file (70 % train, the last 30 % the reference)
  run prep_sq $F prepare "$D/sqsq_train.csv" -o "$W/st/sq" --val 0.1 --test 0 --seed 0 || return
  run train_sq $F train "$W/st/sq" -o "$W/m/sq" --config "$W/smallr.yaml" $TR --max-minutes $MQ \
      --batch-size 256 --batches-per-epoch 25 --lr 5e-4 || return
  run gen_sq $F generate "$W/m/sq" -n 1233 --seed 1 --device $DEV -o "$W/gen/sq.parquet" || return
  ev sq -r "$D/sqsq_test.csv" -g "$W/gen/sq.parquet" -l matching
}
lane_stop() {
  waitfile "$W/sim/stop_train.parquet" || return
  run prep_stop $F prepare "$W/sim/stop_train.parquet" -o "$W/st/stop" --val 0.05 --test 0 --seed 0 || return
  run train_stop $F train "$W/st/stop" -o "$W/m/stop" --config "$W/small.yaml" $TR --max-minutes $M2 \
      --batch-size 512 --batches-per-epoch 100 --lr 5e-4 || return
  run gen_stop $F generate "$W/m/stop" -n $NG --seed 1 --device $DEV -o "$W/gen/stop.parquet" || return
  waitfile "$W/sim/stop_ref.parquet" && ev stop -r "$W/sim/stop_ref.parquet" -g "$W/gen/stop.parquet" -l matching
}
PROCS="ttbar w_jets z_jets stop_02"
ref_of() { case $1 in ttbar) echo "$D/ttbar_20k_s2.parquet";; w_jets) echo "$W/sim/w_ref.parquet";;
  z_jets) echo "$W/sim/z_ref.parquet";; stop_02) echo "$W/sim/stop_ref.parquet";; esac; }
lane_multi() {  # issue 14: one model over 4 processes against one model per process, same steps in total
  for f in w_train z_train stop_train; do waitfile "$W/sim/$f.parquet" || return; done
  slice "$W/sim/stop_train.parquet" "$W/sim/stop_train_part.parquet" $NW
  run prep_multi $F prepare "$W/sim/tt_train.parquet" "$W/sim/w_train.parquet" "$W/sim/z_train.parquet" \
      "$W/sim/stop_train_part.parquet" -o "$W/st/multi" --val 0.05 --test 0 --seed 0 || return
  run train_multi $F train "$W/st/multi" -o "$W/m/multi" --config "$W/small.yaml" $TR --max-minutes $M2 \
      --batch-size 512 --batches-per-epoch 100 --lr 5e-4 || return
  for p in $PROCS; do run gen_multi_$p $F generate "$W/m/multi" -n $NGP --process $p --seed 1 --device $DEV \
      -o "$W/gen/multi_$p.parquet"; done
}
lane_sep() {  # the separate models: trained one after another, each a quarter of the combined model's minutes
  for f in w_train z_train stop_train; do waitfile "$W/sim/$f.parquet" || return; done
  while ! grep -q "prep_multi: rc=0" "$W/log/timeline.txt"; do sleep 2; grep -q "prep_multi: rc=[1-9]" "$W/log/timeline.txt" && return; done
  for p in $PROCS; do
    run train_sep_$p $F train "$W/st/multi" --process $p -o "$W/m/sep_$p" --config "$W/small.yaml" $TR \
        --max-minutes $MSEP --batch-size 512 --batches-per-epoch 100 --lr 5e-4 \
      && run gen_sep_$p $F generate "$W/m/sep_$p" -n $NGP --seed 1 --device $DEV -o "$W/gen/sep_$p.parquet"
  done
  while ! grep -q "train_multi: rc=" "$W/log/timeline.txt"; do sleep 2; done
  for p in $PROCS; do while ! grep -q "gen_multi_$p: rc=" "$W/log/timeline.txt"; do sleep 2; done; done
  for p in $PROCS; do local r; r=$(ref_of $p); waitfile "$r" || continue
    ev multi_$p -r "$r" -g "$W/gen/multi_$p.parquet" -g "$W/gen/sep_$p.parquet" -l one-model -l separate &
  done; wait
}
lane_gluino() {  # issue 14: mass interpolation
  for m in 1000 1400 1800; do waitfile "$W/sim/g$m.parquet" || return; done
  run prep_gl $F prepare "$W/sim/g1000.parquet" "$W/sim/g1400.parquet" "$W/sim/g1800.parquet" -o "$W/st/gl" \
      --val 0.05 --test 0 --seed 0 || return
  run train_gl $F train "$W/st/gl" -o "$W/m/gl" --config "$W/small.yaml" $TR --max-minutes $M2 \
      --batch-size 512 --batches-per-epoch 100 --lr 5e-4 || return
  for m in 1600 1400; do run gen_gl$m $F generate "$W/m/gl" -n $NGP --process gluino_01 --param m_gluino=$m \
      --seed 1 --device $DEV -o "$W/gen/gl$m.parquet"; done
  waitfile "$W/sim/g1600.parquet" && ev gl -r "$W/sim/g1600.parquet" -g "$W/gen/gl1600.parquet" \
      -g "$W/gen/gl1400.parquet" -l interpolated-1600 -l trained-1400
}
lane_tt match big $BS 3e-4 & lane_tt coup coup 512 1e-3 & lane_sqsq &
lane_stop & lane_multi & lane_sep & lane_gluino &

# ---------------------------------------------------------------- deadline, then pack
while [ -n "$(jobs -r)" ] && [ $(( $(date +%s) - T0 )) -lt $DEADLINE ]; do sleep 3; done
t "packing (running lanes: $(jobs -r | wc -l))"
killtree() { for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do killtree "$c"; kill "$c" 2>/dev/null; done; }
killtree $$; sleep 1
nvidia-smi > "$W/log/nvidia-smi-end.txt" 2>&1
$PY - "$W" "$O" <<'EOF'
import os, sys, tarfile
w, o = sys.argv[1], sys.argv[2]
groups = [("results", ["log", "rep", "big.yaml", "small.yaml", "smallr.yaml", "coup.yaml", "m"]),
          ("gen", ["gen"]), ("sim", ["sim"]), ("models", ["m/tt_match", "m/multi", "m/gl"])]
LIMIT, TOTAL, FILES = 15 * 2**20, 60 * 2**20, 8
made, total = [], 0
for name, parts in groups:
    files = []
    for p in parts:
        p = os.path.join(w, p)
        if os.path.isfile(p):
            files.append(p)
        for root, _, fs in os.walk(p):
            files += [os.path.join(root, f) for f in fs if not f.endswith(".tmp.parquet") and "checkpoint" not in f
                      and not (name == "results" and f.endswith(".safetensors"))]
    k, size, tf = 0, 0, None
    for f in sorted(set(files)):
        s = os.path.getsize(f)
        if s > LIMIT or total + s > TOTAL:
            print("left out:", f, s); continue
        if tf is None or size + s > LIMIT:
            if tf: tf.close()
            if len(made) >= FILES:
                print("left out (8 files):", f); tf = None; continue
            k += 1; size = 0; made.append(f"{name}{k}.tar")
            tf = tarfile.open(os.path.join(o, made[-1]), "w")
        tf.add(f, arcname=os.path.relpath(f, w)); size += s; total += s
    if tf: tf.close()
print(sorted(os.listdir(o)), total)
EOF
t "done"
cat "$W/log/timeline.txt"
