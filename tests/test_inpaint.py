"""Inpainting behaviour on the tiny fixture generator (random weights, 32x32), with the tiny ViT
classifier and tiny CLIP. The searches run few steps and (mostly) without LPIPS to stay fast; each
distinct set of options compiles once per module (the compiled search is cached by its spec)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convert_weights.clip import convert_clip
from convert_weights.stylegan2 import convert_stylegan2
from convert_weights.vit import convert_classifier
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.inpainter import inpaint
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.inversion.objective import Constraints, Models, Objective, attribute_loss
from jax_inpaint.inversion.config import load_config
from jax_inpaint.inversion.search import get_search, resolve_loop
from jax_inpaint.models.stylegan2 import load_generator

FAST = dict(lpips=0.0, steps=200, lr=0.1, chunk=25, noise="const")
K = 4


@pytest.fixture(scope="module")
def models(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    convert_stylegan2(str(data_dir / "stylegan2" / "tiny_network_stripped.pkl"), str(root / "g"))
    convert_classifier(str(data_dir / "vit" / "tiny-vit-celeba-hf"), str(root / "cls"))
    convert_clip(str(data_dir / "clip" / "tiny-clip-hf"), str(root / "clip"))
    return {"G": load_generator(root / "g"), "g_dir": root / "g", "cls_dir": root / "cls", "clip_dir": root / "clip"}


@pytest.fixture(scope="module")
def target(models):
    """An in-domain target G(w*) (float, not quantised: its true completion is reachable)."""
    G = models["G"]
    ws = G.mapping(np.random.RandomState(7).randn(1, G.z_dim), truncation_psi=0.7)
    return np.asarray(G.synthesis(ws, noise_mode="const"))[0]


@pytest.fixture(scope="module")
def hole():
    h = np.zeros((32, 32), bool)
    h[8:24, 8:24] = True
    return h


@pytest.fixture(scope="module")
def free_run(models, target, hole):
    return inpaint(target, hole, models["G"], seeds=range(K), progress=False, **FAST)


def test_known_region_converges(free_run):
    mse = free_run.history["mse"]
    assert mse.shape == (FAST["steps"], K)
    final = np.array([e["terms"]["mse"] for e in free_run.metrics["seeds"]])  # at each seed's best step
    assert np.all(final <= 0.1 * mse[0]), (mse[0], final)
    assert all(e["known_psnr"] > 15 for e in free_run.metrics["seeds"])  # of the saved (clipped) images


def test_completions_agree_outside_and_differ_inside(free_run, hole):
    raw = free_run.raw
    i, j = np.triu_indices(K, 1)
    outside = np.abs(raw[i] - raw[j])[:, ~hole].mean()
    inside = np.abs(raw[i] - raw[j])[:, hole].mean()
    assert inside > 2 * outside, (inside, outside)
    # the pasted-back completions equal the target on the known region away from the seam
    comp = free_run.completions
    far = np.zeros_like(hole)
    far[:4], far[-4:], far[:, :4], far[:, -4:] = True, True, True, True
    np.testing.assert_allclose(comp[:, far], np.broadcast_to(free_run.target[far], comp[:, far].shape), atol=1e-6)


def test_same_seed_same_result_rerun(models, target, hole, free_run):
    again = inpaint(target, hole, models["G"], seeds=range(K), progress=False, **FAST)
    np.testing.assert_array_equal(again.ws, free_run.ws)


# The default noise ('random': drawn per seed) and 25 steps: short enough that float32 reassociation
# (XLA fuses and vectorises each batch size differently) stays small in w: ~1e-6 when the steps run in
# one lax.scan, up to ~3e-3 on a few near-zero components with one compiled step per call (the CPU
# default, loop 'host': each step a whole program, Adam's update fused with the gradient); the losses
# agree to 1e-4 either way. Over 200 Adam steps the drift grows to ~1e-2.
DET = dict(lpips=0.0, steps=25, lr=0.1, chunk=25)
WS_ATOL = 1e-4 if resolve_loop("auto") == "scan" else 5e-3


@pytest.fixture(scope="module")
def by_batch(models, target, hole):
    """Seeds 0-3 run all at once (batch 4), in batches of 2 and one by one."""
    return {b: inpaint(target, hole, models["G"], seeds=range(K), progress=False, batch=b, **DET) for b in (4, 2, 1)}


def test_each_seed_is_the_same_whatever_the_batch_size(by_batch):
    """A seed's init, random noise and path depend on the seed alone, not on the seeds beside it."""
    ref = by_batch[4]
    assert ref.config.noise == "random"
    for b in (2, 1):
        run = by_batch[b]
        assert run.seeds == ref.seeds == list(range(K))
        for name, v in ref.noise.items():  # the noise each seed drew: bit for bit
            np.testing.assert_array_equal(run.noise[name], v)
            assert not np.array_equal(v[0], v[1])
        np.testing.assert_allclose(run.history["loss"][0], ref.history["loss"][0], rtol=1e-5)  # the same start
        np.testing.assert_allclose(run.history["loss"], ref.history["loss"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(run.ws, ref.ws, rtol=0, atol=WS_ATOL)
        assert run.metrics["search_batch"] == b


def test_batch_0_splits_the_seeds_when_they_do_not_fit(models, target, hole, by_batch, monkeypatch):
    """With room for 2 seeds' compiled chunk (by its own memory analysis), batch 0 runs 4 seeds as 2
    batches of 2: the same results as batch 2 (bit for bit) and as the unsplit run."""
    import jax_inpaint.inversion.search as S

    objective = Objective(Models(G=models["G"]), load_config(None, **DET))
    frozen = objective.frozen()
    need = {b: get_search(objective, b).compile(frozen) for b in (1, 2, 4)}
    assert need[1] < need[2] < need[4]
    monkeypatch.setattr(S, "memory_budget", lambda reserve=0: (need[2], 4 * need[4], "host memory"))
    search = S.fit_search(objective, K, frozen)
    assert search.batch == 2
    traces = search.traces
    split = inpaint(target, hole, models["G"], seeds=range(K), progress=False, **DET)
    assert search.traces == traces  # ran the chunk compiled for the estimate
    assert split.config.batch == 0
    np.testing.assert_array_equal(split.ws, by_batch[2].ws)
    np.testing.assert_array_equal(split.history["loss"], by_batch[2].history["loss"])
    np.testing.assert_allclose(split.ws, by_batch[4].ws, rtol=0, atol=WS_ATOL)
    # Not even one seed fits: a one-line error, before anything runs.
    monkeypatch.setattr(S, "memory_budget", lambda reserve=0: (need[1] // 2, need[1] // 2, "host memory"))
    with pytest.raises(InputError, match="one seed's search needs about"):
        S.fit_search(objective, K, frozen)


def test_the_search_compiles_once(models, target, hole, free_run):
    """Reruns with new seeds, a new image and a new mask reuse the compiled chunk: counted by the
    search's own trace counter (incremented inside the traced function: once per compile)."""
    G = models["G"]
    search = get_search(Objective(Models(G=G), load_config(None, **FAST)), K)
    inpaint(target, hole, G, seeds=range(K), progress=False, **FAST)  # compiled here if not cached
    traces = search.traces
    assert traces == 1
    other = np.roll(target, 5, axis=0)
    hole2 = np.roll(hole, 3, axis=1)
    inpaint(other, hole2, G, seeds=[10, 11, 12, 13], progress=False, **FAST)
    assert get_search(Objective(Models(G=G), load_config(None, **FAST)), K) is search
    assert search.traces == traces


def test_nan_seed_is_dropped_and_others_finish(models, target, hole):
    G = models["G"]
    objective = Objective(Models(G=G), load_config(None, **{**FAST, "steps": 50}))
    search = get_search(objective, 2)
    frozen = objective.frozen()
    state = search._init(jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32)), frozen,
                         jnp.float32(1.0), None)
    state["vars"]["w"] = state["vars"]["w"].at[1].set(jnp.nan)
    targets = jnp.broadcast_to(jnp.asarray(target), (2,) + target.shape)
    knowns = jnp.broadcast_to(jnp.asarray(~hole, jnp.float32), (2,) + hole.shape)
    state, (loss, _) = search._chunk(state, jnp.int32(0), frozen, targets, knowns, jnp.float32(1.0))
    assert bool(state["alive"][0]) and not bool(state["alive"][1])
    assert np.all(np.isfinite(np.asarray(state["best_vars"]["w"][0])))
    assert np.isfinite(np.asarray(loss)[:, 0]).all()


# ---------------------------------------------------------------------------------------------
# Semantic constraints.

def _weakest_attribute(models, run):
    from jax_inpaint.models.vit import load_classifier
    cls = load_classifier(models["cls_dir"])
    p = np.asarray(cls.probs(cls.params, jnp.asarray(run.completions))).mean(axis=0)
    return cls, cls.labels[int(np.argmin(p))], p


EPS = {"bce": 0.3, "margin": 0.3, "lse": 0.3}


@pytest.fixture(scope="module")
def attr_runs(models, target, hole, free_run):
    cls, name, p_free = _weakest_attribute(models, free_run)
    runs = {}
    for kind, eps in EPS.items():
        runs[kind] = inpaint(target, hole, models["G"], seeds=range(K), progress=False, attributes={name: 1.0},
                             classifier=cls, attr_loss=kind, attr_weight=20.0, attr_epsilon=eps, **FAST)
    return cls, name, p_free, runs


def test_attribute_target_raises_its_probability(attr_runs):
    cls, name, p_free, runs = attr_runs
    j = cls.labels.index(name)
    p = np.array([e["attributes"][name] for e in runs["bce"].metrics["seeds"]])
    assert p.mean() > p_free[j] + 0.3, (p, p_free[j])
    assert runs["bce"].metrics["constraint_success_rate"] == 1.0


def test_margin_and_lse_stop_pushing_past_epsilon(attr_runs):
    """Plain BCE keeps pushing the probability up; max(BCE, eps) stops at eps. The LogSumExp relaxation
    meets the target too; its push fades by sigmoid(BCE - eps) past eps (checked exactly in
    test_attribute_loss_variants: with Adam, which normalises gradient scale, a faded push still moves
    the hole, which nothing else constrains, so a run alone cannot show the fade)."""
    cls, name, _, runs = attr_runs
    bce = {k: np.array([-np.log(e["attributes"][name]) for e in r.metrics["seeds"]]) for k, r in runs.items()}
    eps = EPS["margin"]
    assert np.all(bce["margin"] > 0.6 * eps) and np.all(bce["margin"] < 1.5 * eps), bce["margin"]
    assert bce["bce"].mean() < 0.6 * bce["margin"].mean(), (bce["bce"], bce["margin"])
    terms = np.array([e["terms"]["attributes"] for e in runs["margin"].metrics["seeds"]])
    assert np.all(terms >= eps - 1e-6)
    assert runs["lse"].metrics["constraint_success_rate"] == 1.0
    lse_terms = np.array([e["terms"]["attributes"] for e in runs["lse"].metrics["seeds"]])
    assert np.allclose(lse_terms, np.log(np.exp(bce["lse"]) + np.exp(eps)), atol=0.05)


def test_attribute_loss_variants():
    logits = jnp.asarray([3.0, -1.0])
    t = jnp.asarray([1.0, 1.0])
    bce = np.asarray(jax.nn.softplus(logits) - t * logits)
    assert np.isclose(attribute_loss(logits, t, "bce", 0.1), bce.mean())
    assert np.isclose(attribute_loss(logits, t, "margin", 0.1), np.maximum(bce, 0.1).mean())
    assert np.isclose(attribute_loss(logits, t, "lse", 0.1), np.log(np.exp(bce) + np.exp(0.1)).mean())
    x = logits[:1]  # BCE 0.049, below eps = 0.1 and far below eps = 3

    def grad(kind, eps):
        return float(jax.grad(lambda v: attribute_loss(v, t[:1], kind, eps))(x)[0])

    assert grad("margin", 0.1) == 0.0  # below eps: no push at all
    assert abs(grad("lse", 3.0)) < 0.06 * abs(grad("bce", 3.0))  # fades: sigmoid(BCE - eps) of the push
    assert abs(grad("lse", 0.1)) > 0.4 * abs(grad("bce", 0.1))


def test_prompt_raises_clip_similarity(models, target, hole, free_run):
    from jax_inpaint.models.clip import load_clip
    clip = load_clip(models["clip_dir"])
    prompt = "a photo of a red apple"
    run = inpaint(target, hole, models["G"], seeds=range(K), progress=False, prompts=[prompt], clip=clip,
                  clip_weight=10.0, **FAST)
    text = clip.encode_text(clip.params, clip.tokenize([prompt]))
    free = np.asarray(clip.similarity(clip.params, jnp.asarray(free_run.completions), text))[:, 0]
    steered = np.array([e["clip_similarity"][prompt] for e in run.metrics["seeds"]])
    assert steered.mean() > free.mean() + 0.05, (steered, free)


def test_prompt_weights_weight_the_clip_term(models, target, hole):
    """'TEXT::WEIGHT' on the command line -> (text, weight) -> the CLIP term is the weighted mean of
    1 - cosine similarity over the prompts, with the weights given (checked against CLIP directly)."""
    from jax_inpaint.inversion.config import parse_prompts
    from jax_inpaint.models.clip import load_clip
    from jax_inpaint.inversion.objective import Models as M

    clip = load_clip(models["clip_dir"])
    texts = ["a photo of a red apple", "a blue car"]
    assert parse_prompts([f"{texts[0]}::3", texts[1]]) == ((texts[0], 3.0), (texts[1], 1.0))
    assert parse_prompts(["a::b::0.5"]) == (("a::b", 0.5),)  # only the last '::' starts a weight
    known = jnp.ones(hole.shape, jnp.float32)  # all known: CLIP judges the target itself
    sim = np.asarray(clip.similarity(clip.params, jnp.asarray(np.clip(target, -1, 1))[None],
                                     clip.encode_text(clip.params, clip.tokenize(texts))))[0]
    assert abs(sim[0] - sim[1]) > 1e-3  # the two prompts score differently: weights matter

    ws = jnp.broadcast_to(models["G"].w_avg, (models["G"].num_ws, models["G"].w_dim))
    term = None
    for weights in ((1.0, 1.0), (3.0, 1.0), (1.0, 1000.0)):
        obj = Objective(M(G=models["G"], clip=clip), load_config(None, lpips=0.0),
                        Constraints.make(prompts=parse_prompts([f"{t}::{w}" for t, w in zip(texts, weights)])))
        frozen = obj.frozen()  # the weights are an argument of the compiled loss, as in the search
        np.testing.assert_array_equal(frozen["prompt_weights"], weights)
        if term is None:
            term = jax.jit(lambda fr, o=obj: o.terms(fr, ws, None, jnp.asarray(target), known, {})["clip"])
        w = np.asarray(weights)
        np.testing.assert_allclose(float(term(frozen)), np.sum(w * (1 - sim)) / w.sum(), rtol=1e-5)


def test_lpips_term_in_the_loop(models, target, hole):
    run = inpaint(target, hole, models["G"], seeds=[0, 1], progress=False, steps=25, lpips=1.0, lpips_mask="feature",
                  lr=0.1)
    lp = run.history["lpips"]
    assert np.all(np.isfinite(lp)) and np.all(lp[-1] < lp[0])
    assert run.metrics["diversity_hole_lpips"] > 0


# ---------------------------------------------------------------------------------------------
# The command line.

def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory, target):
    d = tmp_path_factory.mktemp("photo")
    img = np.clip(np.rint((target + 1) * 127.5), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(d / "face.png")
    Image.fromarray(np.kron(img, np.ones((2, 3, 1), np.uint8))).save(d / "wide.png")  # 96x64: gets cropped
    m = np.zeros((32, 32), np.uint8)
    m[10:20, 6:26] = 255
    Image.fromarray(m).save(d / "mask.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(d / "empty.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(d / "full.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(d / "small.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return d


def test_cli_inpaint_writes_everything(models, photo, tmp_path):
    out = tmp_path / "out"
    r = _cli("inpaint", photo / "face.png", "--mask", photo / "mask.png", "--generator", models["g_dir"],
             "--seeds", "0-3", "--config", "fast", "--lpips", "0", "--steps", "50", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    expected = sorted([f"completion_{s}.png" for s in range(4)] + [f"raw_{s}.png" for s in range(4)] +
                      ["grid.png", "latents.npz", "loss.png", "metrics.json"])
    assert names == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["seed"] for e in metrics["seeds"]] == [0, 1, 2, 3]
    assert metrics["config"]["steps"] == 50 and metrics["config"]["lr"] == 0.1  # fast preset + override
    lat = np.load(out / "latents.npz")
    assert lat["ws"].shape == (4, 8, 64)
    # the latents render again with `generate --latents`
    r = _cli("generate", "--generator", models["g_dir"], "--latents", out / "latents.npz", "--out", tmp_path / "re")
    assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(tmp_path / "re" / "seed0002.png")).astype(int)
    b = np.asarray(Image.open(out / "raw_2.png")).astype(int)
    assert np.abs(a - b).max() <= 1


def test_cli_w_space_and_optimized_noise(models, photo, tmp_path):
    """--space w --noise optimize from the command line: everything written, one w for all layers,
    the optimised (renormalised) noise maps in latents.npz, and they render the raw outputs again."""
    out = tmp_path / "out"
    r = _cli("inpaint", photo / "face.png", "--mask", "center", "--generator", models["g_dir"], "--seeds", "0,1",
             "--space", "w", "--noise", "optimize", "--lpips", "0", "--steps", "10", "--chunk", "10", "--out", out,
             "--quiet")
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {"completion_0.png", "completion_1.png", "raw_0.png", "raw_1.png",
                                               "grid.png", "latents.npz", "loss.png", "metrics.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["space"] == "w" and metrics["config"]["noise"] == "optimize"
    assert "noise_reg" in metrics["seeds"][0]["terms"]
    lat = np.load(out / "latents.npz")
    ws = lat["ws"]
    assert ws.shape == (2, 8, 64)
    np.testing.assert_array_equal(ws, np.broadcast_to(ws[:, :1], ws.shape))  # identical across layers
    G = models["G"]
    noise = {k[len("noise/"):]: lat[k] for k in lat.files if k.startswith("noise/")}
    assert set(noise) == set(G.config.noise_shapes)
    for name, v in noise.items():
        assert v.shape == (2,) + G.config.noise_shapes[name]
        np.testing.assert_allclose(v.mean(axis=(1, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(np.square(v).mean(axis=(1, 2)), 1, atol=1e-3)
    r = _cli("generate", "--generator", models["g_dir"], "--latents", out / "latents.npz", "--out", tmp_path / "re")
    assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(tmp_path / "re" / "seed0001.png")).astype(int)
    assert np.abs(a - np.asarray(Image.open(out / "raw_1.png")).astype(int)).max() <= 1


def test_cli_resizes_with_a_notice(models, photo, tmp_path):
    m = np.zeros((64, 96), np.uint8)
    m[20:40, 30:60] = 255
    Image.fromarray(m).save(tmp_path / "wide_mask.png")
    r = _cli("inpaint", photo / "wide.png", "--mask", tmp_path / "wide_mask.png", "--generator", models["g_dir"],
             "--seeds", "0-3", "--lpips", "0", "--steps", "25", "--lr", "0.1", "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 0, r.output
    assert "centre-cropped" in r.output


@pytest.mark.parametrize("image, mask, extra, message", [
    ("face.png", "empty.png", [], "no hole"),
    ("face.png", "full.png", [], "covers the whole image"),
    ("face.png", "empty.png", ["--invert-mask"], "covers the whole image"),
    ("face.png", "small.png", [], "must match"),
    ("broken.png", "mask.png", [], "not a readable image"),
    ("missing.png", "mask.png", [], "no such file"),
    ("face.png", "rect:0,0,64,64", [], "rect"),
    ("face.png", "mask.png", ["--attribute", "Smiling=1"], "classifier"),
    ("face.png", "mask.png", ["--prompt", "a cat"], "CLIP"),
    ("face.png", "mask.png", ["--attribute", "Smiling"], "NAME=VALUE"),
    ("face.png", "mask.png", ["--config", "nope"], "no such config"),
])
def test_cli_bad_inputs_exit_2_and_write_nothing(models, photo, tmp_path, image, mask, extra, message):
    mask_arg = str(photo / mask) if mask.endswith(".png") else mask
    out = tmp_path / "out"
    r = _cli("inpaint", photo / image, "--mask", mask_arg, "--generator", models["g_dir"], "--out", out,
             "--quiet", *extra)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_constraints_validation(models):
    with pytest.raises(ValueError, match="unknown attributes"):
        from jax_inpaint.models.vit import load_classifier
        Objective(Models(G=models["G"], classifier=load_classifier(models["cls_dir"])),
                  load_config(None, lpips=0.0), Constraints.make({"Not_An_Attribute": 1.0}))
    with pytest.raises(ValueError, match="probabilities"):
        Constraints.make({"Smiling": 2.0})


# ---------------------------------------------------------------------------------------------
# The other search options.

def test_nvidia_preset_as_shipped(models, target, hole):
    """The `nvidia` preset's own objective, not overridden: LPIPS only (mse weight 0), the noise
    regulariser at 1e5 on optimised noise, W space, decaying w noise, warm-up + cosine ramp-down."""
    from jax_inpaint.inversion.search import lr_schedule, w_noise_scale

    cfg = load_config("nvidia")
    objective = Objective(Models(G=models["G"], lpips=load_lpips()), cfg)
    weights = objective.weights()
    assert weights["mse"] == 0 and weights["lpips"] == 1 and weights["noise_reg"] == 1e5
    assert (cfg.space, cfg.noise, cfg.init, cfg.schedule, cfg.lpips_mask) == ("w", "optimize", "w_avg", "nvidia", "input")
    assert cfg.w_noise == pytest.approx(1.13) and cfg.init_jitter == 0
    assert float(w_noise_scale(cfg, 0, 2.0)) == pytest.approx(2.0 * 1.13)
    assert float(w_noise_scale(cfg, int(0.75 * cfg.steps), 2.0)) == 0.0
    lr = lr_schedule(cfg)
    assert float(lr(0)) == 0.0 and float(lr(cfg.steps // 2)) == pytest.approx(cfg.lr)
    assert float(lr(cfg.steps - 1)) < 0.01 * cfg.lr
    # A short run of it (20 steps instead of 1000): the loss is LPIPS + 1e5 x the regulariser.
    run = inpaint(target, hole, models["G"], seeds=[0, 1], config="nvidia", progress=False, steps=20, chunk=20)
    h = run.history
    assert set(h) == {"loss", "mse", "lpips", "noise_reg"}
    np.testing.assert_allclose(h["loss"], h["lpips"] + 1e5 * h["noise_reg"], rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(h["loss"])) and h["lpips"][-1].mean() < h["lpips"][0].mean()
    assert np.allclose(run.ws, run.ws[:, :1]) and not np.allclose(run.ws[0], run.ws[1])  # one w for all layers
    G = models["G"]
    assert set(run.noise) == set(G.config.noise_shapes)
    for name, v in run.noise.items():  # optimised, and renormalised after every step
        assert v.shape == (2,) + G.config.noise_shapes[name]
        assert not np.allclose(v[0], v[1])
        np.testing.assert_allclose(v.mean(axis=(1, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(np.square(v).mean(axis=(1, 2)), 1, atol=1e-3)


def test_z_init_with_the_realism_term(models, target, hole):
    run = inpaint(target, hole, models["g_dir"], seeds=[0, 1], progress=False, steps=25, lpips=0.0, lr=0.05,
                  init="z", realism=0.1, chunk=25)
    assert "realism" in run.history and np.all(np.isfinite(run.history["realism"]))
    assert not np.allclose(run.ws[0], run.ws[1])


def test_conditional_generator_needs_a_class(data_dir, tmp_path):
    sg = data_dir / "stylegan2"
    convert_stylegan2(str(sg / "conditional_G_state.npz"), str(tmp_path / "c"),
                      init_kwargs=str(sg / "conditional_G_config.json"))
    G = load_generator(tmp_path / "c")
    img = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="--class"):
        inpaint(img, "center", G, seeds=[0], progress=False, steps=5, lpips=0.0)
    run = inpaint(img, "center", G, seeds=[0, 1], class_idx=2, progress=False, steps=10, lpips=0.0, chunk=10,
                  init="z")
    assert run.completions.shape == (2, 32, 32, 3)
