"""The Hugging Face Hub and the network: whether this run is offline, and
uploads (fine-tuned heads, the Space): one place that turns "offline", auth
and network failures into one clear error."""

import os
from pathlib import Path

from retrieval.errors import LookalikeError


def offline() -> bool:
    """Whether the network is off for this run: HF_HUB_OFFLINE or LOOKALIKE_OFFLINE set (1, true, yes)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "LOOKALIKE_OFFLINE"))


def upload(folder: Path, repo_id: str, repo_type: str, message: str, files=None, space_sdk=None) -> str:
    """Create the repo if needed and upload `folder` (only `files`, relative
    paths, when given); returns the repo's URL. Nothing local is changed."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise LookalikeError(f"can't upload to {repo_id}: HF_HUB_OFFLINE is set (no network)")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, space_sdk=space_sdk, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                          allow_patterns=list(files) if files is not None else None, commit_message=message)
    except Exception as e:  # auth, network, permissions: one message
        raise LookalikeError(f"upload to {repo_id} failed ({type(e).__name__}: {e})") from e
    prefix = "spaces/" if repo_type == "space" else ""
    return f"https://huggingface.co/{prefix}{repo_id}"
