"""ViT attribute classifier: conversion, parity with transformers' ViTForImageClassification, labels,
preprocessing, strict conversion errors.

Tolerance: 1e-4 absolute on logits and hidden states (tests/data/vit/README.md: a correct float32
port agrees to ~1e-5; a transposed patch kernel moves the logits by 1.8).
"""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from convert_weights.vit import convert_classifier
from model_tools import edited_checkpoint, load_vectors, nhwc
from jax_inpaint.cli import main
from jax_inpaint.errors import InputError
from jax_inpaint.models.vit import CELEBA_ATTRIBUTES, ClassifierConfig, load_classifier

TOL = 1e-4


@pytest.fixture(scope="module")
def vectors(data_dir):
    return load_vectors(data_dir / "vit" / "vit_vectors.npz")


@pytest.fixture(scope="module")
def clf(data_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("vit") / "m"
    convert_classifier(data_dir / "vit" / "tiny-vit-celeba-hf", dest)
    return load_classifier(dest)


@pytest.fixture(scope="module")
def fns(clf):
    return {"outputs": jax.jit(clf.outputs), "logits": jax.jit(clf.logits), "probs": jax.jit(clf.probs)}


def test_parity(clf, fns, vectors):
    logits, hidden, emb = fns["outputs"](clf.params, nhwc(vectors["pixel_values"]))
    np.testing.assert_allclose(emb, vectors["embeddings_output"], rtol=0, atol=TOL)
    np.testing.assert_allclose(hidden, vectors["last_hidden_state"], rtol=0, atol=TOL)
    np.testing.assert_allclose(logits, vectors["logits"], rtol=0, atol=TOL)


def test_images_at_input_size_and_probabilities(clf, fns, vectors):
    raw = nhwc(vectors["raw_images"]) * 2 - 1  # 64x64: used as they are, mean/std from preprocessor_config.json
    np.testing.assert_allclose(fns["logits"](clf.params, raw), vectors["logits"], rtol=0, atol=TOL)
    np.testing.assert_allclose(fns["probs"](clf.params, raw), vectors["probs"], rtol=0, atol=TOL / 4)


def test_labels_and_config(clf, vectors):
    assert clf.labels == list(vectors["labels"]) == list(CELEBA_ATTRIBUTES)
    cfg = clf.config
    assert cfg.preprocess.mean == pytest.approx((0.485, 0.456, 0.406)) and cfg.preprocess.std == pytest.approx(
        (0.229, 0.224, 0.225))
    assert cfg.encoder.hidden_act == "gelu" and cfg.encoder.layer_norm_eps == 1e-12 and cfg.encoder.qkv_bias
    again = ClassifierConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)


def test_preprocessing_matches_vit_image_processor(clf, data_dir):
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[::3, ::2][:150, :200])
    proc = ViTImageProcessorPil.from_pretrained(data_dir / "vit" / "tiny-vit-celeba-hf")
    ref = proc(images=img, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    ours = np.asarray(jax.jit(clf.preprocess)(img[None].astype(np.float32) / 127.5 - 1))[0]
    err = np.abs(ours - ref) * np.asarray(clf.config.preprocess.std)  # [0, 1] units
    # PIL resamples uint8 (rounded), we resample floats: observed max 0.0036 (0.9 levels), mean 0.001.
    assert err.max() < 0.01 and err.mean() < 0.002


def test_gradients_finite(clf):
    img = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 80, 72, 3)), jnp.float32)
    g = jax.jit(jax.grad(lambda x: jnp.sum(clf.probs(clf.params, x)[:, [5, 31]])))(img)
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0


# ---------------------------------------------------------------------------------------------
# Strict conversion.

def _folder_with(tmp_path, data_dir, edit):
    return edited_checkpoint(data_dir / "vit" / "tiny-vit-celeba-hf", tmp_path / "src", edit)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("vit.encoder.layer.1.attention.attention.value.bias"),
     r"missing tensors \(1\): vit.encoder.layer.1.attention.attention.value.bias"),
    (lambda s: s.__setitem__("classifier.weight", np.zeros((39, 64), np.float32)),
     r"classifier.weight: shape \(39, 64\), expected \(40, 64\)"),
    (lambda s: s.__setitem__("vit.embeddings.mask_token", np.zeros((1, 1, 64), np.float32)),
     r"unexpected tensors \(1\): vit.embeddings.mask_token"),
])
def test_bad_checkpoint_is_refused_with_the_tensor_named(tmp_path, data_dir, edit, message):
    src = _folder_with(tmp_path, data_dir, edit)
    with pytest.raises(InputError, match=message):
        convert_classifier(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(main, ["convert", "classifier", str(src), str(tmp_path / "out")])
    assert res.exit_code == 2 and "Error:" in res.output


def test_sharded_safetensors(tmp_path, data_dir, clf):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(data_dir / "vit" / "tiny-vit-celeba-hf" / "config.json", src / "config.json")
    state = load_file(data_dir / "vit" / "tiny-vit-celeba-hf" / "model.safetensors")
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[:20], "model-00002-of-00002.safetensors": names[20:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, src / file)
    index = {"weight_map": {k: file for file, keys in shards.items() for k in keys}}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    convert_classifier(src, tmp_path / "m")
    other = load_classifier(tmp_path / "m")
    for a, b in zip(jax.tree.leaves(other.params), jax.tree.leaves(clf.params)):
        np.testing.assert_array_equal(a, b)
    assert other.config.preprocess.mean == (0.5, 0.5, 0.5)  # no preprocessor_config.json: the processor defaults


def test_cli_convert(tmp_path, data_dir):
    res = CliRunner().invoke(main, ["convert", "classifier", str(data_dir / "vit" / "tiny-vit-celeba-hf"),
                                    str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert load_classifier(tmp_path / "m").labels[31] == "Smiling"


# ---------------------------------------------------------------------------------------------
# Other architectures, built by transformers with random weights.

def _perturbed(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "layernorm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            elif p.ndim >= 2 and "embeddings" not in name:
                p.add_(noise / np.sqrt(np.prod(p.shape[1:])))
            else:
                p.add_(0.1 * noise)
    return model.eval()


OTHER_CONFIGS = {
    # qkv without bias, tanh-approximate GELU, non-square image, patches that do not tile it exactly
    "nobias-gelu_new-50x40p12": dict(hidden_size=40, num_hidden_layers=3, num_attention_heads=5, intermediate_size=72,
                                     hidden_act="gelu_new", layer_norm_eps=1e-6, image_size=[50, 40], patch_size=12,
                                     qkv_bias=False, num_labels=7),
    "quick_gelu-32p8-bin": dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                                hidden_act="quick_gelu", layer_norm_eps=1e-5, image_size=32, patch_size=8,
                                id2label={0: "Smiling", 1: "Young", 2: "Male"}),
}


@pytest.mark.parametrize("name", sorted(OTHER_CONFIGS))
def test_other_architectures_match_transformers(tmp_path, name):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    model = _perturbed(ViTForImageClassification(ViTConfig(**OTHER_CONFIGS[name])), seed=1)
    src = tmp_path / "src"
    if name.endswith("-bin"):
        # pytorch_model.bin with transformers 5's in-memory names (vit.layers.0.attention.q_proj...)
        src.mkdir()
        model.config.save_pretrained(src)
        torch.save(model.state_dict(), src / "pytorch_model.bin")
    else:
        model.save_pretrained(src)  # saved names (vit.encoder.layer.0.attention.attention.query...)
    h, w = model.config.image_size if isinstance(model.config.image_size, list) else (model.config.image_size,) * 2
    images = np.random.default_rng(0).uniform(-1, 1, (3, h, w, 3)).astype(np.float32)
    with torch.no_grad():  # no preprocessor_config.json: ViTImageProcessor's mean = std = 0.5, i.e. the [-1,1] images
        ref = model(pixel_values=torch.tensor(images.transpose(0, 3, 1, 2))).logits.numpy()
    convert_classifier(src, tmp_path / "m")
    clf = load_classifier(tmp_path / "m")
    assert clf.labels == [model.config.id2label[i] for i in range(model.config.num_labels)]
    np.testing.assert_allclose(jax.jit(clf.logits)(clf.params, images), ref, rtol=0, atol=TOL)
    assert float(np.std(ref)) > 0.1
