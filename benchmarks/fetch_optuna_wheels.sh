#!/usr/bin/env bash
# Download the wheels that benchmarks/tune_quality.py's Optuna competitors (and its plots) need
# on the GPU machine (Python 3.12, x86_64, no network) into .whl/. The GPU image already has
# torch, numpy, scipy and botorch; optuna's other requirements are fetched here, and with
# PLOTS=1 (the default) matplotlib's. Install them there with
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/src
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEST=${DEST:-.whl}
# greenlet is optional for optuna, but without it GPSampler optimizes its acquisition one
# start at a time (it warns), which would make its latency look worse than users see it
PACKAGES=(optuna==5.0.0 alembic colorlog sqlalchemy tqdm PyYAML packaging Mako MarkupSafe
          typing_extensions greenlet)
# kiln's precision="fp8" (training and deploy) and benchmarks/train_fp8.py
PACKAGES+=(torchao==0.18.0)
if [[ "${PLOTS:-1}" == 1 ]]; then
    PACKAGES+=(matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing python-dateutil
               six tzdata)
fi

mkdir -p "$DEST"
for spec in "${PACKAGES[@]}"; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$DEST" "$spec"
done

# What each wheel asks for, so a requirement the list above misses shows up here.
for wheel in "$DEST"/*.whl; do
    requires=$(unzip -p "$wheel" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' \
        | sed 's/^Requires-Dist: //' | tr '\n' ' ' || true)
    echo "$(basename "$wheel"): ${requires:-(no requirements)}"
done
echo "total: $(du -ch "$DEST"/*.whl | tail -1 | cut -f1) in $(ls "$DEST"/*.whl | wc -l) wheels"
