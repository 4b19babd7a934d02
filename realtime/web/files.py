"""Where the dashboard's files and a model's card are found (a checkout, or the installed
data packages hcl_client / hcl_models). Needs only the standard library."""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Any


def default_client_dir(*, repo_root: str | pathlib.Path | None = None) -> pathlib.Path | None:
    """Where the dashboard's files are, in this order:

    1. `client/` at the repository root (a source checkout or an editable install);
    2. the installed package `hcl_client` (a wheel built by `pip install .` maps the
       top-level `client/` folder there).

    None when neither holds an index.html. `repo_root` is for tests."""
    root = pathlib.Path(repo_root) if repo_root is not None else pathlib.Path(__file__).resolve().parent.parent
    if (root / "client" / "index.html").is_file():
        return root / "client"
    try:
        spec = importlib.util.find_spec("hcl_client")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (pathlib.Path(location) / "index.html").is_file():
            return pathlib.Path(location)
    return None


def default_model_card(hello: dict[str, Any], *, models: str | pathlib.Path | None = None) -> pathlib.Path | None:
    """models/<hello.model.name>/README.md of the shipped models (the source checkout's
    `models/`, else the installed `hcl_models`), or None when there is none. The name
    must be one plain folder name: a hello cannot point the server elsewhere."""
    name = str((hello.get("model") or {}).get("name") or "")
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00:"):
        return None
    roots: list[pathlib.Path] = []
    if models is not None:
        roots.append(pathlib.Path(models))
    else:
        roots.append(pathlib.Path(__file__).resolve().parent.parent / "models")
        try:
            spec = importlib.util.find_spec("hcl_models")
        except (ImportError, ValueError):
            spec = None
        roots += [pathlib.Path(p) for p in ((spec.submodule_search_locations or []) if spec is not None else [])]
    for root in roots:
        card = root / name / "README.md"
        if card.is_file():
            return card
    return None

