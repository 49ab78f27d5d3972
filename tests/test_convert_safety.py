"""`jax-inpaint convert ... DEST --overwrite` replaces only a model folder that jax-inpaint wrote: never the
source, the current folder, a folder above the source or the home folder, nor a folder that holds anything
else (issue 11). Every refusal is one line, exit code 2, and touches nothing. Run in-process (CliRunner)
inside tmp_path (the current folder is moved there, so even a regression could only empty tmp_path).
"""
import hashlib
import os
import pathlib
import shutil

import pytest
from click.testing import CliRunner

from jax_inpaint.cli import main

DATA = pathlib.Path(__file__).parent / "data"
TINY = DATA / "stylegan2" / "tiny_network_stripped.pkl"
HF_CLIP = DATA / "clip" / "tiny-clip-hf"
HF_VIT = DATA / "vit" / "tiny-vit-celeba-hf"


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def tree(root) -> dict[str, str]:
    """Every file under root (hidden ones too) -> hash of its bytes: what must survive a refusal."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def assert_refused(result, expect: str):
    code, stdout, stderr = result
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert expect in lines[0], lines[0]


@pytest.fixture(scope="module")
def model_template(tmp_path_factory):
    """A StyleGAN2 model folder written by `convert`, copied by the tests that need one."""
    dest = tmp_path_factory.mktemp("template") / "model"
    code, out, err = run("convert", "stylegan2", TINY, dest)
    assert code == 0, err
    return dest


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp_path as the current folder, holding the source pickle and a file of the user's."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(TINY, tmp_path / "net.pkl")
    (tmp_path / "notes.txt").write_text("the user's own file")
    return tmp_path


def test_current_folder_is_never_replaced(work):
    before = tree(work)
    assert_refused(run("convert", "stylegan2", "net.pkl", ".", "--overwrite"), "the current folder")
    assert_refused(run("convert", "stylegan2", "net.pkl", str(work), "--overwrite"), "the current folder")
    assert tree(work) == before


def test_current_folder_is_never_replaced_even_if_it_is_a_model_folder(work, model_template, monkeypatch):
    shutil.copytree(model_template, work / "model")
    before = tree(work)
    monkeypatch.chdir(work / "model")
    assert_refused(run("convert", "stylegan2", "../net.pkl", ".", "--overwrite"), "the current folder or one above")
    monkeypatch.chdir(work / "model" / "G")  # DEST above the current folder
    assert_refused(run("convert", "stylegan2", "../../net.pkl", "..", "--overwrite"), "the current folder or one above")
    assert tree(work) == before


def test_a_folder_holding_the_source_is_never_replaced(work, model_template):
    holder = work / "holder"
    shutil.copytree(model_template, holder)  # a model folder of ours...
    shutil.copy(TINY, holder / "net.pkl")     # ...into which the user put the source
    (work / "deeper" / "sub").mkdir(parents=True)
    shutil.copy(TINY, work / "deeper" / "sub" / "net.pkl")
    before = tree(work)
    assert_refused(run("convert", "stylegan2", holder / "net.pkl", holder, "--overwrite"), "holds the source")
    assert_refused(run("convert", "stylegan2", work / "deeper" / "sub" / "net.pkl", work / "deeper", "--overwrite"),
                   "holds the source")  # a parent (ancestor) of the source
    assert tree(work) == before


def test_init_kwargs_file_is_a_source_too(work, model_template):
    model = work / "model"
    shutil.copytree(model_template, model)
    shutil.copy(DATA / "stylegan2" / "tiny_G_config.json", model / "kwargs.json")
    before = tree(work)
    assert_refused(run("convert", "stylegan2", DATA / "stylegan2" / "tiny_G_state.npz", model, "--overwrite",
                       "--init-kwargs", model / "kwargs.json"), "holds the source")
    assert tree(work) == before


def test_convert_clip_onto_its_own_source_folder(work):
    src = work / "hf-clip"
    shutil.copytree(HF_CLIP, src)
    before = tree(work)
    assert_refused(run("convert", "clip", src, src, "--overwrite"), "it is the source")
    assert_refused(run("convert", "clip", "hf-clip", "./hf-clip/", "--overwrite"), "it is the source")
    assert tree(work) == before


def test_convert_classifier_into_a_parent_of_its_source(work):
    src = work / "models" / "vit"
    shutil.copytree(HF_VIT, src)
    before = tree(work)
    assert_refused(run("convert", "classifier", src, work / "models", "--overwrite"), "holds the source")
    assert tree(work) == before


def test_folder_that_is_not_a_model_folder(work):
    docs = work / "docs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("years of work")
    (work / "empty").mkdir()
    before = tree(work)
    assert_refused(run("convert", "stylegan2", "net.pkl", docs, "--overwrite"), "not a jax-inpaint model folder")
    assert_refused(run("convert", "stylegan2", "net.pkl", work / "empty", "--overwrite"),
                   "not a jax-inpaint model folder")
    assert tree(work) == before


@pytest.mark.parametrize("extra", ["notes.txt", "G/notes.txt", "tokenizer/vocab.json", "other/data.bin",
                                   "model.json.bak"])
def test_model_folder_holding_anything_else(extra, work, model_template):
    model = work / "model"
    shutil.copytree(model_template, model)
    (model / extra).parent.mkdir(parents=True, exist_ok=True)
    (model / extra).write_text("not ours")
    before = tree(work)
    assert_refused(run("convert", "stylegan2", "net.pkl", model, "--overwrite"), "files jax-inpaint did not write")
    assert extra.split("/")[0] in run("convert", "stylegan2", "net.pkl", model, "--overwrite")[2]
    assert tree(work) == before


@pytest.mark.parametrize("meta", ['["not", "ours"]', '{"format": "something-else"}', "not json at all"])
def test_model_json_of_another_program(meta, work, model_template):
    model = work / "model"
    shutil.copytree(model_template, model)
    (model / "model.json").write_text(meta)
    before = tree(work)
    assert_refused(run("convert", "stylegan2", "net.pkl", model, "--overwrite"), "not a jax-inpaint model folder")
    assert tree(work) == before


def test_home_root_and_symlinks(work, model_template, monkeypatch):
    home = work / "home"
    shutil.copytree(model_template, home)  # even a model folder of ours is not replaced if it is $HOME
    monkeypatch.setenv("HOME", str(home))
    (work / "link").symlink_to(work / "elsewhere", target_is_directory=True)
    shutil.copytree(model_template, work / "elsewhere")
    before = tree(work)
    assert_refused(run("convert", "stylegan2", "net.pkl", home, "--overwrite"), "is the home folder")
    assert_refused(run("convert", "stylegan2", "net.pkl", "/", "--overwrite"), "the root folder")
    assert_refused(run("convert", "stylegan2", "net.pkl", work / "link", "--overwrite"), "symbolic link")
    assert tree(work) == before


def test_overwriting_our_own_model_folders_works(work, model_template):
    """The one thing --overwrite is for: replacing a model folder jax-inpaint wrote (all three converters)."""
    model = work / "model"
    shutil.copytree(model_template, model)
    code, _, err = run("convert", "stylegan2", "net.pkl", model, "--overwrite")
    assert code == 0, err
    code, _, err = run("convert", "stylegan2", DATA / "stylegan2" / "tiny_G_state.npz", model, "--overwrite",
                       "--init-kwargs", DATA / "stylegan2" / "tiny_G_config.json")
    assert code == 0, err
    assert sorted(os.listdir(model)) == ["G", "model.json"]  # the new conversion's content, not a mix
    for kind, src in (("clip", HF_CLIP), ("classifier", HF_VIT)):
        for _ in range(2):
            code, _, err = run("convert", kind, src, work / kind, "--overwrite")
            assert code == 0, err
    assert sorted(os.listdir(work / "clip")) == ["model.json", "params", "tokenizer"]
    # nothing left beside them: no staging, temporary or set-aside folders
    assert sorted(os.listdir(work)) == ["classifier", "clip", "model", "net.pkl", "notes.txt"]
    from jax_inpaint.models.stylegan2 import load_generator
    assert load_generator(model).config.img_resolution == 32


def test_failed_conversion_leaves_the_old_model_folder_as_it_was(work, model_template):
    model = work / "model"
    shutil.copytree(model_template, model)
    (work / "broken.pkl").write_bytes(TINY.read_bytes()[:100_000])
    before = tree(work)
    code, _, err = run("convert", "stylegan2", "broken.pkl", model, "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert tree(work) == before


def test_without_overwrite_an_existing_folder_is_refused_before_reading(work, model_template):
    """DEST is checked first: a hostile or huge source is not even read when DEST is refused."""
    (work / "hostile.pkl").write_bytes(b"\x80\x02cos\nsystem\n(S'touch SENTINEL'\ntR.")
    (work / "docs").mkdir()
    assert_refused(run("convert", "stylegan2", "hostile.pkl", "docs", "--overwrite"), "not a jax-inpaint model folder")
    assert_refused(run("convert", "stylegan2", "hostile.pkl", "notes.txt"), "is a file")
    assert not (work / "SENTINEL").exists()
