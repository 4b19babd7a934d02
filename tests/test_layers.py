"""The import graph of realtime/ and hcl/: no circle, and arrows between realtime's layers
point one way (docs/interfaces.md, "Layers"):

    app -> scale -> web -> sessions -> pipeline -> sources | recording -> core -> hcl

A module may import its own layer and the layers below it; sources and recording do not
import each other; hcl never imports realtime. Every import counts, a function-local one
included (they are rare: optional extras only)."""

from __future__ import annotations

import ast
import pathlib


ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("hcl", "realtime")
# layer of each realtime sub-package: a module imports only from layers of lower or equal rank
RANK = {"app": 7, "scale": 6, "web": 5, "sessions": 4, "pipeline": 3, "sources": 2, "recording": 2, "core": 1}


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """The project modules `name` imports (a package's `from p import m` names module p.m)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "hcl":
        return "hcl"
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_layer_checker_catches_a_circle_and_an_upward_arrow():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert upward({"realtime.core.clock": {"realtime.app.live"}}) == ["realtime.core.clock -> realtime.app.live"]
    assert upward({"realtime.sources.file": {"realtime.recording.wav"}}) == ["realtime.sources.file -> realtime.recording.wav"]
    assert upward({"hcl.model": {"realtime.core.clock"}}) == ["hcl.model -> realtime.core.clock"]
    assert upward({"realtime.app.live": {"realtime.core.clock", "hcl.model"}}) == []


def upward(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        src = layer(source)
        for target in sorted(targets):
            dst = layer(target)
            if src == "hcl":
                ok = dst == "hcl"
            elif dst == "hcl" or src is None:
                ok = True
            elif dst is None:  # the realtime package itself
                ok = False
            elif {src, dst} == {"sources", "recording"}:
                ok = False
            else:
                ok = RANK[dst] <= RANK[src]
            if not ok:
                bad.append(f"{source} -> {target}")
    return bad


def test_no_import_circle_in_realtime():
    edges = graph()
    realtime = {k: {t for t in v if t.startswith("realtime")} for k, v in edges.items() if k.startswith("realtime")}
    assert find_cycle(realtime) is None, f"import circle: {' -> '.join(find_cycle(realtime))}"


def test_no_import_circle_in_hcl():
    edges = graph()
    hcl = {k: {t for t in v if t.startswith("hcl")} for k, v in edges.items() if k.startswith("hcl")}
    assert find_cycle(hcl) is None, f"import circle: {' -> '.join(find_cycle(hcl))}"


def test_arrows_point_down_the_layers():
    edges = graph()
    assert all(layer(m) for m in edges if m.count(".") >= 2 and m.startswith("realtime")), \
        "every realtime module belongs to a layer (a sub-package of RANK)"
    assert upward(edges) == []


def test_no_module_imports_the_commands():
    edges = graph()
    bad = [f"{s} -> {t}" for s, ts in edges.items() for t in ts
           if t.startswith("realtime.app") and not s.startswith("realtime.app")]
    assert bad == []
