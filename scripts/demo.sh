#!/usr/bin/env bash
# The demo on a fresh machine: installs what it needs, trains the fine-tuned
# heads spaces.yaml names but that don't exist yet, then starts the Gradio app
# (http://127.0.0.1:7860 unless GRADIO_SERVER_NAME/GRADIO_SERVER_PORT say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
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

# Missing fine-tuned heads (RUN_DIRs in spaces.yaml): training reuses the cached
# features the app needs anyway, so only the first run pays for the extraction.
python3 - <<'PY'
import shlex, subprocess, sys
from pathlib import Path

from retrieval.embedder import WEIGHTS_FILE
from retrieval.manifest import finetune_command, load_manifest

for config in load_manifest("spaces.yaml", space=False):
    if config.head and not config.head.startswith("hub:") and not (Path(config.head) / WEIGHTS_FILE).is_file():
        command = finetune_command(config)
        print(f"demo: training the missing head of {config.name}: {command}", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, *shlex.split(command)[1:]]).returncode != 0:
            print(f"demo: no head for {config.name}; the app will say why", file=sys.stderr)
PY

exec python3 app.py "$@"
