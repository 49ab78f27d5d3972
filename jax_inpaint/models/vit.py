"""The ViT attribute classifier (Hugging Face `ViTForImageClassification`) as a Flax module, and the
loaded `Classifier`.

Architecture: patch embedding (with bias) + class token + position embeddings, pre-LN blocks (the
same `transformer.Block` as CLIP's towers, with `qkv_bias` from the config), a final LayerNorm, and
a linear head on the class token. Outputs are logits; attribute probabilities are their sigmoid
(multi-label, one independent probability per attribute). Labels come from the checkpoint's
`id2label`; the input normalisation from its `preprocessor_config.json`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_inpaint.errors import InputError
from jax_inpaint.models.transformer import EncoderConfig, Encoder, ImagePreprocess, VisionEmbeddings, layer_norm, preprocess
from jax_inpaint.models.variables import init_variables, input_shape, variable_shapes

Array = jax.Array
KIND = "classifier"

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    image_size: tuple[int, int]
    patch_size: tuple[int, int]
    num_channels: int
    encoder: EncoderConfig
    labels: tuple[str, ...]
    preprocess: ImagePreprocess

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def num_positions(self) -> int:
        return (self.image_size[0] // self.patch_size[0]) * (self.image_size[1] // self.patch_size[1]) + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "classifier config") -> "ClassifierConfig":
        """From `to_dict`'s JSON (model.json), every field's type checked (nested configs too): one-line
        InputError. `validate` checks the values."""
        from jax_inpaint.models.folders import parse_config
        from jax_inpaint.models.transformer import check_image_config

        cfg = parse_config(cls, d, what)
        check_image_config(cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.preprocess, what)
        return cfg

    def validate(self, what: str) -> "ClassifierConfig":
        self.encoder.validate(what)
        if not self.labels:
            raise InputError(f"{what}: the classifier has no labels (num_labels = 0)")
        if any(i < p for i, p in zip(self.image_size, self.patch_size)):
            raise InputError(f"{what}: image_size {self.image_size} is smaller than patch_size {self.patch_size}")
        return self


def vit_b16_config(num_labels: int = 40) -> ClassifierConfig:
    """ViT-B/16 at 224 with the 40 CelebA attributes (benchmarks, tests with random weights)."""
    labels = CELEBA_ATTRIBUTES if num_labels == 40 else tuple(f"LABEL_{i}" for i in range(num_labels))
    return ClassifierConfig((224, 224), (16, 16), 3, EncoderConfig(768, 12, 12, 3072, "gelu", 1e-12), labels,
                            ImagePreprocess("exact", (224, 224), None, (0.5,) * 3, (0.5,) * 3, "linear"))


class ViTBackbone(nn.Module):
    config: ClassifierConfig

    @nn.compact
    def __call__(self, pixel_values: Array) -> tuple[Array, Array]:
        """pixel_values [N,H,W,C] -> (last_hidden_state after the final LayerNorm, embeddings) [N, T, D]."""
        cfg = self.config
        emb = VisionEmbeddings(cfg.encoder.hidden_size, cfg.patch_size, cfg.num_positions, patch_bias=True,
                               name="embeddings")(pixel_values)
        x = Encoder(cfg.encoder, name="encoder")(emb)
        return layer_norm(cfg.encoder.layer_norm_eps, "layernorm")(x), emb


class ViTModule(nn.Module):
    config: ClassifierConfig

    @nn.compact
    def __call__(self, pixel_values: Array) -> tuple[Array, Array, Array]:
        """-> (logits [N, num_labels], last_hidden_state [N, T, D], embeddings [N, T, D])."""
        hidden, emb = ViTBackbone(self.config, name="vit")(pixel_values)
        logits = nn.Dense(self.config.num_labels, name="classifier")(hidden[:, 0])
        return logits, hidden, emb


class Classifier:
    """A loaded attribute classifier. Methods taking `params` first are pure (jit/grad/vmap)."""

    def __init__(self, config: ClassifierConfig, params: Mapping, folder: str | None = None):
        self.config = config
        self.module = ViTModule(config)
        self.params = jax.tree.map(jnp.asarray, params)
        self.folder = folder

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.image_size

    def preprocess(self, images: Array) -> Array:
        """[N,H,W,3] in [-1,1], any size -> normalised [N, *input_size, 3] (no resampling at input size)."""
        return preprocess(images, self.config.preprocess, self.input_size)

    def outputs(self, params, pixel_values: Array) -> tuple[Array, Array, Array]:
        """Normalised pixel values -> (logits, last_hidden_state, embeddings), as HF's hidden states."""
        return self.module.apply({"params": params}, pixel_values)

    def logits_from_pixel_values(self, params, pixel_values: Array) -> Array:
        """Normalised pixel values [N, *input_size, C] -> logits [N, num_labels]."""
        return self.outputs(params, pixel_values)[0]

    def logits(self, params, images: Array) -> Array:
        """Images NHWC in [-1, 1], any size -> logits [N, num_labels]."""
        return self.logits_from_pixel_values(params, self.preprocess(images))

    def probs(self, params, images: Array) -> Array:
        """Images NHWC in [-1, 1] -> attribute probabilities sigmoid(logits) [N, num_labels]."""
        return jax.nn.sigmoid(self.logits(params, images))


def module_inputs(config: ClassifierConfig) -> tuple:
    """Shapes of the inputs of `ViTModule.init`: (pixel values [1, H, W, C],)."""
    return (input_shape(1, *config.image_size, config.num_channels),)


def init_params(config: ClassifierConfig, *, key: Array) -> dict:
    """Randomly initialised parameters (training from scratch, benchmarks, tests)."""
    return init_variables(ViTModule(config), module_inputs(config), key)["params"]


def expected_params(config: ClassifierConfig) -> dict:
    """Shapes (jax.ShapeDtypeStruct) of every parameter, nested as the module's params."""
    return variable_shapes(ViTModule(config), module_inputs(config))["params"]


def load_classifier(folder) -> Classifier:
    """Load a model folder written by `jax-inpaint convert classifier` (or a shipped model name)."""
    from jax_inpaint.models.folders import load_params_folder

    folder, cfg, params = load_params_folder(folder, KIND, ClassifierConfig, expected_params, "classifier")
    return Classifier(cfg, params, folder=folder)
