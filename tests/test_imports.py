"""No module of `tingxie/` imports itself in a loop, directly or through others.

The graph is read from the source with `ast`: every `import tingxie.x`, `from tingxie
import x`, `from . import x` and `from .x import y`, at module level and inside
functions (a lazy import still ties two modules together; it only hides the loop until
run time)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "tingxie"


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
            for t in targets:
                while t and t not in files:  # `import tingxie.a.b` → the deepest module that exists
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


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
