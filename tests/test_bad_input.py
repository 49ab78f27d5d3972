"""The table of bad inputs: every row is a command line that a careless or hostile user might type,
and the answer it must get: exit code 2, one line on stderr that says what is wrong, and nothing
written (the output folder absent, or as it was).

Adding an option? Add a row for its bad values. A row's arguments may name inputs made by the
`inputs` fixture as `{name}` (see MAKERS); `{out}` is a fresh path that must stay unwritten.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jax_inpaint.cli import main


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]
    expect: str  # a piece of the one-line error (case-insensitive)
    subprocess: bool = False  # run as a separate process (with a time limit) instead of in-process
    timeout: float = 120.0


def row(id, args: str | list, expect, **kw) -> Row:
    return Row(id, tuple(args.split() if isinstance(args, str) else args), expect, **kw)


# ---------------------------------------------------------------------------------------------
# Inputs the rows refer to as {name}: name -> function(folder) that makes it and returns its path.

def _png(path, array, **save):
    Image.fromarray(array).save(path, **save)
    return str(path)


def _face(folder):
    rng = np.random.RandomState(0)
    return _png(folder / "face.png", rng.randint(0, 256, (32, 32, 3), dtype=np.uint8))


def _not_an_image(folder):
    p = folder / "notes.png"
    p.write_text("this is not a picture")
    return str(p)


MAKERS: dict[str, Callable[[pathlib.Path], str]] = {
    "face": _face,
    "not_an_image": _not_an_image,
}

DEMO = ["-g", "demo-faces"]


# ---------------------------------------------------------------------------------------------
# The table.

ROWS: list[Row] = [
    # -- the command line itself
    row("unknown-command", "no-such-command", "no such command"),
    row("inpaint-missing-mask", ["inpaint", "{face}", *DEMO, "--out", "{out}"], "--mask"),
    row("inpaint-image-missing", ["inpaint", "{out}/nothing.png", "--mask", "center", *DEMO, "--out", "{out}"],
        "no such file"),
    row("inpaint-image-not-an-image", ["inpaint", "{not_an_image}", "--mask", "center", *DEMO, "--out", "{out}"],
        "not a readable image"),
    row("inpaint-seeds-garbage", ["inpaint", "{face}", "--mask", "center", *DEMO, "--seeds", "a-b", "--out", "{out}"],
        "seeds"),
]


# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs")
    made: dict[str, str] = {}

    def get(name):
        if name not in made:
            made[name] = MAKERS[name](folder)
        return made[name]
    return get


def _fill(args, inputs, out):
    import string

    filled = []
    for a in args:
        names = [f for _, f, _, _ in string.Formatter().parse(a) if f]
        values = {n: (out if n == "out" else inputs(n)) for n in names}
        filled.append(a.format(**values) if names else a)
    return filled


def _snapshot(root: pathlib.Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")} if root.exists() else {}


def run_cli(args: list[str], *, subprocess_: bool = False, timeout: float = 120.0, cwd=None):
    """(exit code, stdout, stderr) of `jax-inpaint ARGS`."""
    if subprocess_:
        p = subprocess.run([sys.executable, "-m", "jax_inpaint", *args], capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, env=dict(os.environ, JAX_PLATFORMS="cpu"))
        return p.returncode, p.stdout, p.stderr
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("case", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line_exit_2_nothing_written(case: Row, inputs, tmp_path):
    out = tmp_path / "out"
    args = _fill(case.args, inputs, str(out))
    before = _snapshot(tmp_path)
    code, stdout, stderr = run_cli(args, subprocess_=case.subprocess, timeout=case.timeout, cwd=tmp_path)
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr + stdout
    assert case.expect.lower() in lines[0].lower(), lines[0]
    assert not out.exists(), f"{case.id}: {sorted(os.listdir(out))} written"
    assert _snapshot(tmp_path) == before, "files appeared or changed beside the output folder"
