"""What run.json records about where a run's code, model and prompts came from.

- harness: the package version, and when the package is imported from a git checkout (its
  ``__init__.py`` tracked by git) the commit (``git rev-parse HEAD``) and whether tracked files
  differ from it (``dirty``).
- versions: harness, lm-eval, datasets, vllm, torch, transformers, numpy (None: not installed).
- model commit: a local folder inside the HF cache (``.../snapshots/<sha>/``) → that sha; a git
  work tree → its HEAD; any other folder → ``folder-sha256:`` + sha256 over config.json's bytes
  and the weight files' names and sizes (not their contents: hashing gigabytes per run is too
  slow; a retrained model with the same shapes keeps its hash only if config.json is unchanged).
  A hub id → the snapshot sha of the HF cache entry the loaders used (no network access).
- prompt: the mode, the system prompt, the task's template (its chat user message in chat mode),
  the tokenizer's chat template (sha256 and where it came from), and the first problem's prompt
  exactly as the model saw it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import subprocess
from pathlib import Path
from typing import Any

import harness

PACKAGES = {"lm_eval": "lm_eval", "datasets": "datasets", "vllm": "vllm", "torch": "torch",
            "transformers": "transformers", "numpy": "numpy"}  # run.json name → distribution
WEIGHTS = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth")


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder args`` stdout stripped, None when git fails or is missing."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def harness_source() -> dict[str, Any]:
    """{"version", "git_commit", "git_dirty"}; the git fields are None outside a checkout."""
    folder = Path(harness.__file__).resolve().parent
    tracked = _git(folder, "ls-files", "--error-unmatch", "__init__.py") is not None
    commit = _git(folder, "rev-parse", "HEAD") if tracked else None
    dirty = None if commit is None else bool(_git(folder, "status", "--porcelain", "--untracked-files=no"))
    return {"version": harness.__version__, "git_commit": commit, "git_dirty": dirty}


def package_versions() -> dict[str, str | None]:
    """Versions of the harness and the libraries that shape a run's results."""
    found: dict[str, str | None] = {"harness": harness.__version__}
    for name, dist in PACKAGES.items():
        try:
            found[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def folder_hash(folder: Path) -> str:
    """sha256 of config.json's bytes and the weight files' (name, size), names sorted."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted({p for pattern in WEIGHTS for p in folder.glob(pattern)}):
        h.update(f"\0{path.name}\0{path.stat().st_size}".encode())
    return h.hexdigest()


def model_commit(model_id: str, path: str, revision: str | None = None) -> str | None:
    """The model's commit: HF snapshot sha, git HEAD, or ``folder-sha256:<hex>`` (module doc);
    None for a hub id absent from the local HF cache."""
    folder = Path(path)
    if folder.is_dir():
        if folder.parent.name == "snapshots":
            return folder.name
        if (folder / ".git").exists() and (head := _git(folder, "rev-parse", "HEAD")):
            return head
        return "folder-sha256:" + folder_hash(folder)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(model_id, "config.json", revision=revision)
    return Path(cached).parent.name if isinstance(cached, str) else None


def prompt_record(tokenizer: Any, template: str, chat: bool, system_prompt: str | None,
                  example: str) -> dict[str, Any]:
    """run.json's ``prompt``: how the text the model saw was built, and one instance of it."""
    chat_template = getattr(tokenizer, "chat_template", None) if chat else None
    if isinstance(chat_template, dict):  # named templates: the default one is used
        chat_template = chat_template.get("default")
    return {"chat": chat, "system_prompt": system_prompt, "template": template,
            "chat_template_sha256": hashlib.sha256(chat_template.encode()).hexdigest() if chat_template else None,
            "chat_template_source": getattr(tokenizer, "name_or_path", None) if chat_template else None,
            "example": example}
