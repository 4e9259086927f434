"""Share a RUN_DIR on the Hugging Face Hub (`--head hub:REPO_ID` loads it back)."""

from pathlib import Path

from retrieval.errors import LookalikeError


def push_run(run_dir: Path, repo_id: str) -> str:
    """Upload RUN_DIR (weights, config, metrics, curves, model card); returns its URL."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise LookalikeError(f"can't push to {repo_id}: HF_HUB_OFFLINE is set; the run is saved in {run_dir}, "
                             f"push it later with `hf upload {repo_id} {run_dir}`")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(run_dir), repo_id=repo_id, repo_type="model",
                          commit_message="Lookalike fine-tuned head")
    except Exception as e:  # auth, network, permissions: one clear message, the run stays on disk
        raise LookalikeError(f"push to {repo_id} failed ({type(e).__name__}: {e}); the run is saved in "
                             f"{run_dir}") from e
    return f"https://huggingface.co/{repo_id}"
