"""The layout's rules, checked on the source: no private name crosses a module
boundary, no source file grows past 500 lines, and the package and its docs
cite nothing outside the repository."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastcolor"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "_build_info.py")
# Generated modules, private by design: the compiled extension and its build record.
EXTENSION_MODULES = {"_C", "_build_info"}
MAX_LINES = 500


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node, path):
    """The absolute module an ImportFrom names (None for other packages)."""
    if node.level == 0:
        return node.module if node.module and node.module.split(".")[0] == "fastcolor" else None
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name):
    return name.startswith("_") and not name.startswith("__") and name not in EXTENSION_MODULES


def private_imports(path, source=None):
    """(line, what) for every private name this file takes from another fastcolor module."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            if module is None:
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append((node.lineno, f"from {module} import {alias.name}"))
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastcolor":
                    aliases.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_the_checker_finds_private_imports():
    probe = PACKAGE / "color" / "probe.py"  # never written: only its name places it in fastcolor.color
    source = "from .codebook import _as_rgb_batch\nfrom .. import ops\nx = ops._centres\nfrom ._x import y\n"
    assert [what for _, what in private_imports(probe, source)] == [
        "from fastcolor.color.codebook import _as_rgb_batch", "ops._centres"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_is_imported_across_modules(path):
    assert private_imports(path) == [], "promote the name, or move the code that needs it"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_files_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it by job"


def test_nothing_cites_files_outside_the_repository():
    texts = [*SOURCES, ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "tools").glob("*.py"))]
    bad = [str(p.relative_to(ROOT)) for p in texts
           if "DESIGN.md" in p.read_text() or "../shared" in p.read_text() or "METHOD.md" in p.read_text()]
    assert bad == []
