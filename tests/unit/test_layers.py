"""The house: packages are layers and imports only go downward (no cycle, no upward import).

A new package must be given its place here, which is the point: where it sits is a decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists()) / "zeekwatch"

# bottom -> top; a module may import its own layer and the layers below it
LAYERS = ["core", "readers", "detectors", "engine", "store", "triage", "export", "app", "console",
          "cli"]
CORE = {"errors", "params", "config", "nets", "schema", "sql", "text", "timefmt", "data", "attack",
        "finding", "__init__"}


def layer_of(module: str) -> str:
    """``zeekwatch.readers.zeek.tsv`` -> "readers"; a top-level core module -> "core"."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in CORE:
        return "core"
    if top not in LAYERS:
        raise AssertionError(f"{module}: package zeekwatch.{top} has no layer; add it to LAYERS "
                             "in tests/unit/test_layers.py (and to docs/architecture.md)")
    return top


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        yield (name[: -len(".__init__")] if name.endswith(".__init__") else name), path


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("zeekwatch"):
                yield node.module
                yield from (f"{node.module}.{a.name}" for a in node.names
                            if (PKG.parent / (node.module + "." + a.name).replace(".", "/")).exists()
                            or (PKG.parent / ((node.module + "." + a.name).replace(".", "/") + ".py")).exists())
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("zeekwatch"))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (use absolute zeekwatch.* imports)")


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_only_go_down(module, path):
    mine = LAYERS.index(layer_of(module)) if layer_of(module) != "core" else -1
    for target in imports(path):
        theirs = layer_of(target)
        rank = LAYERS.index(theirs) if theirs != "core" else -1
        if theirs == "core" and layer_of(module) == "core":
            continue
        assert rank <= mine, f"{module} (layer {layer_of(module)}) imports {target} (layer {theirs})"


def test_every_package_says_what_it_owns():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 20, f"{init.relative_to(PKG.parent)}: docstring must say what the package owns and may import"
