"""How the search runs its steps (loop 'host' / 'scan'), rematerialisation, the joint diversity term
and the per-chunk preview: on the shipped demo generator (32x32), a few steps each."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_inpaint.inversion.search as S
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import load_config
from jax_inpaint.inversion.objective import Models, Objective
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.models.stylegan2 import load_generator

RUN = dict(lpips=0.0, steps=6, chunk=3, lr=0.1)


@pytest.fixture(scope="module")
def G():
    return load_generator("demo-faces")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    target = rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32)
    known = np.ones((32, 32), np.float32)
    known[10:22, 8:24] = 0
    return target, known


def run(G, data, seeds=(0, 1), **options):
    obj = Objective(Models(G=G), load_config(None, **{**RUN, **options}))
    search = S.get_search(obj, len(seeds))
    return search, search.run(list(seeds), obj.frozen(), *data, 0.5)


def test_auto_loop_is_host_on_cpu_and_scan_elsewhere():
    assert S.resolve_loop("auto", "cpu") == "host"
    assert S.resolve_loop("auto", "gpu") == S.resolve_loop("auto", "tpu") == "scan"
    assert S.resolve_loop("scan", "cpu") == "scan"


def test_host_and_scan_loops_take_the_same_steps(G, data):
    host_search, host = run(G, data, loop="host")
    scan_search, scan = run(G, data, loop="scan")
    assert host_search.steps_per_call == 1 and scan_search.steps_per_call == 3
    assert host.history["loss"].shape == scan.history["loss"].shape == (6, 2)
    np.testing.assert_allclose(host.history["loss"], scan.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(host.ws, scan.ws, atol=1e-3)


def test_remat_gives_the_same_values_and_gradients(G):
    ws = jnp.broadcast_to(G.w_avg, (1, G.num_ws, G.w_dim)) + 0.1
    noise = {k: v[None] for k, v in G.noise_const.items()}

    def f(ws, remat):
        return jnp.sum(jnp.sin(G.synthesize(G.variables, ws, noise, remat=remat)))

    for fn in (f, jax.grad(f)):
        a, b = jax.jit(fn, static_argnums=1)(ws, False), jax.jit(fn, static_argnums=1)(ws, True)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)  # float32 reassociation


def test_remat_auto_rematerialises_only_when_that_fits_more_seeds(G, monkeypatch):
    obj = Objective(Models(G=G), load_config(None, **RUN))
    frozen = obj.frozen()
    plain = S.fit_search(obj, 4, frozen)
    assert plain.batch == 4 and plain.objective.cfg.remat == "auto"  # everything fits: no remat
    weights, mb = S.tree_bytes(frozen), 2 ** 20
    for remat_per_seed, expect in ((40, ("blocks", 4)), (150, ("auto", 2))):
        def need(self, frozen, per_seed=remat_per_seed):  # MB per seed by program: 100, or remat's
            return weights + (per_seed if self.objective.cfg.remat == "blocks" else 100) * mb * self.batch

        monkeypatch.setattr(S.Search, "compile", need)
        monkeypatch.setattr(S, "memory_budget", lambda reserve=0: (weights + 300 * mb, 30 * weights, "host memory"))
        chosen = S.fit_search(obj, 4, frozen)  # plain: 2 batches of 2; remat at 40 per seed: all 4 at once
        assert (chosen.objective.cfg.remat, chosen.batch) == expect


@pytest.fixture(scope="module")
def lp():
    return load_lpips()


@pytest.mark.parametrize("space", ["pixels", "lpips"])
def test_diversity_terms_stay_within_an_image(space, request):
    dist = None
    if space == "lpips":
        lp = request.getfixturevalue("lp")
        dist = functools.partial(lp.pairwise_distances, lp.params)
    rng = np.random.RandomState(1)
    imgs = jnp.asarray(rng.uniform(-1, 1, (5, 32, 32, 3)), jnp.float32)
    knowns = jnp.ones((5, 32, 32)).at[:, 8:24, 8:24].set(0.0)
    groups = jnp.asarray([0, 0, 1, 1, -1])
    alive = jnp.ones(5, bool)
    terms = jax.jit(lambda x, a: S.diversity_terms(x, knowns, groups, a, dist))
    d = np.asarray(terms(imgs, alive))
    assert d[4] == 0 and np.all(d[:4] < 0)
    if space == "lpips":  # minus the LPIPS between the two hole contents of each group, to the power 0.75
        holes = imgs * (1 - knowns)[..., None]
        for a, b in ((0, 1), (2, 3)):
            ref = -float(lp.distance(lp.params, holes[a:a + 1], holes[b:b + 1])[0]) ** 0.75
            np.testing.assert_allclose(d[[a, b]], ref, rtol=1e-4)
    # changing image 2 (group 1) moves group 1's terms only
    moved = np.asarray(terms(imgs.at[2].multiply(-1), alive))
    np.testing.assert_array_equal(moved[:2], d[:2])
    assert not np.allclose(moved[2:4], d[2:4])
    # a dead (NaN) seed is no partner and leaks no NaN into the gradient of the others
    nan = imgs.at[1].set(jnp.nan)
    grad = jax.grad(lambda x: jnp.sum(terms(x, jnp.asarray([1, 0, 1, 1, 1], bool))))(nan)
    assert np.isfinite(np.asarray(grad)[[0, 2, 3]]).all()
    # ... nor does a seed whose image became NaN in this very step (still marked alive)
    d_nan = np.asarray(terms(nan, alive))
    assert np.isfinite(d_nan[[0, 2, 3]]).all() and d_nan[0] == 0   # seed 0 has no live partner left
    np.testing.assert_allclose(d_nan[2:4], d[2:4], rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(terms(x, alive)))(nan)
    assert np.isfinite(np.asarray(grad)[[0, 2, 3]]).all()
    # the pixels outside the hole do not count
    outside = imgs.at[:, :4].set(0.0)
    np.testing.assert_allclose(np.asarray(terms(outside, alive)), d, rtol=1e-6)


def test_the_diversity_term_spreads_the_seeds_apart(G, data):
    def hole_spread(res):
        raw = np.asarray(G.synthesis(res.ws, noise={k: v for k, v in res.noise.items()}))
        hole = data[1] == 0
        a, b, c = (raw[i][hole] for i in range(3))
        return np.mean([np.sqrt(np.mean((a - b) ** 2)), np.sqrt(np.mean((a - c) ** 2)), np.sqrt(np.mean((b - c) ** 2))])

    _, alone = run(G, data, seeds=(0, 1, 2), steps=20, chunk=10, init_jitter=0.1)
    _, joint = run(G, data, seeds=(0, 1, 2), steps=20, chunk=10, init_jitter=0.1, diversity=0.5)
    assert "diversity" in joint.history and "diversity" not in alone.history
    assert hole_spread(joint) > 1.5 * hole_spread(alone)


def test_the_lpips_diversity_term_spreads_the_seeds_apart_in_lpips(G, data, lp):
    def mean_pair_lpips(res):
        raw = np.asarray(G.synthesis(res.ws, noise={k: v for k, v in res.noise.items()}))
        holes = raw * (data[1] == 0)[None, :, :, None]
        d = np.asarray(lp.pairwise_distances(lp.params, holes))
        return d[np.triu_indices(3, 1)].mean()

    runs = {}
    for weight in (0.0, 0.05):
        obj = Objective(Models(G=G, lpips=lp), load_config(None, **{**RUN, "steps": 20, "chunk": 10, "init_jitter": 0.1,
                                                                     "diversity": weight, "diversity_space": "lpips"}))
        assert obj.uses["lpips"] == (weight > 0)   # the LPIPS model is loaded for the term alone
        runs[weight] = S.get_search(obj, 3).run([0, 1, 2], obj.frozen(), *data, 0.5)
    assert mean_pair_lpips(runs[0.05]) > 1.5 * mean_pair_lpips(runs[0.0])
    with pytest.raises(InputError, match="diversity-space lpips needs the LPIPS model"):
        Objective(Models(G=G), load_config(None, **{**RUN, "diversity": 0.05, "diversity_space": "lpips"}))


def test_preview_reports_the_best_latents_after_each_chunk(G, data):
    seen = []
    obj = Objective(Models(G=G), load_config(None, **RUN))
    search = S.get_search(obj, 2)
    res = search.run([0, 1], obj.frozen(), *data, 0.5, preview=lambda done, ws, noise: seen.append((done, ws, noise)))
    assert [d for d, _, _ in seen] == [3, 6]
    assert seen[0][1].shape == (2, G.num_ws, G.w_dim) and set(seen[0][2]) == set(G.config.noise_shapes)
    np.testing.assert_array_equal(seen[-1][1], res.ws)  # the last preview is the result
