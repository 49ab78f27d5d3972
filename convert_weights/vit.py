"""Hugging Face `ViTForImageClassification` folders -> jax-inpaint 'classifier' model folders.

Source: config.json + model.safetensors (or pytorch_model.bin, or a sharded index of either), and
preprocessor_config.json for the input normalisation. Tensor names may be the saved layout
(`vit.encoder.layer.0.attention.attention.query.weight`, what `save_pretrained` writes) or
transformers 5's in-memory one (`vit.layers.0.attention.q_proj.weight`). Labels come from
`id2label`. Without preprocessor_config.json the ViTImageProcessor defaults apply (resize to the
model's input size, bilinear, mean = std = 0.5), and the folder's model.json says so.
"""
from __future__ import annotations

import os
from typing import Mapping

from convert_weights import hf, names
from convert_weights.clip import normalisation
from convert_weights.names import CONV, DENSE, SAME, NameTable, squeeze_leading
from jax_inpaint.models import folders as checkpoint
from jax_inpaint.errors import InputError
from jax_inpaint.models.transformer import PIL_RESAMPLE, EncoderConfig, ImagePreprocess, pair
from jax_inpaint.models.vit import KIND, ClassifierConfig, expected_params

# transformers' ViTConfig defaults (config.json may omit default values).
DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                hidden_act="gelu", layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3, qkv_bias=True)

_L = r"vit\.encoder\.layers_(\d+)"


def _alt(saved: str, current: str) -> tuple[str, str]:
    return rf"vit.encoder.layer.\1.{saved}", rf"vit.layers.\1.{current}"


def _block_rules() -> list:
    rules = []
    for ours, saved, current in (("layer_norm1", "layernorm_before", "layernorm_before"),
                                 ("layer_norm2", "layernorm_after", "layernorm_after")):
        rules += [(rf"{_L}\.{ours}\.scale", _alt(f"{saved}.weight", f"{current}.weight"), SAME),
                  (rf"{_L}\.{ours}\.bias", _alt(f"{saved}.bias", f"{current}.bias"), SAME)]
    for ours, saved, current in (("self_attn.q_proj", "attention.attention.query", "attention.q_proj"),
                                 ("self_attn.k_proj", "attention.attention.key", "attention.k_proj"),
                                 ("self_attn.v_proj", "attention.attention.value", "attention.v_proj"),
                                 ("self_attn.out_proj", "attention.output.dense", "attention.o_proj"),
                                 ("mlp.fc1", "intermediate.dense", "mlp.fc1"),
                                 ("mlp.fc2", "output.dense", "mlp.fc2")):
        ours = ours.replace(".", r"\.")
        rules += [(rf"{_L}\.{ours}\.kernel", _alt(f"{saved}.weight", f"{current}.weight"), DENSE),
                  (rf"{_L}\.{ours}\.bias", _alt(f"{saved}.bias", f"{current}.bias"), SAME)]
    return rules


TABLE = NameTable.of([
    (r"vit\.embeddings\.patch_embedding\.kernel", "vit.embeddings.patch_embeddings.projection.weight", CONV),
    (r"vit\.embeddings\.patch_embedding\.bias", "vit.embeddings.patch_embeddings.projection.bias", SAME),
    (r"vit\.embeddings\.class_embedding", "vit.embeddings.cls_token", squeeze_leading(2)),
    (r"vit\.embeddings\.position_embedding", "vit.embeddings.position_embeddings", squeeze_leading(1)),
    *_block_rules(),
    (r"vit\.layernorm\.scale", "vit.layernorm.weight", SAME),
    (r"vit\.layernorm\.bias", "vit.layernorm.bias", SAME),
    (r"classifier\.kernel", "classifier.weight", DENSE),
    (r"classifier\.bias", "classifier.bias", SAME),
    # A ViTModel pooler is not part of ViTForImageClassification (transformers drops it on loading too).
], ignore={r"vit\.pooler\.dense\.(weight|bias)": names.no_check})


def labels_from_config(hf_config: Mapping, what: str) -> tuple[str, ...]:
    id2label = hf_config.get("id2label")
    if id2label:
        try:
            ids = sorted(int(k) for k in id2label)
        except ValueError:
            raise InputError(f"{what}: id2label keys must be integers") from None
        if ids != list(range(len(ids))):
            raise InputError(f"{what}: id2label must number the labels 0 .. {len(ids) - 1}")
        return tuple(str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in ids)
    return tuple(f"LABEL_{i}" for i in range(int(hf_config.get("num_labels", 2))))


def preprocess_config(pp: Mapping | None, image_size: tuple[int, int], what: str) -> ImagePreprocess:
    return hf.checked_preprocess(_preprocess_config, pp, image_size, what)


def _preprocess_config(pp: Mapping | None, image_size: tuple[int, int], what: str) -> ImagePreprocess:
    """ViTImageProcessor settings -> ImagePreprocess (defaults without a file, at the model's input size)."""
    if pp is None:
        return ImagePreprocess("exact", tuple(image_size), None, (0.5,) * 3, (0.5,) * 3, "linear")
    where = f"{what}: {hf.PREPROCESSOR_FILE}"
    resize, size = "none", tuple(image_size)
    if pp.get("do_resize", True):
        kind, val = hf.processor_size(pp.get("size", {"height": 224, "width": 224}), where)
        resize, size = ("shortest_edge", (val, val)) if kind == "shortest_edge" else ("exact", pair(val))
    crop = None
    if pp.get("do_center_crop", False) and "crop_size" in pp:
        crop = pair(hf.processor_size(pp["crop_size"], where)[1])
    mean, std = normalisation(pp, (0.5,) * 3, (0.5,) * 3, where)
    try:
        resample = PIL_RESAMPLE[int(pp.get("resample", 2))]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: unsupported resample {pp.get('resample')!r}") from None
    return ImagePreprocess(resize, size, crop, mean, std, resample)


def config_from_hf(hf_config: Mapping, preprocessor: Mapping | None, what: str) -> ClassifierConfig:
    model_type = hf_config.get("model_type", "vit")
    if model_type != "vit":
        raise InputError(f"{what}: config.json describes a {model_type!r} model, not 'vit' (ViTForImageClassification)")
    c = dict(DEFAULTS)
    c.update(hf_config)
    try:
        image_size = pair(c["image_size"], f"{what}: image_size")
        encoder = EncoderConfig(int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["num_attention_heads"]),
                                int(c["intermediate_size"]), str(c["hidden_act"]), float(c["layer_norm_eps"]),
                                bool(c["qkv_bias"]), None if c.get("head_dim") is None else int(c["head_dim"]))
        cfg = ClassifierConfig(image_size=image_size, patch_size=pair(c["patch_size"], f"{what}: patch_size"),
                               num_channels=int(c["num_channels"]), encoder=encoder,
                               labels=labels_from_config(hf_config, what),
                               preprocess=preprocess_config(preprocessor, image_size, what))
    except (TypeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{what}: bad value in config.json ({e})") from None
    return cfg.validate(what)


def params_from_state(cfg: ClassifierConfig, state, what: str) -> dict:
    flat = names.convert(state, names.expected_shapes(expected_params(cfg)), TABLE, what)
    return checkpoint.unflatten(flat)


def convert_classifier(src, dest, *, overwrite: bool = False) -> str:
    """Convert a Hugging Face ViTForImageClassification folder into the model folder `dest`."""
    src = os.fspath(src)
    checkpoint.check_destination(dest, overwrite=overwrite, keep=[src])
    hf_config, state, files = hf.read_hf_folder(src, src)
    preprocessor = hf.read_preprocessor(src)
    cfg = config_from_hf(hf_config, preprocessor, src)
    params = params_from_state(cfg, state, src)
    source = {"path": os.path.abspath(src), "naming": "hf", "files": files,
              "preprocessor": "preprocessor_config.json" if preprocessor is not None else
              "ViTImageProcessor defaults (no preprocessor_config.json): mean = std = 0.5, bilinear"}
    return hf.write_folder(dest, kind=KIND, config=cfg.to_dict(), params=params, source=source, overwrite=overwrite,
                           keep=[src])
