#!/usr/bin/env bash
# Download the wheels that kiln itself and its test suite need on the GPU machine (Python 3.12,
# x86_64, no network) into .whl/, beside what the device image has (torch, triton, botorch,
# numpy, rich, safetensors, pytest). fit() records runs (SQLAlchemy, Alembic); pytest collects
# the server and serving tests too when it selects `-m gpu`, so FastAPI, httpx and their
# requirements come along. scripts/gpu_session.sh installs whatever .whl/ holds; carry ".whl"
# in the device call. The Optuna and Keras competitors have their own scripts in benchmarks/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEST=${DEST:-.whl}
PACKAGES=(sqlalchemy greenlet alembic Mako MarkupSafe typing_extensions
          fastapi starlette pydantic pydantic-core annotated-types typing-inspection anyio sniffio
          idna uvicorn h11 click httptools uvloop python-multipart httpx httpcore certifi
          annotated-doc opentelemetry-api prometheus-client pytest-timeout)

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
