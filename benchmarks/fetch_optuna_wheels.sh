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

# shellcheck source=scripts/wheels.sh
. "scripts/wheels.sh"

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

fetch_wheels "${PACKAGES[@]}"
