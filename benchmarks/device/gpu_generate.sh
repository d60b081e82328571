#!/bin/bash
# fastmc device run (issue 13, session 11): generation events/s of one model on the GPU, alone
# and refined (the flow on the GPU; the refiner's features and trees on 16 and 2 CPU threads).
# Inputs carried with the call (not committed): .whl/ (cp312 wheels: zuko, uproot, awkward,
# awkward_cpp, vector, cramjam) and the model directory MODEL (config.json, weights.safetensors,
# refiner.safetensors).  Results: docs/benchmarks.md.
set -u
R=$PWD; O=${OUT:-/tmp/devout}; mkdir -p "$O"
. benchmarks/device/env.sh
export PYTHONUNBUFFERED=1
M=${MODEL:-.dev/m450fast}; N=${EVENTS:-200000}
machine_info | tee "$O/machine.txt"
timeout ${LIMIT:-330} $PY benchmarks/device/gen_speed.py "$M" --device cuda --batch 10000,100000 \
  --threads 16,2 --events "$N" --json "$O/speed_cuda.json" 2>&1 | tee "$O/speed_cuda.md"
