# Shared set-up of the device scripts, sourced from the repository root: PY and PYTHONPATH
# (the carried wheels of .whl/ installed under /tmp/pfx; with LOCAL=1 this checkout's .venv
# instead, for a rehearsal on the CPU) and machine_info (the GPU, torch and CPU, on stdout).
R=$PWD
if [ -z "${LOCAL:-}" ]; then
  # --prefix, not --target: pythia8mc's settings database (share/Pythia8) is a data file that
  # --target drops (the 2026-11-29 run lost every Pythia lane to it)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --prefix /tmp/pfx .whl/*.whl || exit 1
  export PYTHONPATH=$R/src:$(echo /tmp/pfx/lib/python3*/site-packages); PY=python3
else
  export PYTHONPATH=$R/src; PY=$R/.venv/bin/python
fi
machine_info() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import torch,sys;print(sys.version, torch.__version__, torch.cuda.is_available())"
    lscpu | grep -E "Model name|^CPU\(s\)"; } 2>&1
}
