"""Exported models on the Hugging Face Hub, through ``huggingface_hub`` (the optional extra: ``pip install
'audiodiff[hub]'``): ``Vocoder.from_pretrained("org/name", revision=...)`` downloads a model repository's
``config.json`` and ``model.safetensors`` (and a generator's paired ``vocoder/``) into huggingface_hub's cache and
loads that snapshot like any exported directory; :func:`push_to_hub` uploads a directory made by ``audiodiff
export``. The cache is huggingface_hub's own (``HF_HUB_CACHE``), so ``HF_HUB_OFFLINE=1`` loads what it holds without
the network. ``artifacts.resolve`` is the one caller of :func:`download`: it decides when a name means the Hub.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiodiff.errors import AudiodiffError

REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+")  # "org/name", as the Hub spells repository ids
# What a model repository holds for audiodiff: an exported directory (artifacts.ENTRIES) and its model card.
FILES = ["config.json", "model.safetensors", "vocoder/config.json", "vocoder/model.safetensors", "*.md"]
INSTALL = "pip install 'audiodiff[hub]'"


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub repository id (``org/name``)."""
    return REPO_ID.fullmatch(str(name)) is not None


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise AudiodiffError(f"loading or pushing a model on the Hugging Face Hub needs huggingface_hub; "
                             f"{INSTALL}") from None
    return huggingface_hub


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of the Hub model ``repo_id`` at ``revision`` (branch, tag or commit; None: main),
    downloaded into huggingface_hub's cache if it is not there yet."""
    try:
        hub = _hub()
    except AudiodiffError:
        raise AudiodiffError(f"{repo_id} is no local path; as a Hugging Face Hub model id it needs "
                             f"huggingface_hub: {INSTALL}") from None
    from huggingface_hub.utils import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                       RevisionNotFoundError)

    from audiodiff import __version__

    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, allow_patterns=FILES, library_name="audiodiff",
                                       library_version=__version__)
    except GatedRepoError:
        raise AudiodiffError(f"Hub model {repo_id} is gated; accept its terms on huggingface.co and log in "
                             f"(`hf auth login` or HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise AudiodiffError(f"Hub model {repo_id} has no revision {revision!r}; give a branch, tag or commit "
                             f"of that repository") from None
    except RepositoryNotFoundError:
        raise AudiodiffError(f"{repo_id} is neither a local directory nor a Hub model you can read; check the "
                             f"name (and log in for a private repository)") from None
    except LocalEntryNotFoundError:
        raise AudiodiffError(f"{repo_id} is no local path, and the Hub model {repo_id}{at} is not in the local "
                             f"cache while the Hub cannot be reached (HF_HUB_OFFLINE is set, or no network); "
                             f"download it once online, or give a local directory") from None
    return Path(folder)


def push_to_hub(model_dir: str | Path, repo_id: str, *, revision: str | None = None, private: bool | None = None,
                token: str | None = None, commit_message: str | None = None) -> str:
    """Upload the exported model directory ``model_dir`` (``audiodiff export`` or ``save_pretrained``) to the Hub
    repository ``repo_id``, created if missing, on the branch ``revision`` (None: main). Returns the commit's URL."""
    from audiodiff import artifacts

    model_dir = Path(model_dir)
    artifacts.read_recipe(model_dir)  # refuse anything but a valid exported model before any upload
    if not is_repo_id(repo_id):
        raise AudiodiffError(f"{repo_id!r} is not a Hub repository id; expected org/name")
    api = _hub().HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(model_dir), revision=revision,
                             allow_patterns=FILES, commit_message=commit_message or f"Upload {model_dir.name}")
    return str(getattr(info, "commit_url", info))
