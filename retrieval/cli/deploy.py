"""`python -m retrieval deploy --space OWNER/NAME`: put this project on a
Hugging Face Space. README.md's front matter configures the Space and
spaces.yaml says what it serves; what goes up is what git tracks, so a local
run's caches, RUN_DIRs and images never do. Tests and CI stay home."""

import subprocess
from pathlib import Path

from retrieval.errors import LookalikeError
from retrieval.hub import upload

PROJECT = Path(__file__).resolve().parents[2]
NOT_DEPLOYED = ("tests/", ".ci/")
NEEDED = ("app.py", "README.md", "requirements.txt", "spaces.yaml")


def space_files(project: Path = PROJECT) -> list:
    """The project's files a Space runs from (relative paths)."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise LookalikeError(f"deploy uploads the files git tracks, and {project} is not a git checkout "
                             f"({getattr(e, 'stderr', '') or e})".strip()) from e
    files = [f for f in listed.stdout.splitlines() if f and not f.startswith(NOT_DEPLOYED)]
    missing = [f for f in NEEDED if f not in files]
    if missing:
        raise LookalikeError(f"a Space needs {', '.join(missing)}, which git does not track in {project}")
    return files


def deploy(space_id: str, project: Path = PROJECT) -> str:
    """Create or update the Space; returns its URL."""
    return upload(project, space_id, "space", "Deploy Lookalike", files=space_files(project), space_sdk="gradio")
