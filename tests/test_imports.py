"""No module of `tingxie/` imports itself in a loop, directly or through others, and
only a family's own folder imports its runtime.

The graph is read from the source with `ast`: every `import tingxie.x`, `from tingxie
import x`, `from . import x` and `from .x import y`, at module level and inside
functions (a lazy import still ties two modules together; it only hides the loop until
run time), and every `importlib.import_module("tingxie...")` (a name built at run time,
f"tingxie.engines.{name}", counts as an import of the package its fixed part names:
the registry that loads families by name depends on the folder they live in).

The model runtimes (CTranslate2, faster-whisper, sherpa-onnx) are imported only inside
`tingxie/engines/<family>/`: the rest of the house sees a model through the recognizer
protocol (engines/base.py) and never through the library that runs it."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "tingxie"
RUNTIMES = ("ctranslate2", "faster_whisper", "sherpa_onnx")


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """module → the package modules it imports (`from a import b` counts as a.b when a.b
    is a module, else as a)."""
    files = {module_name(p, pkg): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in files else origin for a in node.names]
            elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
                name, built = _named_module(node.args[0])
                if name.startswith("."):  # import_module(".x", package=__name__)
                    name = package + name
                # a built name may be any module under its fixed part
                targets = [m for m in files if m.startswith(name + ".")] if built and name else [name] if name else []
            for t in targets:
                while t and t not in files:  # `import tingxie.a.b` → the deepest module that exists
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )


def _named_module(arg: ast.expr) -> tuple[str, bool]:
    """The module a string names, or for a name built at run time the package its fixed
    start names and True ("tingxie.engines.{m}" → "tingxie.engines": any module in it)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value, False
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip("."), True
    return "", True


def runtime_imports(pkg: Path = PKG) -> list[tuple[str, str]]:
    """(module, runtime) for every import of a model runtime (at module level, inside a
    function, or through importlib) in a module outside `engines/<family>/`."""
    out = []
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(pkg).parts
        if len(parts) >= 3 and parts[0] == "engines":  # engines/<family>/...
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
                names = [_named_module(node.args[0])[0]]
            for n in names:
                top = n.split(".")[0]
                if top in RUNTIMES:
                    out.append((module_name(path, pkg), top))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def a_loop(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One concrete loop inside a component, e.g. [a, b, c, a], for the failure message."""
    members = set(comp)
    start = comp[0]
    path, seen = [start], {start}
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth-first: the shortest way back to `start`
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in seen:
                seen.add(w)
                paths[w] = paths[v] + [w]
                queue.append(w)
    return path


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: a loop made only of function-level relative imports is found."""
    pkg = tmp_path / "tingxie"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub.c import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def g():\n    from ..a import x\n")
    (pkg / "d.py").write_text("import tingxie.a\n")
    g = import_graph(pkg)
    assert g["tingxie.d"] == {"tingxie.a"}
    assert cycles(g) == [["tingxie.a", "tingxie.b", "tingxie.sub.c"]]
    assert a_loop(g, cycles(g)[0]) == ["tingxie.a", "tingxie.b", "tingxie.sub.c", "tingxie.a"]


def test_no_import_cycles_in_tingxie():
    graph = import_graph()
    found = cycles(graph)
    assert not found, (
        "import cycles in tingxie/ (break each by moving what both sides need into a module of its own):\n"
        + "\n".join(f"  {' → '.join(a_loop(graph, comp))}   (component: {', '.join(comp)})" for comp in found)
    )


def test_the_graph_sees_a_registry_that_imports_families_by_name(tmp_path):
    """The checker itself: a registry that imports its families with importlib (a
    built name) and a family that imports the registry back form a loop."""
    pkg = tmp_path / "tingxie"
    (pkg / "engines" / "fam").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engines" / "__init__.py").write_text("")
    (pkg / "engines" / "registry.py").write_text(
        "import importlib\n\ndef load(name):\n    return importlib.import_module(f'tingxie.engines.{name}')\n"
    )
    (pkg / "engines" / "fam" / "__init__.py").write_text("from .. import registry\n")
    g = import_graph(pkg)
    assert "tingxie.engines.fam" in g["tingxie.engines.registry"]
    assert cycles(g) == [["tingxie.engines.fam", "tingxie.engines.registry"]]
    # and without the built name there is no loop
    (pkg / "engines" / "registry.py").write_text("def load(name):\n    return name\n")
    assert cycles(import_graph(pkg)) == []


def test_the_runtime_check_sees_every_kind_of_import(tmp_path):
    """The checker itself: runtimes imported outside a family folder are found (module
    level, in a function, `from x.y import`, importlib); inside engines/<family>/ they
    are allowed, and finding the package without importing it is not an import."""
    pkg = tmp_path / "tingxie"
    (pkg / "engines" / "whisper").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "device.py").write_text("def n():\n    import ctranslate2\n    return ctranslate2\n")
    (pkg / "vad.py").write_text("import importlib.util\nspec = importlib.util.find_spec('faster_whisper')\n")
    (pkg / "engines" / "__init__.py").write_text("")
    (pkg / "engines" / "sherpa.py").write_text("import importlib\nso = importlib.import_module('sherpa_onnx')\n")
    (pkg / "engines" / "base.py").write_text("from faster_whisper.transcribe import x\n")
    (pkg / "engines" / "whisper" / "__init__.py").write_text("import ctranslate2\nimport faster_whisper\n")
    assert sorted(runtime_imports(pkg)) == [
        ("tingxie.device", "ctranslate2"),
        ("tingxie.engines.base", "faster_whisper"),
        ("tingxie.engines.sherpa", "sherpa_onnx"),
    ]


def test_only_family_folders_import_a_model_runtime():
    found = runtime_imports()
    assert not found, (
        "model runtimes imported outside tingxie/engines/<family>/ (ask the family instead):\n"
        + "\n".join(f"  {mod} imports {rt}" for mod, rt in found)
    )
