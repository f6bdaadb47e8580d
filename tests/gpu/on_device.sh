#!/bin/bash
# The GPU checks in one go, on a lent machine (docs/development.md, "On a GPU"): this
# checkout's package in a venv over the image's torch, tests/gpu, then the cost of a
# training step in alternating rounds.  Needs .gpu/ (tests/gpu/kit.sh).  GPU_TESTS picks
# the tests (default tests/gpu), GPU_LOG keeps pytest's whole output, STEP_ROUNDS the
# rounds of the step's cost (default 2).
set -u
TORCH_SITE=$(python3 -c "import torch,os;print(os.path.dirname(os.path.dirname(torch.__file__)))")
python3 -m venv /tmp/v
echo "$TORCH_SITE" > "$(/tmp/v/bin/python -c 'import site;print(site.getsitepackages()[0])')/image.pth"
/tmp/v/bin/python -m pip install -q --no-index --no-deps --no-compile .gpu/*.whl
export PATH=/tmp/v/bin:$PATH PYTHONUNBUFFERED=1 CPATH=$PWD/.gpu/include
ldconfig -p | grep -q "libunwind.so.8 " ||
    { cp .gpu/libunwind.so.8 /usr/lib/x86_64-linux-gnu/ && ldconfig; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
timeout "${GPU_TEST_SECONDS:-330}" python3 -m pytest -q -p no:cacheprovider ${GPU_TESTS:-tests/gpu} 2>&1 |
    tee "${GPU_LOG:-/tmp/gpu-tests.log}" | tail -60
echo "== a training step's cost (bench/torch_cuda_step.py), alternating rounds; the"
echo "   tensors' part alone: host sampling off (-c 2^40), every tensor still recorded"
STEP="python3 bench/torch_cuda_step.py 100"
for round in $(seq "${STEP_ROUNDS:-2}"); do for batch in 512 8192; do
    echo "round $round batch $batch plain:   $($STEP $batch)"
    echo "round $round batch $batch sampler: $(mem_profiler run -o /tmp/b_ -- \
        $STEP $batch 2>/dev/null)"
    echo "round $round batch $batch tensors: $(mem_profiler run -c 1099511627776 -o /tmp/b_ -- \
        $STEP $batch 2>/dev/null)"
done; done
