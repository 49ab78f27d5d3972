"""Parity of the Flax StyleGAN2 with NVIDIA's and rosinality's PyTorch outputs (tests/data/*/README.md).

Tolerances (max-abs, from tests/data/stylegan2/README.md, about 10x the float32 spread of the
reference code itself): ws 5e-5; images 1e-4; gradients 1e-5 x the largest reference gradient;
discriminator logits 1e-5. rosinality: images and latents 1e-4, gradients 1e-5 x max, D logits 1e-5.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convert_weights.stylegan2 import convert_stylegan2
from jax_inpaint.models.stylegan2 import load_discriminator, load_generator, truncate

SG = "stylegan2"
CONFIGS = ["tiny", "conditional", "res64", "orig", "resnet"]

WS_TOL = 5e-5
IMG_TOL = 1e-4
GRAD_RTOL = 1e-5


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def nvidia(data_dir, tmp_path_factory):
    """Every NVIDIA fixture config converted from its state dict + constructor kwargs, loaded once."""
    out = {}
    for cfg in CONFIGS:
        dest = tmp_path_factory.mktemp("g") / cfg
        convert_stylegan2(str(data_dir / SG / f"{cfg}_G_state.npz"), str(dest),
                          init_kwargs=str(data_dir / SG / f"{cfg}_G_config.json"))
        out[cfg] = (load_generator(dest), np.load(data_dir / SG / f"{cfg}_vectors.npz"))
    return out


@pytest.mark.parametrize("cfg", CONFIGS)
def test_mapping_matches_nvidia(nvidia, cfg):
    G, v = nvidia[cfg]
    c = v["c"] if G.c_dim else None
    assert np.abs(G.mapping(v["z"], c) - v["ws_psi1"]).max() <= WS_TOL
    assert np.abs(G.mapping(v["z"], c, truncation_psi=0.7) - v["ws_psi0.7"]).max() <= WS_TOL
    ws = G.mapping(v["z"], c, truncation_psi=0.7, truncation_cutoff=2)
    assert np.abs(ws - v["ws_psi0.7_cutoff2"]).max() <= WS_TOL


@pytest.mark.parametrize("cfg", CONFIGS)
def test_synthesis_matches_nvidia(nvidia, cfg):
    G, v = nvidia[cfg]
    for ws_key, img_key in [("ws_psi1", "img_psi1"), ("ws_psi0.7", "img_psi0.7"), ("ws_plus", "img_wplus"),
                            ("ws_psi0.7_cutoff2", "img_psi0.7_cutoff2")]:
        img = G.synthesis(v[ws_key], noise_mode="const")
        assert img.shape == (3, G.img_resolution, G.img_resolution, 3)
        assert np.abs(nchw(img) - v[img_key]).max() <= IMG_TOL, img_key
    assert np.abs(nchw(G.synthesis(v["ws_psi1"], noise_mode="none")) - v["img_psi1_noise_none"]).max() <= IMG_TOL


@pytest.mark.parametrize("cfg", CONFIGS)
def test_end_to_end_from_z(nvidia, cfg):
    G, v = nvidia[cfg]
    img = G(v["z"], v["c"] if G.c_dim else None, truncation_psi=0.7)
    assert np.abs(nchw(img) - v["img_psi0.7"]).max() <= IMG_TOL


def _grad_check(G, ws, noise, R, ref_loss, ref_gws, ref_gnoise, variables=None):
    def loss(ws, noise):
        return jnp.sum(G.synthesize(G.variables if variables is None else variables, ws, noise) * R)

    value, (g_ws, g_noise) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(ws, noise)
    assert abs(float(value) - float(ref_loss)) <= GRAD_RTOL * abs(float(ref_loss))
    assert np.abs(g_ws - ref_gws).max() <= GRAD_RTOL * np.abs(ref_gws).max()
    for name, ref in ref_gnoise.items():
        assert np.abs(np.asarray(g_noise[name]).reshape(ref.shape) - ref).max() <= GRAD_RTOL * np.abs(ref).max(), name


@pytest.mark.parametrize("cfg", CONFIGS)
def test_gradients_match_nvidia(nvidia, cfg):
    G, v = nvidia[cfg]
    ref_noise = {k[len("grad.synthesis."):-len(".noise_const")]: v[k] for k in v.files if k.startswith("grad.")}
    assert set(ref_noise) == set(G.config.noise_shapes)
    _grad_check(G, jnp.asarray(v["ws_plus"]), G.noise_const, jnp.asarray(v["grad_R"].transpose(0, 2, 3, 1)),
                v["grad_loss"], v["grad_ws_plus"], ref_noise)


@pytest.mark.parametrize("cfg", ["tiny", "resnet"])
def test_gradients_with_prepared_kernels_match_nvidia(nvidia, cfg):
    """The search's variables (on CPU: the kernels its gradient needs, flipped / transposed once,
    `Generator.prepared_variables`) give NVIDIA's gradients too."""
    G, v = nvidia[cfg]
    prepared = G.prepared_variables()
    assert ("prepared" in prepared) == (jax.default_backend() == "cpu")
    assert G.prepared_variables() is prepared  # made once
    ref_noise = {k[len("grad.synthesis."):-len(".noise_const")]: v[k] for k in v.files if k.startswith("grad.")}
    _grad_check(G, jnp.asarray(v["ws_plus"]), G.noise_const, jnp.asarray(v["grad_R"].transpose(0, 2, 3, 1)),
                v["grad_loss"], v["grad_ws_plus"], ref_noise, variables=prepared)


def test_gradient_agrees_with_finite_differences(nvidia):
    G, v = nvidia["tiny"]
    R = jnp.asarray(np.random.RandomState(0).randn(1, 32, 32, 3), jnp.float32)
    ws0 = jnp.asarray(v["ws_plus"][:1])

    loss = jax.jit(lambda ws: jnp.sum(G.synthesize(G.variables, ws, G.noise_const) * R))
    g = jax.grad(loss)(ws0)
    assert np.all(np.isfinite(g))
    rng = np.random.RandomState(1)
    for _ in range(3):
        d = jnp.asarray(rng.randn(*ws0.shape), jnp.float32)
        d = d / jnp.linalg.norm(d)
        # Leaky ReLUs and clamps make the loss piecewise smooth, so central differences converge
        # only linearly in eps: with eps = 3e-3 they land within about 1.5 % of the gradient.
        eps = 3e-3
        fd = (loss(ws0 + eps * d) - loss(ws0 - eps * d)) / (2 * eps)
        analytic = jnp.vdot(g, d)
        assert abs(float(fd - analytic)) <= 3e-2 * max(1.0, abs(float(analytic))), (float(fd), float(analytic))


def test_discriminator_matches_nvidia(data_dir, tmp_path):
    dest = tmp_path / "pkl"
    convert_stylegan2(str(data_dir / SG / "tiny_network_stripped.pkl"), str(dest))
    D = load_discriminator(dest)
    v = np.load(data_dir / SG / "tiny_D_vectors.npz")
    assert np.abs(D(v["img"].transpose(0, 2, 3, 1)) - v["logits"]).max() <= 1e-5
    assert np.abs(D(v["img_n3"].transpose(0, 2, 3, 1)) - v["logits_n3"]).max() <= 1e-5
    # minibatch-std groups are interleaved: a port with contiguous groups would differ by ~2.8e-3
    grad = jax.jit(jax.grad(lambda x: jnp.sum(D.logits(D.params, x))))(jnp.asarray(v["img"].transpose(0, 2, 3, 1)))
    ref = v["grad_img"]
    assert np.abs(nchw(grad) - ref).max() <= GRAD_RTOL * np.abs(ref).max()


def test_training_pickle_equals_state_dict_conversion(nvidia, data_dir, tmp_path):
    dest = tmp_path / "pkl"
    convert_stylegan2(str(data_dir / SG / "tiny_network_stripped.pkl"), str(dest))
    G = load_generator(dest)
    G_ref, v = nvidia["tiny"]
    for a, b in zip(jax.tree.leaves(G.variables), jax.tree.leaves(G_ref.variables)):
        np.testing.assert_array_equal(a, b)
    meta = json.loads((dest / "model.json").read_text())
    assert meta["source"]["class_name"] == "training.networks.Generator"
    assert sorted(meta["trees"]) == ["D", "G"]


# ---------------------------------------------------------------------------------------------
# rosinality checkpoints.

ROS = [("res32", "res32_g_ema.pt"), ("res32", "res32_convert_weight_legacy.pt"), ("res64", "res64_g_ema.pt")]


@pytest.fixture(scope="module")
def rosinality(data_dir, tmp_path_factory):
    out = {}
    for cfg, fname in ROS:
        dest = tmp_path_factory.mktemp("r") / fname
        convert_stylegan2(str(data_dir / "rosinality" / fname), str(dest))
        out[fname] = (load_generator(dest), np.load(data_dir / "rosinality" / f"{cfg}_vectors.npz"), dest)
    return out


@pytest.mark.parametrize("fname", [f for _, f in ROS])
def test_rosinality_outputs(rosinality, fname):
    G, v, _ = rosinality[fname]
    w = G.mapping(v["z"])
    assert np.abs(w - v["w"][:, None]).max() <= IMG_TOL
    assert np.abs(nchw(G.synthesis(w)) - v["img_z_trunc1"]).max() <= IMG_TOL
    ws07 = truncate(w, jnp.asarray(v["mean_latent"][0]), 0.7)
    assert np.abs(ws07 - v["latent_z_trunc0.7"]).max() <= IMG_TOL
    assert np.abs(nchw(G.synthesis(ws07)) - v["img_z_trunc0.7"]).max() <= IMG_TOL
    assert np.abs(nchw(G.synthesis(v["wplus"])) - v["img_wplus"]).max() <= IMG_TOL
    assert np.abs(nchw(G.synthesis(v["latent_mix"])) - v["img_mix"]).max() <= IMG_TOL
    names = list(G.config.noise_shapes)
    explicit = {name: v[f"noise_explicit_{i}"][:, 0] for i, name in enumerate(names)}
    img = G.synthesis(v["wplus"], noise=explicit)
    assert np.abs(nchw(img) - v["img_wplus_noise_explicit"]).max() <= IMG_TOL


def test_rosinality_latent_avg_becomes_w_avg(rosinality):
    G, v, _ = rosinality["res32_convert_weight_legacy.pt"]
    assert np.abs(G.w_avg - v["mean_latent"][0]).max() == 0
    ws = G.mapping(v["z"], truncation_psi=0.7)
    assert np.abs(ws - v["latent_z_trunc0.7"]).max() <= IMG_TOL


@pytest.mark.parametrize("fname", ["res32_g_ema.pt", "res64_g_ema.pt"])
def test_rosinality_gradients_and_discriminator(rosinality, fname):
    G, v, dest = rosinality[fname]
    ref_noise = {name: v[f"grad_noise_{i}"] for i, name in enumerate(G.config.noise_shapes)}
    _grad_check(G, jnp.asarray(v["wplus"]), G.noise_const, jnp.asarray(v["grad_R"].transpose(0, 2, 3, 1)),
                v["grad_loss"], v["grad_wplus"], ref_noise)
    D = load_discriminator(dest)
    assert np.abs(D(v["img_z_trunc1"].transpose(0, 2, 3, 1)) - v["d_logits"]).max() <= 1e-5


# ---------------------------------------------------------------------------------------------
# API behaviour.

def test_noise_modes(nvidia):
    G, v = nvidia["tiny"]
    ws = v["ws_psi1"]
    const = G.synthesis(ws)
    assert isinstance(const, jax.Array)
    np.testing.assert_allclose(G.synthesis(ws, noise=G.noise_const), const, atol=1e-6)
    r1 = G.synthesis(ws, noise_mode="random", key=jax.random.key(1))
    r1b = G.synthesis(ws, noise_mode="random", key=jax.random.key(1))
    r2 = G.synthesis(ws, noise_mode="random", key=jax.random.key(2))
    np.testing.assert_array_equal(r1, r1b)
    assert np.abs(r1 - r2).max() > 0.1 and np.abs(r1 - const).max() > 0.1
    with pytest.raises(ValueError, match="PRNG key"):
        G.synthesis(ws, noise_mode="random")
    with pytest.raises(ValueError, match="missing"):
        G.synthesis(ws, noise={"b4.conv1": np.zeros((4, 4))})


def test_attributes_and_input_checks(nvidia):
    G, v = nvidia["conditional"]
    assert (G.num_ws, G.w_dim, G.z_dim, G.c_dim, G.img_resolution, G.img_channels) == (8, 64, 32, 4, 32, 3)
    assert G.w_avg.shape == (64,)
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(v["z"])
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(np.zeros((1, 3, 64)))


def test_bfloat16_compute_is_close_to_float32(nvidia, data_dir, tmp_path):
    G, v = nvidia["res64"]
    from jax_inpaint.models.stylegan2 import Generator
    G16 = Generator(G.config, G.params, G.buffers, dtype=jnp.bfloat16)
    a, b = np.asarray(G.synthesis(v["ws_plus"])), np.asarray(G16.synthesis(v["ws_plus"]))
    assert np.isfinite(b).all()
    assert np.abs(a - b).mean() <= 0.05 * np.abs(a).mean()
