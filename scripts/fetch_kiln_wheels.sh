#!/usr/bin/env bash
# Download the wheels that kiln itself and its test suite need on the GPU machine (Python 3.12,
# x86_64, no network) into .whl/, beside what the device image has (torch, triton, botorch,
# numpy, rich, safetensors, pytest). fit() records runs (SQLAlchemy, Alembic); pytest collects
# the server and serving tests too when it selects `-m gpu`, so FastAPI, httpx and their
# requirements come along. scripts/gpu_session.sh installs whatever .whl/ holds; carry ".whl"
# in the device call. The Optuna and Keras competitors have their own scripts in benchmarks/.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/wheels.sh
. "scripts/wheels.sh"

PACKAGES=(sqlalchemy greenlet alembic Mako MarkupSafe typing_extensions
          fastapi starlette pydantic pydantic-core annotated-types typing-inspection anyio sniffio
          idna uvicorn h11 click httptools uvloop python-multipart httpx httpcore certifi
          annotated-doc opentelemetry-api prometheus-client pytest-timeout)

fetch_wheels "${PACKAGES[@]}"
