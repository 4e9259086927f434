#!/usr/bin/env bash
# Installs everything the tests need (Python packages, this project itself,
# Debian's Chromium for the browser test), checks the code (ruff, and the
# layers' import contracts of pyproject.toml), then runs the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-test.txt
python3 -m pip install -q --no-deps --no-build-isolation -e .
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
ruff check .
lint-imports
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
python3 -m pytest -q "$@"
