"""The package's public surface and its dependencies tell the truth.

Every module of ``src/speak_encoder`` names what it exports in ``__all__`` (and every name there
exists); every third-party package the code imports is a declared runtime dependency, pinned in
``requirements.lock``; the runtime lock holds no test or lint tool (those are pinned on top of
it in ``requirements-dev.lock``). Pure file and import checks: no network, no external tool.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "speak_encoder"
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
#: Tools that must never be installed into a node (they belong to requirements-dev.lock).
DEV_ONLY = {"pytest", "pytest-timeout", "mypy", "ruff", "hypothesis", "schemathesis", "selenium"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(PACKAGE.rglob("*.py"))


def declared_all(path: Path) -> list[str] | None:
    """The module-level ``__all__`` of ``path`` (a literal list of strings), or None."""
    for node in ast.parse(path.read_text("utf-8")).body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, ast.List | ast.Tuple), f"{path}: __all__ is not a literal"
            names = []
            for item in value.elts:
                assert isinstance(item, ast.Constant) and isinstance(item.value, str), path
                names.append(item.value)
            return names
    return None


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock: Path) -> dict[str, str]:
    """``name → version`` of a lock file's ``name==version`` lines."""
    result = {}
    for line in lock.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line!r} is not pinned with =="
            result[normalize(name)] = version
    return result


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])


# --- __all__ ---------------------------------------------------------------------------------


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 50


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_every_module_declares_what_it_exports(path: Path) -> None:
    names = declared_all(path)
    assert names is not None, f"{module_name(path)} has no __all__"
    assert len(names) == len(set(names)), f"{module_name(path)}: duplicates in __all__"
    assert all(not name.startswith("_") or name == "__version__" for name in names), names
    if path.name == "__main__.py":  # importing it would run the command
        assert names == []
        return
    module = importlib.import_module(module_name(path))
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{module_name(path)}.__all__ names what it lacks: {missing}"


def test_the_top_level_package_documents_its_public_api() -> None:
    import speak_encoder

    doc = speak_encoder.__doc__ or ""
    assert "Public API" in doc
    # Every module the docstring names exists, so the map cannot go stale.
    for dotted in set(re.findall(r"speak_encoder(?:\.\w+)+", doc)):
        parts = dotted.split(".")
        depth = 1  # the longest prefix that is a module (speak_encoder.config of ….Settings)
        while depth < len(parts) and is_module(".".join(parts[: depth + 1])):
            depth += 1
        rest = parts[depth:]
        assert depth > 1 or rest, f"the docstring names {dotted}, which does not exist"
        if rest:
            module = importlib.import_module(".".join(parts[:depth]))
            assert rest[0] in getattr(module, "__all__", []), f"{dotted} is not exported"


def is_module(dotted: str) -> bool:
    parent = importlib.import_module(dotted.rpartition(".")[0])
    if not hasattr(parent, "__path__"):
        return False
    return importlib.util.find_spec(dotted) is not None


# --- dependencies ----------------------------------------------------------------------------


def third_party_imports() -> dict[str, set[str]]:
    """Top-level import name → modules of src/ importing it (stdlib and the package left out)."""
    found: dict[str, set[str]] = {}
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "speak_encoder":
                    found.setdefault(top, set()).add(module_name(path))
    return found


def project() -> dict[str, Any]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    result: dict[str, Any] = data["project"]
    return result


def test_every_imported_package_is_a_declared_runtime_dependency() -> None:
    declared = {requirement_name(spec) for spec in project()["dependencies"]}
    distributions = packages_distributions()
    undeclared = {}
    for top, where in third_party_imports().items():
        names = {normalize(d) for d in distributions.get(top, [top])}
        # psycopg[binary] installs psycopg (the import) + psycopg-binary
        if not names & declared:
            undeclared[top] = sorted(where)
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"


def test_runtime_lock_pins_every_runtime_dependency_and_no_dev_tool() -> None:
    runtime = pinned(RUNTIME_LOCK)
    for spec in project()["dependencies"]:
        assert requirement_name(spec) in runtime, f"{spec} is not pinned in requirements.lock"
    assert not DEV_ONLY & set(runtime), f"dev tools in requirements.lock: {DEV_ONLY & set(runtime)}"
    assert "speak-encoder" not in runtime


def test_dev_lock_is_installed_on_top_of_the_runtime_lock() -> None:
    lines = [
        line.strip()
        for line in DEV_LOCK.read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "-r requirements.lock", "the dev lock installs the runtime set first"
    dev, runtime = pinned(DEV_LOCK), pinned(RUNTIME_LOCK)
    assert not set(dev) & set(runtime), f"pinned twice: {set(dev) & set(runtime)}"
    extras = project()["optional-dependencies"]["dev"]
    for spec in extras:
        assert requirement_name(spec) in dev, f"{spec} is not pinned in requirements-dev.lock"


def test_makefile_installs_the_runtime_set_for_the_demo_and_dev_tools_for_tests() -> None:
    text = (ROOT / "Makefile").read_text("utf-8")
    rules = dict(re.findall(r"^([\w$()-]+):([^\n]*)$", text, re.MULTILINE))
    assert "dev" not in rules["demo"] and "test-deps" not in rules["demo"], rules["demo"]
    assert "dev" not in rules["setup"], rules["setup"]
    for target in ("lint", "unit", "test-deps"):
        assert "dev-setup" in rules[target], f"make {target} must install the dev tools"
    stamp = text[text.index("$(STAMP): ") :].split("\n\n", 1)[0]
    assert "-r requirements.lock" in stamp and "requirements-dev.lock" not in stamp
    dev_stamp = text[text.index("$(DEV_STAMP): ") :].split("\n\n", 1)[0]
    assert "-r requirements-dev.lock" in dev_stamp and "touch $(DEV_STAMP)" in dev_stamp
