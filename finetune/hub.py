"""Share a RUN_DIR on the Hugging Face Hub (`--head hub:REPO_ID` loads it back)."""

from pathlib import Path

from retrieval.errors import LookalikeError
from retrieval.hub import upload


def push_run(run_dir: Path, repo_id: str) -> str:
    """Upload RUN_DIR (weights, config, metrics, curves, model card); returns its URL."""
    try:
        return upload(run_dir, repo_id, "model", "Lookalike fine-tuned head")
    except LookalikeError as e:
        raise LookalikeError(f"{e}; the run is saved in {run_dir}, push it later with "
                             f"`hf upload {repo_id} {run_dir}`") from e
