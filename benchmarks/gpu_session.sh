#!/usr/bin/env bash
# One GPU session's checks, sized for a short lease (about 10 minutes with the defaults):
#   1. the training step against normflows' Glow at the course's size (L=3, K=16, hidden 512,
#      batch 64; benchmarks/glow_step.py --devices cuda),
#   2. the peak memory of a K=16 step, plain and memory_saving against normflows, on the CPU
#      and with torch.cuda.max_memory_allocated (benchmarks/memory.py), and
#   3. the course's model trained on an image folder for TRAIN_SECONDS (pyro-glow train
#      --time-limit): images/s, the bits/dim curve, sample grids at T = 0, 0.5, 0.7, 1 and the
#      latent interpolation.
# Everything but the checkpoint lands in OUT/gpu_session.tar.gz, the log also in OUT/log.txt.
#
#   bash benchmarks/gpu_session.sh IMAGE_FOLDER [TRAIN_SECONDS] [OUT]
#
# DEVICE=cpu makes a dry run of the script on a machine without a GPU (the step benchmark is
# then skipped). COMPILE=1 trains with --compile (its compilation counts against TRAIN_SECONDS). On a machine without network, Python packages it lacks (pyro-ppl, pyro-api, normflows) can
# travel as wheels in .whl/: they are installed into a temporary folder first.
set -euo pipefail
data=${1:?usage: gpu_session.sh IMAGE_FOLDER [TRAIN_SECONDS] [OUT]}
seconds=${2:-300}
out=${3:-${OUT:-runs/gpu}}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
work=$(mktemp -d)
mkdir -p "$out"
if [ -d .whl ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .whl/*.whl
    export PYTHONPATH="$work/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# A failing part is reported and the next one still runs.
part() { "$@" || echo "pyro-glow gpu_session: failed with status $?: $*"; }
{
    part nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    part "$python" -c "import torch, pyro; print('torch', torch.__version__, 'pyro', pyro.__version__)"
    if [ "$device" = cuda ]; then
        part "$python" benchmarks/glow_step.py --devices cuda --repeats 5 \
            --json "$work/glow_step.json"
        part "$python" benchmarks/memory.py --repeats 3 --json "$work/memory.json"
    fi
    part "$python" -m pyro_glow train "folder:$data" --levels 3 --flow-steps 16 --hidden 512 \
        --batch-size 64 --device "$device" --steps 100000 --time-limit "$seconds" \
        --log-every 20 --checkpoint-every 1000 --out "$work/train" ${COMPILE:+--compile}
} 2>&1 | tee "$work/log.txt"
rm -f "$work/train/checkpoint.pt"
cp "$work/log.txt" "$out/log.txt"
tar czf "$out/gpu_session.tar.gz" -C "$work" --ignore-failed-read log.txt glow_step.json \
    memory.json train
echo "wrote $out/log.txt and $out/gpu_session.tar.gz"
