#!/usr/bin/env bash
# The demo on a fresh machine: installs what it needs, then starts the Gradio app
# (http://127.0.0.1:7860 unless GRADIO_SERVER_NAME/GRADIO_SERVER_PORT say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps --no-build-isolation -e .
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export GRADIO_ANALYTICS_ENABLED=${GRADIO_ANALYTICS_ENABLED:-False}

# Fashion-MNIST from Debian, when apt can be used (else the app says why it can't serve it)
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
    if [ "$SUDO" != none ]; then
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist \
            || echo "warning: could not install dataset-fashion-mnist" >&2
    fi
fi

# The page comes up at once; the app then extracts features, builds indexes
# and trains the heads spaces.yaml names but that don't exist yet, showing
# their progress on the page.
exec python3 app.py "$@"
