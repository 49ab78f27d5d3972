"""The one driver: an Inpainter loads its models once and builds one objective per set of constraints,
whatever number of images it fills; evaluate builds one Inpainter (one objective) for all its cases;
search results merge and select; one default for the seeds. Tiny fixture models, a few steps."""
import inspect

import numpy as np
import pytest
from click.testing import CliRunner

import jax_inpaint.inversion.inpainter as I
from convert_weights.stylegan2 import convert_stylegan2
from convert_weights.vit import convert_classifier
from jax_inpaint.inversion.config import DEFAULT_SEEDS
from jax_inpaint.inversion.objective import Objective
from jax_inpaint.inversion.search import SearchResult, get_search

FAST = dict(steps=4, chunk=4, lpips=0.0, lr=0.1, noise="const")


@pytest.fixture(scope="module")
def folders(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    convert_stylegan2(str(data_dir / "stylegan2" / "tiny_network_stripped.pkl"), str(root / "g"))
    convert_classifier(str(data_dir / "vit" / "tiny-vit-celeba-hf"), str(root / "cls"))
    return root


@pytest.fixture
def counts(monkeypatch):
    """How often each model is loaded, objectives are built and their frozen trees (CLIP text
    embeddings and all) are computed, and how often an Inpainter is called."""
    n = {"generator": 0, "lpips": 0, "classifier": 0, "objectives": 0, "frozen": 0, "calls": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            n[name] += 1
            return fn(*a, **k)
        return wrapped

    for name, attr in (("generator", "load_generator"), ("lpips", "load_lpips"), ("classifier", "load_classifier")):
        monkeypatch.setattr(I, attr, counting(name, getattr(I, attr)))

    class CountingObjective(Objective):
        def __init__(self, *a, **k):
            n["objectives"] += 1
            super().__init__(*a, **k)

    monkeypatch.setattr(I, "Objective", CountingObjective)
    monkeypatch.setattr(Objective, "frozen", counting("frozen", Objective.frozen))
    monkeypatch.setattr(I.Inpainter, "__call__", counting("calls", I.Inpainter.__call__))
    return n


def test_models_load_once_and_each_objective_is_built_once(folders, counts):
    inpainter = I.Inpainter(folders / "g", classifier=folders / "cls", **FAST)
    assert (counts["generator"], counts["lpips"], counts["classifier"]) == (1, 1, 1)
    label = inpainter.models.classifier.labels[0]
    r = inpainter.G.img_resolution
    rng = np.random.default_rng(0)
    images = [rng.uniform(-1, 1, (r, r, 3)).astype(np.float32) for _ in range(3)]
    free = [inpainter(images[0], "center", [0, 1], progress=False),
            inpainter(images[1], "left", [2, 3], progress=False),  # another image, mask and seeds
            inpainter(images[2], "center", [0, 1], progress=False)]
    assert counts["objectives"] == 1 and counts["frozen"] == 1
    objective = inpainter.objective()
    assert get_search(objective, 2).traces <= 1  # one compile (none when an earlier test compiled it)
    smiling = [inpainter(images[i], "center", [0, 1], attributes={label: 1.0}, progress=False) for i in range(2)]
    assert counts["objectives"] == 2 and counts["frozen"] == 2  # new constraints: one new objective
    inpainter(images[0], "center", [0, 1], attributes=[(label, 1.0)], progress=False)  # the same, spelled otherwise
    inpainter(images[0], "center", [0, 1], progress=False)
    assert counts["objectives"] == 2 and counts["frozen"] == 2
    assert inpainter.objective() is objective
    assert (counts["generator"], counts["lpips"], counts["classifier"]) == (1, 1, 1)  # never loaded again
    assert all(len(res.seeds) == 2 for res in free + smiling)
    assert "constraint_success_rate" in smiling[0].metrics and "constraint_success_rate" not in free[0].metrics
    # inpaint() is one call of a new Inpainter: the same pixels as the long-lived one
    again = I.inpaint(images[1], "left", folders / "g", seeds=[2, 3], progress=False, **FAST)
    np.testing.assert_array_equal(again.ws, free[1].ws)
    np.testing.assert_array_equal(again.completions, free[1].completions)


def test_evaluate_builds_one_objective_for_all_cases(folders, counts, tmp_path):
    from jax_inpaint.study.evaluate import evaluate

    res = evaluate(folders / "g", tmp_path / "study", gan_samples=2, families="center,strokes-medium", ratios=[0.3],
                   seeds=[0, 1], baselines="none", progress=False, report=False, **FAST)
    assert len(res.computed) == 4 and counts["calls"] == 4
    assert counts["objectives"] == 1 and counts["frozen"] == 1
    assert (counts["generator"], counts["lpips"]) == (1, 1)


def test_search_results_merge_and_select():
    rng = np.random.default_rng(0)

    def part(seeds):
        k = len(seeds)
        return SearchResult(list(seeds), rng.normal(size=(k, 3, 2)), {"n4": rng.normal(size=(k, 4, 4))},
                            rng.uniform(size=k), np.arange(k), np.ones(k, bool), {"loss": rng.uniform(size=(5, k))})

    a, b = part([0, 1, 2]), part([7, 8])
    both = SearchResult.merge([a, b])
    assert both.seeds == [0, 1, 2, 7, 8] and both.ws.shape == (5, 3, 2) and both.history["loss"].shape == (5, 5)
    assert SearchResult.merge([a]) is a
    keep = np.array([True, False, True, False, True])
    sel = both.select(keep)
    assert sel.seeds == [0, 2, 8]
    np.testing.assert_array_equal(sel.noise["n4"], both.noise["n4"][keep])
    np.testing.assert_array_equal(sel.history["loss"], both.history["loss"][:, keep])
    back = SearchResult.merge([both.select(keep), both.select(~keep)])
    assert sorted(back.seeds) == both.seeds


def test_one_default_for_the_seeds():
    from jax_inpaint.batch import run_batch
    from jax_inpaint.cli import main
    from jax_inpaint.study.evaluate import evaluate

    assert list(DEFAULT_SEEDS) == list(range(8))  # README: 0-7
    for fn in (I.inpaint, I.Inpainter.__call__, run_batch, evaluate):
        assert inspect.signature(fn).parameters["seeds"].default is DEFAULT_SEEDS, fn
    for command in ("inpaint", "inpaint-batch", "evaluate"):
        r = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
        assert "[default: 0-7]" in r.output, command
