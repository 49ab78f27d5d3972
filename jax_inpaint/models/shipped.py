"""Models shipped inside the package, addressed by name (e.g. `--generator demo-faces`)."""
from __future__ import annotations

import os
import pathlib

ASSETS = pathlib.Path(__file__).parent / "assets"


def shipped_models(kind: str) -> dict[str, pathlib.Path]:
    """Names of the shipped model folders of one kind ('generator', 'classifier', 'clip')."""
    root = ASSETS / kind
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "model.json").is_file()}


def resolve_model(name_or_path, kind: str) -> str:
    """A folder path as given, or the folder of a shipped model of that name."""
    path = os.fspath(name_or_path)
    if not os.path.exists(path) and os.sep not in path:
        shipped = shipped_models(kind)
        if path in shipped:
            return str(shipped[path])
    return path
