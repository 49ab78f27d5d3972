"""`jax-inpaint convert stylegan2` and `jax-inpaint generate` as a user runs them (click's CliRunner)."""
import shlex

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jax_inpaint.cli import main
from pickle_tools import STRIPPED, evil_pickle, with_module_src

SG2 = "stylegan2"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_folder(data_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("m") / "tiny"
    r = run("convert", "stylegan2", data_dir / SG2 / STRIPPED, dest)
    assert r.exit_code == 0, r.output
    return dest


def test_convert_writes_a_model_folder(tiny_folder):
    assert (tiny_folder / "model.json").is_file()
    assert (tiny_folder / "G").is_dir() and (tiny_folder / "D").is_dir()


def test_existing_destination_needs_overwrite(data_dir, tiny_folder):
    r = run("convert", "stylegan2", data_dir / SG2 / STRIPPED, tiny_folder)
    assert r.exit_code == 2 and "already exists" in r.output


@pytest.mark.parametrize("module, name", [("os", "system"), ("subprocess", "Popen"), ("builtins", "eval")])
def test_hostile_pickle_is_refused_and_nothing_runs(module, name, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    arg = (["touch", str(sentinel)],) if name == "Popen" else (
        f"touch {shlex.quote(str(sentinel))}",) if name == "system" else (f"open({str(sentinel)!r}, 'w')",)
    src = tmp_path / "network-snapshot.pkl"
    src.write_bytes(evil_pickle(module, name, arg))
    dest = tmp_path / "out"
    r = run("convert", "stylegan2", src, dest)
    assert r.exit_code == 2
    assert f"{module}.{name}" in r.output and "Traceback" not in r.output
    assert not sentinel.exists()
    assert not dest.exists() and list(tmp_path.iterdir()) == [src]  # no (temporary) output left behind


def test_embedded_source_is_not_run(data_dir, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    src = with_module_src(data_dir, f"open({str(sentinel)!r}, 'w').write('ran')\n", tmp_path / "net.pkl")
    r = run("convert", "stylegan2", src, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert not sentinel.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pkl", "out"]


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "npz_without_generator"])
def test_broken_or_foreign_files_exit_2_without_output(kind, data_dir, tmp_path):
    src = tmp_path / "src.pkl"
    if kind == "truncated":
        src.write_bytes((data_dir / SG2 / STRIPPED).read_bytes()[:200_000])
    elif kind == "text":
        src.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        src.write_bytes(b"")
    else:
        src = tmp_path / "src.npz"
        np.savez(src, weight=np.zeros(3, np.float32))
    dest = tmp_path / "out"
    r = run("convert", "stylegan2", src, dest)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("Error:") and "Traceback" not in r.output
    assert not dest.exists() and list(tmp_path.iterdir()) == [src]


def test_missing_tensor_is_named(data_dir, tmp_path):
    sd = dict(np.load(data_dir / SG2 / "tiny_G_state.npz"))
    del sd["synthesis.b16.conv0.affine.bias"]
    src = tmp_path / "g.npz"
    np.savez(src, **sd)
    r = run("convert", "stylegan2", src, tmp_path / "out", "--init-kwargs", data_dir / SG2 / "tiny_G_config.json")
    assert r.exit_code == 2 and "synthesis.b16.conv0.affine.bias" in r.output
    assert not (tmp_path / "out").exists()


def test_state_dict_without_kwargs_infers_the_architecture(data_dir, tmp_path):
    r = run("convert", "stylegan2", data_dir / SG2 / "orig_G_state.npz", tmp_path / "orig")
    assert r.exit_code == 0, r.output
    from jax_inpaint.models.stylegan2 import load_generator
    G = load_generator(tmp_path / "orig")
    assert G.config.architecture == "orig" and G.config.channels == (32, 32, 32, 16)
    v = np.load(data_dir / SG2 / "orig_vectors.npz")
    assert np.abs(np.asarray(G.synthesis(v["ws_plus"])).transpose(0, 3, 1, 2) - v["img_wplus"]).max() <= 1e-4


def test_generate_writes_one_png_per_seed_and_a_grid(tiny_folder, tmp_path):
    r = run("generate", "--generator", tiny_folder, "--seeds", "0-2", "--trunc", "0.7", "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png"]
    a = np.asarray(Image.open(tmp_path / "a" / "seed0001.png"))
    assert a.shape == (32, 32, 3)
    run("generate", "--generator", tiny_folder, "--seeds", "1", "--trunc", "0.7", "--out", tmp_path / "b")
    np.testing.assert_array_equal(a, np.asarray(Image.open(tmp_path / "b" / "seed0001.png")))
    assert not np.array_equal(a, np.asarray(Image.open(tmp_path / "a" / "seed0002.png")))


def test_generate_matches_nvidia_seeds(tiny_folder, data_dir):
    """z for a seed is drawn as NVIDIA's generate.py draws it, so seeds mean the same images."""
    from jax_inpaint.generate import generate, seed_z
    from jax_inpaint.models.stylegan2 import load_generator
    z = seed_z([3], 64)
    np.testing.assert_array_equal(z[0], np.random.RandomState(3).randn(64).astype(np.float32))
    G = load_generator(tiny_folder)
    res = generate(G, [3], truncation_psi=1.0)
    ref = np.asarray(G.synthesis(G.mapping(z)))
    np.testing.assert_array_equal(res["images"][0], np.clip(np.rint((ref[0] + 1) * 127.5), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("args, message", [
    (["--seeds", "3-1"], "not a list of seeds"),
    (["--class", "1"], "not conditional"),
])
def test_generate_bad_options(tiny_folder, tmp_path, args, message):
    r = run("generate", "--generator", tiny_folder, "--out", tmp_path / "o", *args)
    assert r.exit_code == 2 and message in r.output
    assert not (tmp_path / "o").exists()


def test_generate_unknown_generator_folder(tmp_path):
    r = run("generate", "--generator", tmp_path / "nope", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no such model folder" in r.output


def test_every_command_and_option_has_help():
    import click

    def walk(cmd, path):
        yield path, cmd
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])

    for path, cmd in walk(main, ["jax-inpaint"]):
        assert cmd.help, f"{' '.join(path)} has no help text"
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name not in ("help", "version"):
                assert p.help, f"{' '.join(path)} {p.opts[0]} has no help text"
