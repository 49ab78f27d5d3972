"""The front door stays light: importing the package or asking the CLI for help loads neither jax nor
flax (nor torch); they are imported when a command needs them."""
import subprocess
import sys

import pytest

HEAVY = ("jax", "flax", "torch", "optax", "orbax", "transformers")

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
