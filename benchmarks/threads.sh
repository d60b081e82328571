#!/bin/bash
# one training epoch (and generation) with torch threads = 1 vs all cores (2) on the shared VM
export PYTHONPATH=/work/wt-ux/src
unset OMP_NUM_THREADS MKL_NUM_THREADS
F=/work/main/.venv/bin/fastmc
for rep in 1 2; do
for t in 1 2; do
  rm -rf m_t$t
  echo "== rep $rep threads $t load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "wall %e s" nice -n 10 $F train store -o m_t$t --model beta-vae --epochs 2 --batch-size 1000 --batches-per-epoch 20 --seed 0 --threads $t --device cpu 2>&1 | tail -2
  /work/main/.venv/bin/python -c "
import json; h=json.load(open('m_t$t/history.json')); print('history keys', list(h)[:8])
print(h if len(str(h))<600 else str(h)[:600])"
  /usr/bin/time -f "gen wall %e s" nice -n 10 $F generate m_t$t -n 20000 --seed 0 --threads $t -o gen_t$t.parquet 2>&1 | tail -2
done
done
