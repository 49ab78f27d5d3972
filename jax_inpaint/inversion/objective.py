"""The inpainting objective: masked reconstruction terms plus optional semantic and prior terms.

Every term is a pure function of one seed's image (unbatched callers are vmapped by the search).
Images are NHWC in [-1, 1] with N = 1; `known` is [H, W] with 1 = known pixel (the study's M).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from jax_inpaint.errors import InputError
from jax_inpaint.inversion.config import InpaintConfig

Array = jax.Array


# ---------------------------------------------------------------------------------------------
# Terms.

def masked_mse(img: Array, target: Array, known: Array) -> Array:
    """Mean squared error over the known pixels (and channels). img, target: [N,H,W,C]; known: [H,W]."""
    k = known[None, :, :, None]
    return jnp.sum(k * jnp.square(img - target)) / (jnp.sum(k) * img.shape[0] * img.shape[-1])


def noise_regularization(noise: Mapping[str, Array]) -> Array:
    """NVIDIA's projector regulariser: squared spatial autocorrelations of every noise map, at every
    scale down to 8x8 (maps [H, W])."""
    reg = 0.0
    for v in noise.values():
        n = v
        while True:
            reg = reg + jnp.mean(n * jnp.roll(n, 1, axis=1)) ** 2 + jnp.mean(n * jnp.roll(n, 1, axis=0)) ** 2
            if n.shape[0] <= 8:
                break
            n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(axis=(1, 3))
    return reg


def normalize_noise(noise: Mapping[str, Array]) -> dict[str, Array]:
    """Zero mean, unit second moment per map (NVIDIA's renormalisation after every step)."""
    out = {}
    for k, v in noise.items():
        v = v - jnp.mean(v)
        out[k] = v * jax.lax.rsqrt(jnp.mean(jnp.square(v)))
    return out


def clip_straight_through(x: Array) -> Array:
    """Clip to [-1, 1] in the forward pass (what a saved PNG holds), identity in the backward pass, so
    pixels the generator pushes out of range still receive the semantic models' gradients."""
    return x + jax.lax.stop_gradient(jnp.clip(x, -1.0, 1.0) - x)


def bce_with_logits(logits: Array, target: Array) -> Array:
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], elementwise."""
    return jax.nn.softplus(logits) - target * logits


def attribute_loss(logits: Array, targets: Array, kind: str, epsilon: float) -> Array:
    """Mean over attributes of BCE, max(BCE, eps) or log(exp(BCE) + exp(eps)). logits, targets: [A]."""
    bce = bce_with_logits(logits, targets)
    if kind == "bce":
        per = bce
    elif kind == "margin":
        per = jnp.maximum(bce, epsilon)
    elif kind == "lse":
        per = jnp.logaddexp(bce, epsilon)
    else:
        raise ValueError(kind)
    return jnp.mean(per)


# ---------------------------------------------------------------------------------------------
# The objective.

@dataclasses.dataclass
class Models:
    """The networks an objective may use; each perception model is optional (`Objective.uses` says
    when the objective uses each one)."""

    G: Any
    lpips: Any = None
    clip: Any = None
    classifier: Any = None
    D: Any = None


@dataclasses.dataclass(frozen=True)
class Constraints:
    """What the semantic terms ask for: attribute targets (by classifier label) and CLIP prompts."""

    attributes: tuple[tuple[str, float], ...] = ()
    prompts: tuple[tuple[str, float], ...] = ()

    @staticmethod
    def make(attributes: Mapping[str, float] | Sequence[tuple[str, float]] | None = None,
             prompts: Sequence[str | tuple[str, float]] | None = None) -> "Constraints":
        from jax_inpaint.inversion.config import check_attributes, check_prompts  # the one validation layer

        return Constraints(check_attributes(attributes), check_prompts(prompts))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What one loaded network brings to a traced program: its class, its config (a frozen dataclass)
    and the other fields of its Flax module (the generator's dtype), never its weights (arguments)."""

    kind: str
    config: Any
    module: tuple[tuple[str, Any], ...]

    @staticmethod
    def of(model) -> "ModelSpec":
        config, module = getattr(model, "config", None), getattr(model, "module", None)
        fields = () if not dataclasses.is_dataclass(module) else tuple(
            (f.name, getattr(module, f.name)) for f in dataclasses.fields(module)
            if f.name not in ("parent", "name") and getattr(module, f.name) is not config)
        return ModelSpec(type(model).__name__, config, fields)


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """Everything the compiled search program depends on besides the shapes of its arguments: the
    compile-cache key (`search.get_search`). Built whole from frozen dataclasses, so nothing can be
    left out by hand: every InpaintConfig field (less those marked `untraced`, reset to defaults),
    every network the objective uses (by `ModelSpec`), and the shapes of the constraints. What only
    changes data (the image, mask, seeds, prompt texts and weights, attribute targets, the class
    vector) is an argument of the program (`Objective.frozen`) and not part of it."""

    options: InpaintConfig
    models: tuple[tuple[str, ModelSpec], ...]  # (field of Models, its spec) for each network used
    attr_index: tuple[int, ...]  # the classifier outputs the attribute term reads
    num_prompts: int
    conditional: bool  # a class vector c is passed (conditional generator)


class Objective:
    """Builds the per-seed loss. `frozen` (the weights and constants) is passed into the compiled
    search as an argument, so new images, prompts or targets reuse the compiled program.

    What the traced loss reads from this object besides `frozen` is in `program_spec`."""

    def __init__(self, models: Models, cfg: InpaintConfig, constraints: Constraints = Constraints(),
                 c: Array | None = None):
        self.models, self.cfg, self.constraints = models, cfg, constraints
        # the diversity term measures with LPIPS (search.diversity_terms), so it needs the model too
        self.lpips_diversity = cfg.diversity > 0 and cfg.diversity_space == "lpips"
        m = models
        if cfg.lpips > 0 and m.lpips is None:
            raise InputError("the LPIPS term needs the LPIPS model")
        if self.lpips_diversity and m.lpips is None:
            raise InputError("--diversity-space lpips needs the LPIPS model")
        if constraints.attributes and m.classifier is None:
            raise InputError("attribute targets need an attribute classifier (--classifier)")
        if constraints.prompts and m.clip is None:
            raise InputError("prompts need a CLIP model (--clip)")
        if cfg.realism > 0 and m.D is None:
            raise InputError("the realism term needs a discriminator (convert a checkpoint that has one)")
        self.attr_index = ()
        if constraints.attributes:
            labels = list(m.classifier.labels)
            missing = [n for n, _ in constraints.attributes if n not in labels]
            if missing:
                raise InputError(f"unknown attributes {missing}; the classifier knows: {', '.join(labels)}")
            self.attr_index = tuple(labels.index(n) for n, _ in constraints.attributes)
        self.c = c

    @property
    def uses(self) -> dict[str, bool]:
        """Each field of Models -> whether this objective uses that network."""
        cfg = self.cfg
        return {"G": True, "lpips": cfg.lpips > 0 or self.lpips_diversity, "clip": bool(self.constraints.prompts),
                "classifier": bool(self.constraints.attributes), "D": cfg.realism > 0}

    @property
    def program_spec(self) -> ProgramSpec:
        """What the compiled program depends on besides array shapes (the compile-cache key)."""
        uses = self.uses
        models = tuple((f.name, ModelSpec.of(getattr(self.models, f.name)))
                       for f in dataclasses.fields(Models) if uses[f.name])
        return ProgramSpec(self.cfg.traced(), models, self.attr_index, len(self.constraints.prompts),
                           self.c is not None)

    def frozen(self) -> dict:
        """Weights and constants, as a pytree of arrays."""
        m = self.models
        out = {"G": m.G.prepared_variables()}  # + the kernels the synthesis's gradient needs, made once
        if self.uses["lpips"]:
            out["lpips"] = m.lpips.prepared_params()  # + VGG's Winograd kernels, made once (on CPU)
        if self.constraints.attributes:
            out["classifier"] = m.classifier.params
            out["attr_targets"] = jnp.asarray([v for _, v in self.constraints.attributes], jnp.float32)
        if self.constraints.prompts:
            out["clip"] = m.clip.params
            ids = m.clip.tokenize([p for p, _ in self.constraints.prompts])
            out["text_embeds"] = m.clip.encode_text(m.clip.params, ids)
            out["prompt_weights"] = jnp.asarray([w for _, w in self.constraints.prompts], jnp.float32)
        if self.uses["D"]:
            out["D"] = m.D.params
        if self.c is not None:
            out["c"] = jnp.asarray(self.c, jnp.float32).reshape(1, -1)
        return out

    # Pieces shared by the loss and the final metrics -------------------------------------------
    def attribute_logits(self, frozen, img: Array) -> Array:
        """[N,H,W,3] -> logits of the constrained attributes [N, A]."""
        logits = self.models.classifier.logits(frozen["classifier"], img)
        return logits[:, jnp.asarray(self.attr_index)]

    def clip_similarity(self, frozen, img: Array) -> Array:
        """[N,H,W,3] -> cosine similarity to each prompt [N, P]."""
        return self.models.clip.similarity(frozen["clip"], img, frozen["text_embeds"])

    # The loss -----------------------------------------------------------------------------------
    def prepare_target(self, frozen, target: Array, known: Array) -> dict:
        """What the loss needs of ONE item's fixed target, computed once (not at every step): LPIPS's
        target-side features. target [H,W,3], known [H,W]."""
        if self.cfg.lpips <= 0:
            return {}
        return {"lpips": self.models.lpips.prepare(frozen["lpips"], target[None], known, mode=self.cfg.lpips_mask,
                                                   resize_to=self.cfg.lpips_resize or None)}

    def terms(self, frozen, ws: Array, noise, target: Array, known: Array, prepared: dict) -> dict[str, Array]:
        """Unweighted terms for ONE seed: ws [num_ws, w_dim], noise {name: [H, W]}, target [H,W,3], known [H,W],
        prepared = prepare_target(frozen, target, known)."""
        return self._terms(frozen, ws, noise, target, known, prepared)[0]

    def _terms(self, frozen, ws, noise, target, known, prepared) -> tuple[dict[str, Array], Array]:
        cfg, m = self.cfg, self.models
        img = m.G.synthesize(frozen["G"], ws[None], None if noise is None else
                             {k: v[None] for k, v in noise.items()}, remat=cfg.remat == "blocks")  # [1,H,W,3]
        tgt = target[None]
        # What the semantic models judge: the photo with the completion in its hole, in range.
        composite = clip_straight_through(known[None, :, :, None] * tgt + (1 - known[None, :, :, None]) * img)
        t = {"mse": masked_mse(img, tgt, known)}
        if cfg.lpips > 0:
            t["lpips"] = self.models.lpips.prepared_distance(frozen["lpips"], img, prepared["lpips"],
                                                             resize_to=self.cfg.lpips_resize or None)[0]
        if cfg.noise == "optimize" and cfg.noise_reg > 0:
            t["noise_reg"] = noise_regularization(noise)
        if cfg.w_avg_reg > 0:
            t["w_avg_reg"] = jnp.mean(jnp.square(ws - frozen["G"]["buffers"]["w_avg"]))
        if cfg.realism > 0:
            t["realism"] = jax.nn.softplus(-m.D.logits(frozen["D"], img, frozen.get("c")))[0, 0]
        if self.constraints.attributes:
            logits = self.attribute_logits(frozen, composite)[0]
            t["attributes"] = attribute_loss(logits, frozen["attr_targets"], cfg.attr_loss, cfg.attr_epsilon)
        if self.constraints.prompts:
            sim = self.clip_similarity(frozen, composite)[0]
            w = frozen["prompt_weights"]
            t["clip"] = jnp.sum(w * (1.0 - sim)) / jnp.sum(w)
        return t, img[0]

    def weights(self) -> dict[str, float]:
        cfg = self.cfg
        return {"mse": cfg.mse, "lpips": cfg.lpips, "noise_reg": cfg.noise_reg, "w_avg_reg": cfg.w_avg_reg,
                "realism": cfg.realism, "attributes": cfg.attr_weight, "clip": cfg.clip_weight}

    def loss(self, frozen, ws, noise, target, known, prepared) -> tuple[Array, dict[str, Array]]:
        loss, t, _ = self.loss_and_image(frozen, ws, noise, target, known, prepared)
        return loss, t

    def loss_and_image(self, frozen, ws, noise, target, known, prepared) -> tuple[Array, dict[str, Array], Array]:
        """(weighted loss, unweighted terms, the generated image [H,W,3]) for ONE seed (as `terms`)."""
        t, img = self._terms(frozen, ws, noise, target, known, prepared)
        w = self.weights()
        return sum(w[k] * v for k, v in t.items()), t, img

