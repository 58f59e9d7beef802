"""Shared test fixtures: where the shared data lives, and which implementation the kernels run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Triton decides at import (of a module defining @triton.jit kernels) whether they run compiled or
# in its interpreter: make them interpretable on this CPU for the whole session, then let each
# test choose at run time (harness.kernels uses Triton on CPU tensors only when TRITON_INTERPRET=1).
os.environ["TRITON_INTERPRET"] = "1"

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared beside the repository (CI clones the repo with shared/ beside it);
    T2_SHARED overrides; /work/shared is the development machine's copy."""
    for candidate in (os.environ.get("T2_SHARED"), REPO.parent / "shared", "/work/shared"):
        if candidate and (Path(candidate) / "data").is_dir():
            return Path(candidate)
    raise FileNotFoundError("shared/ data not found beside the repository; set T2_SHARED")


@pytest.fixture(scope="session")
def gsm8k_file() -> Path:
    """The real GSM8K test set (1,319 problems, JSON lines with `question` and `answer`)."""
    return shared_dir() / "data" / "gsm8k" / "test.jsonl"


TRAIN_ROWS = 40  # real GSM8K rows given the train role by gsm8k_split


@pytest.fixture(scope="session")
def gsm8k_split(gsm8k_file, tmp_path_factory) -> tuple[Path, Path]:
    """(train.jsonl, test.jsonl): real GSM8K rows in distinct roles: the first TRAIN_ROWS rows of
    the test set as a train split, the other 1,279 as the test split (so no row is in both)."""
    lines = gsm8k_file.read_text(encoding="utf-8").splitlines(keepends=True)
    folder = tmp_path_factory.mktemp("gsm8k_split")
    train, test = folder / "train.jsonl", folder / "test.jsonl"
    train.write_text("".join(lines[:TRAIN_ROWS]), encoding="utf-8")
    test.write_text("".join(lines[TRAIN_ROWS:]), encoding="utf-8")
    return train, test


@pytest.fixture(autouse=True)
def _kernels_use_the_torch_reference_by_default(monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (the 2 cores are shared), the previous count restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["triton", "ref"])
def impl(request, monkeypatch) -> str:
    """Run harness.kernels' public functions through Triton (its CPU interpreter, or the GPU when
    there is one) or through the plain torch reference."""
    monkeypatch.setenv("TRITON_INTERPRET", "1" if request.param == "triton" else "0")
    return request.param
