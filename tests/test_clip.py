"""CLIP: conversion from the HF folder and the OpenAI-named file, parity with transformers' CLIPModel,
tokenizer ids, differentiable preprocessing, strict conversion errors.

Tolerance: 1e-4 absolute on embeddings, hidden states and the similarity matrix (the README of
tests/data/clip: a correct float32 port agrees to ~1e-5; a transposed patch kernel moves the image
embeddings by 1.2, swapped q/k weights the text embeddings by 4).
"""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_inpaint.errors import Notice
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from convert_weights.clip import convert_clip
from model_tools import edited_checkpoint, load_vectors, nhwc
from jax_inpaint.cli import main
from jax_inpaint.models.clip import CLIPConfig, load_clip
from jax_inpaint.errors import InputError

TOL = 1e-4


@pytest.fixture(scope="module")
def vectors(data_dir):
    return load_vectors(data_dir / "clip" / "clip_vectors.npz")


@pytest.fixture(scope="module")
def models(data_dir, tmp_path_factory):
    """The tiny checkpoint converted from both sources."""
    root = tmp_path_factory.mktemp("clip")
    hf_dir = data_dir / "clip" / "tiny-clip-hf"
    convert_clip(hf_dir, root / "hf")
    convert_clip(data_dir / "clip" / "tiny-clip-openai.safetensors", root / "openai", tokenizer=str(hf_dir),
                 vision_heads=4, text_heads=4)
    return {"hf": load_clip(root / "hf"), "openai": load_clip(root / "openai")}


@pytest.fixture(scope="module")
def fns():
    """Compiled pure functions, shared (the model object is a static argument: one compile per model)."""
    return {"vision": jax.jit(lambda m, p, x: m.vision_outputs(p, x), static_argnums=0),
            "image": jax.jit(lambda m, p, x: m.image_features(p, x), static_argnums=0),
            "encode_image": jax.jit(lambda m, p, x: m.encode_image(p, x), static_argnums=0),
            "text": jax.jit(lambda m, p, ids, mask: m.text_outputs(p, ids, mask), static_argnums=0),
            "encode_text": jax.jit(lambda m, p, ids, mask: m.encode_text(p, ids, mask), static_argnums=0)}


@pytest.mark.parametrize("source", ["hf", "openai"])
def test_vision_parity(models, fns, vectors, source):
    m = models[source]
    last, pooled = fns["vision"](m, m.params, nhwc(vectors["pixel_values"]))
    np.testing.assert_allclose(last, vectors["vision_last_hidden_state"], rtol=0, atol=TOL)
    np.testing.assert_allclose(pooled, vectors["vision_pooler_output"], rtol=0, atol=TOL)
    emb = fns["image"](m, m.params, nhwc(vectors["pixel_values"]))
    np.testing.assert_allclose(emb, vectors["image_embeds"], rtol=0, atol=TOL)
    # The same from [-1, 1] images at the model's input size (used as they are, no resampling).
    raw = nhwc(vectors["raw_images"]) * 2 - 1
    np.testing.assert_allclose(fns["encode_image"](m, m.params, raw), vectors["image_embeds"], rtol=0, atol=TOL)


@pytest.mark.parametrize("source", ["hf", "openai"])
def test_text_parity(models, fns, vectors, source):
    m = models[source]
    mask = vectors["attention_mask"]
    last, pooled = fns["text"](m, m.params, vectors["input_ids"], mask)
    keep = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(last)[keep], vectors["text_last_hidden_state"][keep], rtol=0, atol=TOL)
    np.testing.assert_allclose(pooled, vectors["text_pooler_output"], rtol=0, atol=TOL)
    for ids in (vectors["input_ids"], vectors["input_ids_hf"]):  # open_clip (0) and HF (EOT) padding
        np.testing.assert_allclose(fns["encode_text"](m, m.params, ids, None), vectors["text_embeds"], rtol=0, atol=TOL)


@pytest.mark.parametrize("source", ["hf", "openai"])
def test_similarity_and_logit_scale(models, fns, vectors, source):
    m = models[source]
    text = fns["encode_text"](m, m.params, vectors["input_ids_hf"], None)
    sim = jax.jit(m.similarity)(m.params, nhwc(vectors["raw_images"]) * 2 - 1, text)
    np.testing.assert_allclose(sim, vectors["cosine_similarity"], rtol=0, atol=TOL)
    np.testing.assert_allclose(m.logit_scale(m.params) * sim, vectors["logits_per_image"], rtol=0, atol=10 * TOL)
    np.testing.assert_allclose(m.logit_scale(m.params), vectors["logit_scale_exp"], rtol=1e-6)


def test_both_sources_give_identical_parameters(models):
    flat = jax.tree_util.tree_leaves_with_path(models["hf"].params)
    other = dict(jax.tree_util.tree_leaves_with_path(models["openai"].params))
    assert len(flat) == len(other) == 78
    for path, leaf in flat:
        np.testing.assert_array_equal(leaf, other[path], err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("source", ["hf", "openai"])
def test_tokenizer_ids(models, vectors, source):
    m = models[source]
    assert os.path.isfile(os.path.join(m.folder, "tokenizer", "vocab.json"))  # the folder is self-contained
    with pytest.warns(Notice, match="CLIP reads the first"):  # one reference prompt is longer than 77 tokens
        ids, mask = m.tokenize(list(vectors["prompts"]), return_mask=True)
    np.testing.assert_array_equal(ids, vectors["input_ids_hf"])
    np.testing.assert_array_equal(mask, vectors["attention_mask"])
    np.testing.assert_array_equal(ids * mask, vectors["input_ids"])  # open_clip's ids where the mask is 1


def test_preprocessing_matches_clip_image_processor(models, data_dir):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[::3, ::2][:150, :200])  # 150 x 200: resize to 64 x 85, crop
    proc = CLIPImageProcessorPil.from_pretrained(data_dir / "clip" / "tiny-clip-hf")
    ref = proc(images=img, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    m = models["hf"]
    ours = np.asarray(jax.jit(m.preprocess)(img[None].astype(np.float32) / 127.5 - 1))[0]
    std = np.asarray(m.config.preprocess.std)
    err = np.abs(ours - ref) * std  # in [0, 1] pixel units
    # PIL resamples uint8 (rounded); we resample floats: observed max 0.009 (2.3 levels), mean 0.0011.
    assert err.max() < 0.02 and err.mean() < 0.002


def test_gradients_reach_the_image(models, fns):
    m = models["hf"]
    text = fns["encode_text"](m, m.params, m.tokenize(["a photo of a cat", "a dog"]), None)
    img = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 72, 96, 3)), jnp.float32)  # resampled + cropped
    g = jax.jit(jax.grad(lambda x: jnp.sum(m.similarity(m.params, x, text))))(img)
    assert g.shape == img.shape and np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0


def test_config_roundtrip(models):
    cfg = models["hf"].config
    again = CLIPConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)
    assert cfg.vision.encoder.hidden_size == 64 and cfg.text.encoder.hidden_size == 16 and cfg.projection_dim == 32


def test_openai_file_without_tokenizer(data_dir, tmp_path):
    convert_clip(data_dir / "clip" / "tiny-clip-openai.safetensors", tmp_path / "m", vision_heads=4, text_heads=4)
    m = load_clip(tmp_path / "m")
    with pytest.raises(InputError, match="--tokenizer"):
        m.tokenize(["a cat"])


# ---------------------------------------------------------------------------------------------
# Strict conversion: missing / mis-shaped / unexpected tensors are named.

def _folder_with(tmp_path, data_dir, edit):
    return edited_checkpoint(data_dir / "clip" / "tiny-clip-hf", tmp_path / "src", edit)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("text_model.encoder.layers.1.mlp.fc2.bias"),
     r"missing tensors \(1\): text_model.encoder.layers.1.mlp.fc2.bias"),
    (lambda s: s.__setitem__("vision_model.encoder.layers.0.mlp.fc1.weight", np.zeros((255, 64), np.float32)),
     r"vision_model.encoder.layers.0.mlp.fc1.weight: shape \(255, 64\), expected \(256, 64\)"),
    (lambda s: s.__setitem__("vision_model.extra.weight", np.zeros(3, np.float32)),
     "unexpected tensors.*vision_model.extra.weight"),
])
def test_bad_checkpoint_is_refused_with_the_tensor_named(tmp_path, data_dir, edit, message):
    src = _folder_with(tmp_path, data_dir, edit)
    with pytest.raises(InputError, match=message):
        convert_clip(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(main, ["convert", "clip", str(src), str(tmp_path / "out")])
    assert res.exit_code == 2 and "Error:" in res.output and "Traceback" not in res.output


def test_cli_convert(tmp_path, data_dir):
    res = CliRunner().invoke(main, ["convert", "clip", str(data_dir / "clip" / "tiny-clip-hf"), str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "model.json").is_file() and (tmp_path / "m" / "tokenizer" / "merges.txt").is_file()
    res = CliRunner().invoke(main, ["convert", "clip", str(data_dir / "clip" / "tiny-clip-hf"), str(tmp_path / "m")])
    assert res.exit_code == 2 and "already exists" in res.output


# ---------------------------------------------------------------------------------------------
# Other architectures, built by transformers with random weights.

def _perturbed(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim >= 2:
                p.add_(noise / np.sqrt(np.prod(p.shape[1:])))
            elif "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                p.copy_(1 + 0.2 * noise) if name.endswith("weight") else p.add_(0.1 * noise)
            else:
                p.add_(0.1 * noise if p.ndim else 0.25 * noise)
    return model.eval()


def _to_openai(state: dict) -> dict:
    """HF CLIP names -> OpenAI names (tests/data/clip/README.md's table)."""
    out = {}
    for k, v in state.items():
        k2 = (k.replace("vision_model.embeddings.class_embedding", "visual.class_embedding")
              .replace("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight")
              .replace("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding")
              .replace("vision_model.pre_layrnorm", "visual.ln_pre")
              .replace("vision_model.post_layernorm", "visual.ln_post")
              .replace("vision_model.encoder.layers.", "visual.transformer.resblocks.")
              .replace("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
              .replace("text_model.embeddings.position_embedding.weight", "positional_embedding")
              .replace("text_model.encoder.layers.", "transformer.resblocks.")
              .replace("text_model.final_layer_norm", "ln_final")
              .replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
              .replace("self_attn.out_proj", "attn.out_proj")
              .replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
        if k2 == "visual_projection.weight":
            out["visual.proj"] = v.T.copy()
        elif k2 == "text_projection.weight":
            out["text_projection"] = v.T.copy()
        elif "self_attn.q_proj" in k2:
            base, kind = k2.split(".self_attn.q_proj.")
            out[f"{base}.attn.in_proj_{kind}"] = np.concatenate(
                [state[k], state[k.replace("q_proj", "k_proj")], state[k.replace("q_proj", "v_proj")]])
        elif "self_attn.k_proj" in k2 or "self_attn.v_proj" in k2:
            continue
        else:
            out[k2] = v
    return out


OTHER_CONFIGS = {
    "gelu-48x3-img40p8-text24": dict(
        vision_config=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=3,
                           image_size=40, patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6),
        text_config=dict(vocab_size=300, hidden_size=24, intermediate_size=40, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=20, hidden_act="gelu_new",
                         layer_norm_eps=1e-6, eos_token_id=299, bos_token_id=298, pad_token_id=0),
        projection_dim=20),
    "quickgelu-legacy-eos-img36p12": dict(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=36, patch_size=12, hidden_act="quick_gelu"),
        text_config=dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, eos_token_id=2, bos_token_id=1,
                         pad_token_id=0),
        projection_dim=8),
}


@pytest.mark.parametrize("name", sorted(OTHER_CONFIGS))
def test_other_architectures_match_transformers(tmp_path, name):
    import torch
    from transformers import CLIPConfig as HFConfig, CLIPModel

    torch.manual_seed(0)
    hf_model = _perturbed(CLIPModel(HFConfig(**OTHER_CONFIGS[name])), seed=1)
    hf_model.save_pretrained(tmp_path / "src")  # config.json + model.safetensors, no tokenizer
    cfg = hf_model.config
    rng = np.random.default_rng(0)
    size = cfg.vision_config.image_size
    images = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    mean, std = np.asarray([0.48145466, 0.4578275, 0.40821073]), np.asarray([0.26862954, 0.26130258, 0.27577711])
    pixel_values = ((images + 1) / 2 - mean) / std  # OpenAI mean/std: the default without preprocessor_config.json
    t = cfg.text_config
    ids = rng.integers(3, t.vocab_size - 1, (3, t.max_position_embeddings))
    eos = t.eos_token_id if t.eos_token_id != 2 else t.vocab_size - 1  # legacy pooling: the largest id
    for row, pos in enumerate((4, 9, t.max_position_embeddings - 1)):
        ids[row, pos] = eos
    with torch.no_grad():
        ref_img = hf_model.get_image_features(pixel_values=torch.tensor(pixel_values.transpose(0, 3, 1, 2)).float())
        ref_txt = hf_model.get_text_features(input_ids=torch.tensor(ids))
    ref_img = getattr(ref_img, "pooler_output", ref_img).numpy()
    ref_txt = getattr(ref_txt, "pooler_output", ref_txt).numpy()

    convert_clip(tmp_path / "src", tmp_path / "hf")
    state = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    save_file(_to_openai(state), tmp_path / "openai.safetensors")
    convert_clip(tmp_path / "openai.safetensors", tmp_path / "openai", config=str(tmp_path / "src" / "config.json"))
    for folder in ("hf", "openai"):
        m = load_clip(tmp_path / folder)
        np.testing.assert_allclose(jax.jit(m.encode_image)(m.params, images), ref_img, rtol=0, atol=TOL)
        np.testing.assert_allclose(jax.jit(m.encode_text)(m.params, ids), ref_txt, rtol=0, atol=TOL)
    assert abs(float(np.std(ref_img))) > 0.1  # the comparison is not between near-zero outputs


def test_pytorch_model_bin(tmp_path, data_dir, models):
    import torch

    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(data_dir / "clip" / "tiny-clip-hf" / "config.json", src / "config.json")
    state = load_file(data_dir / "clip" / "tiny-clip-hf" / "model.safetensors")
    state["text_model.embeddings.position_ids"] = np.arange(77)[None]  # old checkpoints carry this buffer
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, src / "pytorch_model.bin")
    convert_clip(src, tmp_path / "m")
    m = load_clip(tmp_path / "m")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(m.params), jax.tree.leaves(models["hf"].params)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    # A wrong buffer is refused, named.
    state["text_model.embeddings.position_ids"] = np.zeros((1, 77), np.int64)
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, src / "pytorch_model.bin")
    with pytest.raises(InputError, match="text_model.embeddings.position_ids"):
        convert_clip(src, tmp_path / "m2")
