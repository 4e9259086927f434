#!/usr/bin/env bash
# Installs what the demo needs, then indexes the Stanford Cars thumbnails and
# searches with one of them (the Gradio app comes with issue #4).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
CARS=${CARS:-../shared/data/stanford-cars-thumbs}
python3 -m retrieval index --catalogue "$CARS"
python3 -m retrieval search --catalogue "$CARS" --image "$CARS/cars_train/00001.jpg" --k 5
