#!/usr/bin/env bash
# Download the wheels that Keras 3 needs on the GPU machine (Python 3.12, x86_64, no network)
# into .whl/, for benchmarks/train_speed.py's Keras competitors. The GPU image already has
# numpy, rich (with markdown-it-py and pygments), ml_dtypes (through jax) and typing_extensions
# (through torch); keras's other requirements are fetched here. Install them there with
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/src
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/wheels.sh
. "scripts/wheels.sh"

PACKAGES=(keras==3.15.1 namex optree h5py absl-py packaging)

fetch_wheels "${PACKAGES[@]}"
