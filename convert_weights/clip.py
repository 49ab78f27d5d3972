"""CLIP checkpoints -> jax-inpaint 'clip' model folders.

Sources:
  * a Hugging Face `CLIPModel` folder: config.json + model.safetensors (or pytorch_model.bin, or a
    sharded index of either); its tokenizer files (vocab.json, merges.txt, ...) and
    preprocessor_config.json, when present, travel into the model folder;
  * a single state-dict file with OpenAI CLIP / open_clip names (`visual.conv1.weight`,
    `transformer.resblocks.0.attn.in_proj_weight`, ...): .safetensors, .pt / .bin (torch.save) or
    .npz. The architecture is read from the tensor shapes, as OpenAI's `build_model` does; the head
    counts are not in the shapes: they default to width / 64 (OpenAI's and open_clip's rule) or
    come from --vision-heads / --text-heads, or from a Hugging Face config.json given as --config.
    Such a file has no tokenizer: pass --tokenizer DIR (a folder with vocab.json + merges.txt, e.g.
    any Hugging Face CLIP checkpoint; its preprocessor_config.json is used too when present).
    OpenAI's TorchScript archives are not read: load them with `clip.load(name, jit=False)` and
    save `model.state_dict()`.

The written folder holds model.json (the config), params/ and tokenizer/, so it is self-contained.
"""
from __future__ import annotations

import math
import os
import re
from typing import Mapping

import numpy as np

from convert_weights import hf, names
from convert_weights.names import CONV, DENSE, SAME, NameTable, chunk
from jax_inpaint.models import folders as checkpoint
from jax_inpaint.models.clip import (KIND, OPENAI_MEAN, OPENAI_STD, TOKENIZER_DIR, CLIPConfig, CLIPTextConfig,
                              CLIPVisionConfig, expected_params, load_tokenizer)
from jax_inpaint.errors import InputError
from jax_inpaint.models.transformer import PIL_RESAMPLE, EncoderConfig, ImagePreprocess, pair

# The tokenizer files a CLIP model folder may hold (checkpoint.check_destination knows them as ours).
TOKENIZER_FILES = tuple(sorted(checkpoint.EXTRA_FOLDERS[KIND][TOKENIZER_DIR]))

# transformers' CLIPVisionConfig / CLIPTextConfig defaults (config.json may omit default values).
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                     eos_token_id=49407)


# ---------------------------------------------------------------------------------------------
# Name tables (ours -> source), applied by `convert_weights.names`.

def _ln(ours: str, src: str) -> list:
    return [(rf"{ours}\.scale", f"{src}.weight", SAME), (rf"{ours}\.bias", f"{src}.bias", SAME)]


HF_TABLE = NameTable.of([
    (r"logit_scale", "logit_scale", SAME),
    (r"(visual|text)_projection\.kernel", r"\1_projection.weight", DENSE),
    (r"vision_model\.embeddings\.patch_embedding\.kernel", "vision_model.embeddings.patch_embedding.weight", CONV),
    (r"vision_model\.embeddings\.class_embedding", "vision_model.embeddings.class_embedding", SAME),
    (r"vision_model\.embeddings\.position_embedding", "vision_model.embeddings.position_embedding.weight", SAME),
    (r"text_model\.embeddings\.(token|position)_embedding\.embedding", r"text_model.embeddings.\1_embedding.weight",
     SAME),
    (r"(\w+)\.encoder\.layers_(\d+)\.(.+)\.kernel", r"\1.encoder.layers.\2.\3.weight", DENSE),
    (r"(\w+)\.encoder\.layers_(\d+)\.(.+)\.scale", r"\1.encoder.layers.\2.\3.weight", SAME),
    (r"(\w+)\.encoder\.layers_(\d+)\.(.+)\.bias", r"\1.encoder.layers.\2.\3.bias", SAME),
    (r"(\w+)\.(pre_layrnorm|post_layernorm|final_layer_norm)\.scale", r"\1.\2.weight", SAME),
    (r"(\w+)\.(pre_layrnorm|post_layernorm|final_layer_norm)\.bias", r"\1.\2.bias", SAME),
], ignore={r"(vision|text)_model\.embeddings\.position_ids": names.arange_buffer})


def _openai_block_rules(ours: str, src: str) -> list:
    rules = _ln(rf"{ours}\.layer_norm1", rf"{src}.ln_1") + _ln(rf"{ours}\.layer_norm2", rf"{src}.ln_2")
    for i, p in enumerate("qkv"):
        rules += [(rf"{ours}\.self_attn\.{p}_proj\.kernel", rf"{src}.attn.in_proj_weight", chunk(i, 3, DENSE)),
                  (rf"{ours}\.self_attn\.{p}_proj\.bias", rf"{src}.attn.in_proj_bias", chunk(i, 3))]
    for a, b in (("self_attn.out_proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
        rules += [(rf"{ours}\.{re.escape(a)}\.kernel", rf"{src}.{b}.weight", DENSE),
                  (rf"{ours}\.{re.escape(a)}\.bias", rf"{src}.{b}.bias", SAME)]
    return rules


OPENAI_TABLE = NameTable.of([
    (r"logit_scale", "logit_scale", SAME),
    (r"visual_projection\.kernel", "visual.proj", SAME),  # stored [in, out] already
    (r"text_projection\.kernel", "text_projection", SAME),
    (r"vision_model\.embeddings\.patch_embedding\.kernel", "visual.conv1.weight", CONV),
    (r"vision_model\.embeddings\.class_embedding", "visual.class_embedding", SAME),
    (r"vision_model\.embeddings\.position_embedding", "visual.positional_embedding", SAME),
    (r"text_model\.embeddings\.token_embedding\.embedding", "token_embedding.weight", SAME),
    (r"text_model\.embeddings\.position_embedding\.embedding", "positional_embedding", SAME),
    *_ln(r"vision_model\.pre_layrnorm", "visual.ln_pre"),
    *_ln(r"vision_model\.post_layernorm", "visual.ln_post"),
    *_ln(r"text_model\.final_layer_norm", "ln_final"),
    *_openai_block_rules(r"vision_model\.encoder\.layers_(\d+)", r"visual.transformer.resblocks.\1"),
    *_openai_block_rules(r"text_model\.encoder\.layers_(\d+)", r"transformer.resblocks.\1"),
    # Scalars OpenAI's JIT state dicts carry (build_model deletes them): metadata, not weights.
], ignore={r"input_resolution|context_length|vocab_size": names.no_check})


# ---------------------------------------------------------------------------------------------
# Configs.

def _sub_config(hf_config: Mapping, key: str, defaults: Mapping) -> dict:
    d = dict(defaults)
    d.update(hf_config.get(key) or {})
    d.update(hf_config.get(f"{key}_dict") or {})  # legacy configs carry both; *_dict wins, as in transformers
    return d


def _eos(value, what: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InputError(f"{what}: several eos_token_id values {value}: the pooling position is ambiguous")
        value = value[0]
    return int(value)


def config_from_hf(hf_config: Mapping, preprocessor: Mapping | None, what: str) -> CLIPConfig:
    """A Hugging Face CLIPConfig dict (+ preprocessor_config.json) -> CLIPConfig."""
    model_type = hf_config.get("model_type", "clip")
    if model_type != "clip":
        raise InputError(f"{what}: config.json describes a {model_type!r} model, not 'clip' (CLIPModel)")
    v = _sub_config(hf_config, "vision_config", VISION_DEFAULTS)
    t = _sub_config(hf_config, "text_config", TEXT_DEFAULTS)
    try:
        vision = CLIPVisionConfig(
            image_size=pair(v["image_size"], f"{what}: vision image_size"),
            patch_size=pair(v["patch_size"], f"{what}: vision patch_size"),
            num_channels=int(v["num_channels"]),
            encoder=EncoderConfig(int(v["hidden_size"]), int(v["num_hidden_layers"]), int(v["num_attention_heads"]),
                                  int(v["intermediate_size"]), str(v["hidden_act"]), float(v["layer_norm_eps"])))
        text = CLIPTextConfig(
            vocab_size=int(t["vocab_size"]), max_position_embeddings=int(t["max_position_embeddings"]),
            eos_token_id=_eos(t["eos_token_id"], what),
            encoder=EncoderConfig(int(t["hidden_size"]), int(t["num_hidden_layers"]), int(t["num_attention_heads"]),
                                  int(t["intermediate_size"]), str(t["hidden_act"]), float(t["layer_norm_eps"])))
        projection_dim = int(hf_config.get("projection_dim", 512))
    except (TypeError, ValueError) as e:
        raise InputError(f"{what}: bad value in config.json ({e})") from None
    prep = preprocess_config(preprocessor, vision.image_size, what)
    return CLIPConfig(vision, text, projection_dim, prep).validate(what)


def preprocess_config(pp: Mapping | None, image_size: tuple[int, int], what: str) -> ImagePreprocess:
    return hf.checked_preprocess(_preprocess_config, pp, image_size, what)


def _preprocess_config(pp: Mapping | None, image_size: tuple[int, int], what: str) -> ImagePreprocess:
    """CLIPImageProcessor settings -> ImagePreprocess; without a file: the model's size, OpenAI mean/std, bicubic."""
    if pp is None:
        return ImagePreprocess("shortest_edge", (image_size[0], image_size[0]), tuple(image_size), OPENAI_MEAN,
                               OPENAI_STD, "cubic")
    where = f"{what}: {hf.PREPROCESSOR_FILE}"
    resize, size = "none", tuple(image_size)
    if pp.get("do_resize", True):
        kind, val = hf.processor_size(pp.get("size", {"shortest_edge": 224}), where)
        resize, size = ("exact", val) if kind == "exact" else ("shortest_edge", (val, val))
    crop = None
    if pp.get("do_center_crop", True):
        kind, val = hf.processor_size(pp.get("crop_size", 224), where)
        crop = val if kind == "exact" else (val, val)
    mean, std = normalisation(pp, OPENAI_MEAN, OPENAI_STD, where)
    return ImagePreprocess(resize, tuple(size), crop, mean, std, _resample(pp.get("resample", 3), where))


def normalisation(pp: Mapping, default_mean, default_std, where: str) -> tuple[tuple, tuple]:
    """mean/std for [0, 1] values, folding in do_rescale / rescale_factor (1/255 is the usual)."""
    mean, std = pp.get("image_mean", default_mean), pp.get("image_std", default_std)
    if not pp.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if isinstance(mean, (int, float)):
        mean = (mean,) * 3
    if isinstance(std, (int, float)):
        std = (std,) * 3
    if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
        raise InputError(f"{where}: image_mean / image_std must be three numbers, std non-zero")
    factor = 255.0 * float(pp.get("rescale_factor", 1 / 255)) if pp.get("do_rescale", True) else 255.0
    return tuple(float(m) / factor for m in mean), tuple(float(s) / factor for s in std)


def _resample(code, where: str) -> str:
    try:
        return PIL_RESAMPLE[int(code)]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: unsupported resample {code!r}") from None


def _count(state: Mapping, pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def config_from_openai(state: Mapping[str, np.ndarray], preprocessor: Mapping | None, *, eos_token_id: int,
                       vision_heads: int | None = None, text_heads: int | None = None,
                       hidden_act: str = "quick_gelu", what: str = "CLIP") -> CLIPConfig:
    """The architecture of an OpenAI / open_clip ViT state dict, from its tensor shapes."""
    if "visual.conv1.weight" not in state:
        if any(k.startswith("visual.layer1.") or k.startswith("visual.trunk.") for k in state):
            raise InputError(f"{what}: only ViT CLIP models are supported (this is a ResNet or timm image tower)")
        raise InputError(f"{what}: not an OpenAI / open_clip CLIP state dict (no visual.conv1.weight)")
    needed = ["visual.positional_embedding", "visual.proj", "ln_final.weight", "positional_embedding",
              "token_embedding.weight", "text_projection", "visual.transformer.resblocks.0.mlp.c_fc.weight",
              "transformer.resblocks.0.mlp.c_fc.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise InputError(f"{what}: cannot read the architecture, missing tensors: {', '.join(missing)}")
    conv = state["visual.conv1.weight"]
    v_width, channels, patch = conv.shape[0], conv.shape[1], (conv.shape[2], conv.shape[3])
    grid = round(math.sqrt(state["visual.positional_embedding"].shape[0] - 1))
    t_width = state["ln_final.weight"].shape[0]
    vision = CLIPVisionConfig(
        image_size=(grid * patch[0], grid * patch[1]), patch_size=patch, num_channels=int(channels),
        encoder=EncoderConfig(int(v_width), _count(state, r"visual\.transformer\.resblocks\.(\d+)\."),
                              int(vision_heads or max(v_width // 64, 1)),
                              int(state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]), hidden_act, 1e-5))
    text = CLIPTextConfig(
        vocab_size=int(state["token_embedding.weight"].shape[0]),
        max_position_embeddings=int(state["positional_embedding"].shape[0]), eos_token_id=int(eos_token_id),
        encoder=EncoderConfig(int(t_width), _count(state, r"transformer\.resblocks\.(\d+)\."),
                              int(text_heads or max(t_width // 64, 1)),
                              int(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]), hidden_act, 1e-5))
    cfg = CLIPConfig(vision, text, int(state["text_projection"].shape[-1]),
                     preprocess_config(preprocessor, vision.image_size, what))
    return cfg.validate(what)


# ---------------------------------------------------------------------------------------------
# Conversion.

def params_from_state(cfg: CLIPConfig, state: Mapping[str, np.ndarray], naming: str, what: str) -> dict:
    """Source tensors -> our nested params (strict: every tensor used, every parameter filled)."""
    table = HF_TABLE if naming == "hf" else OPENAI_TABLE
    flat = names.convert(state, names.expected_shapes(expected_params(cfg)), table, what)
    return checkpoint.unflatten(flat)


def _tokenizer_files(folder: str) -> list[str]:
    files = hf.files_present(folder, TOKENIZER_FILES)
    if "tokenizer.json" in files or {"vocab.json", "merges.txt"} <= set(files):
        return files
    return []


def convert_clip(src, dest, *, tokenizer: str | None = None, config: str | None = None,
                 vision_heads: int | None = None, text_heads: int | None = None, hidden_act: str | None = None,
                 overwrite: bool = False) -> str:
    """Convert a CLIP checkpoint (HF folder or OpenAI-named file) into the model folder `dest`."""
    src = os.fspath(src)
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file or folder")
    keep = [p for p in (src, tokenizer, config) if p is not None]
    checkpoint.check_destination(dest, overwrite=overwrite, keep=keep)
    tok_dir = tokenizer
    if tok_dir is not None:
        if not os.path.isdir(tok_dir) or not _tokenizer_files(tok_dir):
            raise InputError(f"--tokenizer {tok_dir}: not a folder with vocab.json and merges.txt (or tokenizer.json)")
    elif os.path.isdir(src) and _tokenizer_files(src):
        tok_dir = src
    tok = load_tokenizer(tok_dir) if tok_dir is not None else None

    if os.path.isdir(src):
        if any(o is not None for o in (vision_heads, text_heads, hidden_act, config)):
            raise InputError("--config, --vision-heads, --text-heads and --hidden-act are for OpenAI-named files; "
                             "a Hugging Face folder has its own config.json")
        hf_config, state, files = hf.read_hf_folder(src, src)
        preprocessor = hf.read_preprocessor(src) or hf.read_preprocessor(tokenizer)
        cfg = config_from_hf(hf_config, preprocessor, src)
        naming = "hf"
    else:
        state = hf.strip_prefix(hf.read_weights_file(src), "module.")
        files = [os.path.basename(src)]
        preprocessor = hf.read_preprocessor(tokenizer)
        if config is not None:
            if vision_heads or text_heads or hidden_act:
                raise InputError("give either --config or --vision-heads / --text-heads / --hidden-act, not both")
            cfg = config_from_hf(hf.read_json(config, config), preprocessor, config)
        else:
            eos = tok.eos_token_id if tok is not None and tok.eos_token_id is not None else 49407
            cfg = config_from_openai(state, preprocessor, eos_token_id=eos, vision_heads=vision_heads,
                                     text_heads=text_heads, hidden_act=hidden_act or "quick_gelu", what=src)
        naming = "openai"
    params = params_from_state(cfg, state, naming, src)
    source = {"path": os.path.abspath(src), "naming": naming, "files": files,
              "tokenizer": None if tok_dir is None else os.path.abspath(tok_dir),
              "preprocessor": "preprocessor_config.json" if preprocessor is not None else
              "defaults (no preprocessor_config.json): the model's input size, OpenAI mean/std, bicubic"}
    extra = {os.path.join(TOKENIZER_DIR, name): os.path.join(tok_dir, name) for name in _tokenizer_files(tok_dir)} \
        if tok_dir is not None else {}
    return hf.write_folder(dest, kind=KIND, config=cfg.to_dict(), params=params, source=source, overwrite=overwrite,
                           extra_files=extra, keep=keep)
