"""The code's mechanical rules (ARCHITECTURE.md), checked on the source so they stay true.

- No module-level mutable containers in `jaxreg/` (a cache or registry belongs to a value
  the caller holds, not to the process); tables are read-only mappings or tuples.
- No `jax.config.update` outside tests and the command lines: importing a library never
  changes JAX's configuration.
- No imports of the project's modules inside functions (they hide the import graph),
  except of a module that imports an optional dependency (torch, matplotlib) at its top:
  that deferred import is what keeps `import jaxreg` / `import parity` free of torch.
- No use of another module's private names (`module._name`, `from m import _name`), except
  between the files of one package (`jaxreg.optim._sgd` may use `jaxreg.optim._base`);
  private modules (`jaxreg._checks`) are the library's own and may be imported in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxreg", "parity", "benchmarks")
CLIS = {"parity/__main__.py", "benchmarks/__main__.py"}
OPTIONAL = ("torch", "matplotlib", "tqdm")
MUTABLE_CALLS = {"list", "dict", "set", "defaultdict", "OrderedDict", "WeakValueDictionary"}


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _is_mutable(node: ast.AST) -> bool:
    if isinstance(node, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    if isinstance(node, ast.Call):
        fn = node.func
        name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")
        return name in MUTABLE_CALLS
    return False


@pytest.mark.parametrize("path", _modules("jaxreg"), ids=_rel)
def test_no_module_level_mutable_containers(path):
    bad = []
    for node in _tree(path).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if names != ["__all__"] and _is_mutable(node.value):
                bad.append(f"line {node.lineno}: {', '.join(names)}")
    assert not bad, f"{_rel(path)}: module-level mutable containers: {bad}"


@pytest.mark.parametrize("path", _modules(*PACKAGES), ids=_rel)
def test_no_config_change_outside_command_lines(path):
    if _rel(path) in CLIS:
        return
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute) and node.attr == "update":
            base = node.value
            if isinstance(base, ast.Attribute) and base.attr == "config":
                pytest.fail(f"{_rel(path)} line {node.lineno}: jax.config.update in a library")


def _function_imports(tree: ast.Module):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    yield node.lineno, [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    # `from parity import torch_side` imports parity.torch_side
                    base = node.module or ""
                    yield (
                        node.lineno,
                        [
                            f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base
                            for a in node.names
                        ],
                    )


@pytest.mark.parametrize("path", _modules(*PACKAGES), ids=_rel)
def test_no_imports_of_project_modules_inside_functions(path):
    bad = [
        f"line {line}: {name}"
        for line, names in _function_imports(_tree(path))
        for name in names
        if name.split(".")[0] in PACKAGES and not _imports_optional(name)
    ]
    assert not bad, f"{_rel(path)}: imports inside functions: {bad}"


def _imports_optional(module: str) -> bool:
    """Whether `module` (a project module) imports an optional dependency at its top."""
    path = ROOT / module.replace(".", "/")
    path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
    if not path.exists():
        return False
    for node in _tree(path).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n.split(".")[0] in OPTIONAL for n in names):
            return True
    return False


def _is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _package(module: str) -> str:
    return module.rsplit(".", 1)[0]


@pytest.mark.parametrize("path", _modules(*PACKAGES), ids=_rel)
def test_no_use_of_another_modules_private_names(path):
    me = _rel(path)[:-3].replace("/", ".").removesuffix(".__init__")
    tree = _tree(path)
    aliases: dict[str, str] = {}  # local name -> module it names
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                aliases[a.asname or a.name] = full
                private = a.name.startswith("_") and not a.name.startswith("__")
                if private and _is_module(full) and full.split(".")[0] == me.split(".")[0]:
                    continue  # a private module of the same library
                if private and _package(full) != _package(me):
                    bad.append(f"line {node.lineno}: from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                aliases[local] = a.name if a.asname else local
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = aliases.get(node.value.id, "")
            if not target.startswith(PACKAGES):
                continue
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if private and _package(me) not in (target, _package(target)):
                bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, f"{me}: uses private names of other modules: {bad}"
