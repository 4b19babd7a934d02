"""The text modules import each other one way only: the data loader and the fine-tuned top
layers use the text encoder, which uses neither (a circle there once broke imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"hcl.data.transcripts": "hcl/data/transcripts.py", "hcl.features.text": "hcl/features/text.py",
           "hcl.text_top": "hcl/text_top.py", "hcl.features.e5": "hcl/features/e5.py", "hcl.cache": "hcl/cache.py"}


def _imports(path: Path) -> set[str]:
    """Every hcl module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hcl"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hcl")}
    return found


def test_no_import_circle_among_the_text_modules():
    graph = {m: _imports(ROOT / p) & set(MODULES) for m, p in MODULES.items()}
    assert "hcl.text_top" in graph["hcl.data.transcripts"] or "hcl.features.text" in graph["hcl.data.transcripts"]

    def reach(start: str, seen: set[str]) -> set[str]:
        for nxt in graph[start] - seen:
            seen.add(nxt)
            reach(nxt, seen)
        return seen

    circles = [m for m in graph if m in reach(m, set())]
    assert not circles, f"import circle through {circles}: {graph}"


def test_each_text_module_imports_first_in_a_fresh_interpreter():
    for module in MODULES:
        out = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, (module, out.stderr[-1500:])
