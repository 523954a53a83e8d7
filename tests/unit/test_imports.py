"""dfablate's import graph: no cycles (function-level and TYPE_CHECKING imports counted, and a
package's `__init__` counted wherever importing one of its modules runs it), and function-level
imports only where they buy something: `dfablate.cli` (a fast `dfablate --help`) and optional
extras."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

# optional extras: a missing one must not break importing the module that uses it
LAZY_EXTRAS = ("onnxruntime", "wandb_workspaces")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path, package: str) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement loads (for `from X import y`, X.y when y is a
    module, else X)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` its imports run, wherever they stand (module level,
    functions, `if TYPE_CHECKING:`), with the `__init__` of each package entered from
    outside it."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported(node, name, is_package):
                if target not in modules:
                    continue
                parts = target.split(".")
                packages = {".".join(parts[:i]) for i in range(1, len(parts))}
                graph[name] |= {target, *(packages - own_packages)} - {name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_walker_finds_function_level_type_checking_and_package_init_cycles(tmp_path):
    """The check can fail: each kind of cycle it must see, in a package built for it."""
    _write(tmp_path / "fn", {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n",
                             "pkg/b.py": "def f():\n    from pkg.a import x\n"})  # fmt: skip
    _write(tmp_path / "tc", {"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import y\n",
                             "pkg/b.py": "from typing import TYPE_CHECKING\n"
                                         "if TYPE_CHECKING:\n    from pkg.a import x\n"})  # fmt: skip
    _write(tmp_path / "init", {"pkg/__init__.py": "", "pkg/sub/__init__.py": "from pkg.c import z\n",
                               "pkg/sub/m.py": "", "pkg/c.py": "from pkg.sub.m import w\n"})  # fmt: skip
    _write(tmp_path / "rel", {"pkg/__init__.py": "", "pkg/a.py": "from .b import y\n",
                              "pkg/b.py": "from . import a\n"})  # fmt: skip
    assert find_cycles(import_graph(tmp_path / "fn", "pkg")) == [["pkg.a", "pkg.b"]]
    assert find_cycles(import_graph(tmp_path / "tc", "pkg")) == [["pkg.a", "pkg.b"]]
    assert find_cycles(import_graph(tmp_path / "init", "pkg")) == [["pkg.c", "pkg.sub"]]
    assert find_cycles(import_graph(tmp_path / "rel", "pkg")) == [["pkg.a", "pkg.b"]]
    # inside its own package a module does not re-run that package's __init__
    _write(tmp_path / "own", {"pkg/__init__.py": "", "pkg/sub/__init__.py": "from pkg.sub import m\n",
                              "pkg/sub/m.py": "from pkg.sub.n import v\n", "pkg/sub/n.py": ""})  # fmt: skip
    assert find_cycles(import_graph(tmp_path / "own", "pkg")) == []


def test_dfablate_has_no_import_cycle():
    graph = import_graph(ROOT, "dfablate")
    assert len(graph) > 60  # every module was walked
    assert "dfablate.comparison" in graph["dfablate.ablate"]  # package inits are counted
    assert find_cycles(graph) == []


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    names = _imported(inner, "", False)[:1]
                    found.append((inner.lineno, names[0]))
    return found


def test_function_level_imports_only_in_cli_and_for_extras():
    misplaced = [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in sorted((ROOT / "dfablate").rglob("*.py"))
        if "cli" not in path.relative_to(ROOT / "dfablate").parts
        for line, name in _function_level_imports(path)
        if name.split(".")[0] not in LAZY_EXTRAS
    ]
    assert misplaced == []


def test_help_paths_import_no_heavy_library():
    """`dfablate --help` and `train/evaluate/ablate --help` import the CLI, the config machinery
    and the ablation's settings only: no torch, Lightning, W&B or matplotlib (seconds each)."""
    light = ["dfablate.cli", "dfablate.cli.help", "dfablate.config", "dfablate.ablation_config",
             "dfablate.wandb_settings"]  # fmt: skip
    code = (
        "import importlib, sys\n"
        f"for name in {light!r}: importlib.import_module(name)\n"
        "heavy = ('torch', 'lightning', 'wandb', 'matplotlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
