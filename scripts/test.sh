#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
python3 -m pytest -q "$@"
