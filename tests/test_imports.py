"""The front door stays light: importing the package or asking the CLI for help loads neither jax nor
flax (nor torch); they are imported when a command needs them."""
import subprocess
import sys

import pytest

HEAVY = ("jax", "flax", "torch", "optax", "orbax", "transformers", "mediapipe", "cv2")

PROBE = """
import sys
{body}
print(" ".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _heavy_modules_after(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stderr.split()


HELP = """
from jax_inpaint.cli import main
try:
    main({args!r})
except SystemExit as e:
    assert e.code == 0, e.code
"""


@pytest.mark.parametrize("body", [
    "import jax_inpaint",
    "import jax_inpaint.cli",
    HELP.format(args=["--help"]),
    HELP.format(args=["inpaint", "--help"]),
    HELP.format(args=["masks", "--help"]),
    HELP.format(args=["convert", "stylegan2", "--help"]),
], ids=["import", "import-cli", "help", "inpaint-help", "masks-help", "convert-help"])
def test_no_heavy_imports(body):
    assert _heavy_modules_after(body) == []


def test_lazy_names_resolve():
    import jax_inpaint

    assert callable(jax_inpaint.load_generator)
    assert jax_inpaint.Generator.__name__ == "Generator"
    with pytest.raises(AttributeError):
        jax_inpaint.no_such_name


# ---------------------------------------------------------------------------------------------
# The import graph: layers, lowest first; a module imports only from its own layer or lower ones,
# and no chain of imports (inside functions too) leads back to where it started.

import ast  # noqa: E402
import pathlib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = [
    ("base", ["jax_inpaint", "jax_inpaint.errors", "jax_inpaint.files", "jax_inpaint.images", "jax_inpaint.masks",
              "jax_inpaint.allocator"]),
    ("models", ["jax_inpaint.models"]),
    ("inversion", ["jax_inpaint.inversion"]),
    ("study", ["jax_inpaint.study"]),
    ("align", ["jax_inpaint.align"]),  # a photo through its FFHQ-aligned face and back (uses inversion)
    ("commands", ["jax_inpaint.generate", "jax_inpaint.score", "jax_inpaint.batch", "jax_inpaint.demo",
                  "jax_inpaint.cli", "jax_inpaint.__main__", "convert_weights", "jax_inpaint.serve"]),
]


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for top in ("jax_inpaint", "convert_weights"):
        for p in (ROOT / top).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if module == pre or (module.startswith(pre + ".") and pre != "jax_inpaint"):
                if best is None or len(pre) > best[1]:
                    best = (i, len(pre))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def _imports(path: pathlib.Path, module: str, known) -> set[str]:
    """Project modules `module` imports, anywhere in its file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] in ("jax_inpaint", "convert_weights"):
                found.add(n)
    return found


def _graph():
    known = _modules()
    return known, {m: _imports(p, m, known) for m, p in known.items()}


def test_imports_name_existing_modules():
    """No project code imports a module path that does not exist (e.g. the aliases of moved modules)."""
    known, graph = _graph()
    bad = sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts if t not in known)
    assert not bad, "\n".join(bad)


def test_no_upward_imports():
    known, graph = _graph()
    bad = sorted(f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
                 for m, ts in graph.items() for t in ts if t in known and _layer(t) > _layer(m))
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    known, graph = _graph()
    # a package's __init__ is imported with any of its modules, but holds only a docstring: not an edge
    edges = {m: {t for t in ts if t in known and t != m and known[t].name != "__init__.py"} for m, ts in graph.items()}
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_package_inits_hold_no_imports_of_their_modules():
    """Subpackage __init__ files stay empty of imports, so importing one module never drags in its siblings."""
    known = _modules()
    for name in ("jax_inpaint.models", "jax_inpaint.inversion", "jax_inpaint.study", "jax_inpaint.demo",
                 "jax_inpaint.align", "jax_inpaint.serve"):
        tree = ast.parse(known[name].read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], name


def test_old_module_paths_are_aliases_of_the_new_modules():
    import importlib.util

    import jax_inpaint.inversion.config as config
    import jax_inpaint.recipe as recipe  # the 0.1 path

    assert recipe is config
    # the alias leaves the module its own spec (so importlib.reload, pickling by name, -m tools see the real one;
    # not reloaded here: that would give the rest of this test process a second InpaintConfig class)
    assert config.__spec__.name == "jax_inpaint.inversion.config"
    assert importlib.util.find_spec("jax_inpaint.inversion.config").origin.endswith("inversion/config.py")
