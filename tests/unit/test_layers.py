"""Dependencies point down: no module imports one of a layer above its own.

The layers, bottom to top (a module may import its own layer and the ones below)::

    0 core      errors, config and the small helpers every part stands on (logs, proc,
                private_files, urlguard, asgi_server, backoff, http_errors, the package)
    1 media     pipeline, storage
    2 node      the job store, scheduler, runner, monitor, metrics registry
    3 sources   the job sources (Direct API, gateway, embed, webhooks)
    4 top       web (the operator server), the CLI, the service that wires it all, testing

Two checks, both over the real package:

* **static** — every ``import`` in ``src/speak_encoder`` (at module level *and* inside
  functions, where the lazy imports live), parsed with :mod:`ast`. Imports under
  ``if TYPE_CHECKING:`` are annotations only and are not counted.
* **at run time** — a fresh interpreter imports every module of one layer and must end with no
  module of a higher layer in ``sys.modules`` (this catches what the parse cannot see, e.g. an
  import made by a package ``__init__``).

Every module must belong to a layer: a new top-level module or package is added to
:data:`LAYERS` on purpose.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import speak_encoder

PACKAGE = "speak_encoder"
SRC = Path(speak_encoder.__file__).resolve().parent

#: The first name under ``speak_encoder`` → its layer (see the module docstring).
LAYERS: dict[str, int] = {
    "": 0,  # speak_encoder/__init__.py (the version)
    "errors": 0,
    "config": 0,
    "config_values": 0,
    "secret_str": 0,
    "logs": 0,
    "proc": 0,
    "private_files": 0,
    "urlguard": 0,
    "asgi_server": 0,
    "backoff": 0,
    "http_errors": 0,
    "pipeline": 1,
    "storage": 1,
    "node": 2,
    "sources": 3,
    "web": 4,
    "service": 4,
    "console": 4,
    "doctor": 4,
    "cli": 4,
    "cli_doctor": 4,
    "cli_gateway": 4,
    "cli_identity": 4,
    "cli_node": 4,
    "cli_storage": 4,
    "__main__": 4,
    "testing": 4,
}
LAYER_NAMES = ("core", "media", "node", "sources", "top")


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    assert parts[0] == PACKAGE, module
    key = parts[1] if len(parts) > 1 else ""
    assert key in LAYERS, f"{module} belongs to no layer: add {key!r} to LAYERS"
    return LAYERS[key]


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in SRC.rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST, module: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every import of ``tree`` outside ``if TYPE_CHECKING:``."""
    found: list[tuple[str, int]] = []
    package = module if tree_is_package(module) else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, node.lineno))
            # ``from speak_encoder import web`` imports a subpackage, not a name
            found.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(name, line) for name, line in found if _is_ours(name)]


def tree_is_package(module: str) -> bool:
    return (SRC.joinpath(*module.split(".")[1:]) / "__init__.py").is_file()


def _is_ours(name: str) -> bool:
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return False
    # ``from speak_encoder.x import name``: only names that are modules count
    rel = name.split(".")[1:]
    return (
        not rel
        or SRC.joinpath(*rel).with_suffix(".py").is_file()
        or (SRC.joinpath(*rel) / "__init__.py").is_file()
    )


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for target, line in runtime_imports(tree, module):
            theirs = layer_of(target)
            if theirs > own:
                problems.append(
                    f"{path.relative_to(SRC.parent)}:{line}: {module} ({LAYER_NAMES[own]}) "
                    f"imports {target} ({LAYER_NAMES[theirs]})"
                )
    return problems


def test_every_module_has_a_layer() -> None:
    modules = all_modules()
    assert len(modules) > 50  # the whole package was found
    for module in modules:
        layer_of(module)


def _in_a_fresh_python(code: str, *args: str) -> object:
    """The JSON that ``code`` prints last, run in a new interpreter at the repository's root.

    Fresh, because CPython 3.11's ast.parse can fail with "AST constructor recursion depth
    mismatch" once an earlier test of the same process left its counter off (gh-106905)."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_import_points_up() -> None:
    code = "import json\nfrom tests.unit.test_layers import upward_imports\n"
    assert _in_a_fresh_python(code + "print(json.dumps(upward_imports()))") == []


_LAZY = (
    "from typing import TYPE_CHECKING\n"
    "if TYPE_CHECKING:\n"
    "    from speak_encoder.web.app import create_web_app\n"
    "def serve():\n"
    "    from speak_encoder.web import metrics\n"
    "    import speak_encoder.sources.direct_api\n"
)


def test_the_static_check_sees_lazy_imports() -> None:
    """The check itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    code = (
        "import ast, json, sys\n"
        "from tests.unit.test_layers import runtime_imports\n"
        "found = runtime_imports(ast.parse(sys.argv[1]), 'speak_encoder.node.example')\n"
        "print(json.dumps(sorted({name for name, _ in found})))\n"
    )
    names = _in_a_fresh_python(code, _LAZY)
    assert isinstance(names, list)
    assert "speak_encoder.web.metrics" in names
    assert "speak_encoder.sources.direct_api" in names
    assert "speak_encoder.web.app" not in names
    assert max(layer_of(name) for name in names) == LAYERS["web"]


_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
ours = [m for m in sys.modules if m == "speak_encoder" or m.startswith("speak_encoder.")]
print(json.dumps(sorted(ours)))
"""


@pytest.mark.parametrize("layer", range(len(LAYER_NAMES) - 1), ids=LAYER_NAMES[:-1])
def test_a_layer_imports_without_the_ones_above(layer: int) -> None:
    modules = [m for m in all_modules() if layer_of(m) == layer]
    assert modules
    loaded = _in_a_fresh_python(_PROBE, *modules)
    assert isinstance(loaded, list) and set(modules) <= set(loaded)
    above = [m for m in loaded if layer_of(m) > layer]
    assert above == [], f"importing the {LAYER_NAMES[layer]} layer loaded {above}"
