#!/bin/bash
# Threads benchmark (docs/benchmarks.md, "Threads"): one training of 2 epochs and one
# generation of 20k events with torch threads = 1 vs 2 (all cores of the 2-core VM), twice.
# Run in a folder holding an event store `store/` (fastmc prepare ... -o store).
set -e
unset OMP_NUM_THREADS MKL_NUM_THREADS
F=${FASTMC:-fastmc}
for rep in 1 2; do
  for t in 1 2; do
    rm -rf "m_t$t"
    echo "== rep $rep threads $t load $(cut -d' ' -f1-3 /proc/loadavg)"
    $F train store -o "m_t$t" --model beta-vae --epochs 2 --batch-size 1000 \
      --batches-per-epoch 20 --seed 0 --threads "$t" --device cpu 2>&1 | tail -1
    $F generate "m_t$t" -n 20000 --seed 0 --threads "$t" -o "gen_t$t.parquet" 2>&1 | tail -1
  done
done
