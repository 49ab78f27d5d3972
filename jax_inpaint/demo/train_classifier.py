"""Training the demo attribute classifier (`--classifier demo-faces`): a tiny ViT on the renderer's labels.

The model is our `jax_inpaint.models.vit.ViTModule` (Hugging Face ViTForImageClassification layout), so the
trained weights load with `load_classifier` like a converted checkpoint. Labels are the renderer's
ATTRIBUTES; the loss is the mean binary cross-entropy over them. Training images get random left-right
flips, shifts of up to one pixel, a random blur (the generator's faces are softer than the renders) and
a little Gaussian noise, so that the classifier also reads generated faces and gives the inpainting's
attribute term useful gradients. AdamW with a linear warm-up and cosine decay.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_inpaint.models import folders as checkpoint
from jax_inpaint.errors import InputError
from jax_inpaint.models.transformer import EncoderConfig, ImagePreprocess
from jax_inpaint.models.vit import KIND, Classifier, ClassifierConfig, ViTModule, init_params

Array = jax.Array

TRAIN_DATA_SEED = 0    # the renders the classifier (and the GAN) learn from
HELDOUT_DATA_SEED = 1  # held-out renders for the reported accuracy


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
    image_size: int = 32
    patch_size: int = 4
    hidden: int = 64
    layers: int = 3
    heads: int = 4
    mlp: int = 128
    batch: int = 64
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 200
    num_images: int = 40000
    data_seed: int = TRAIN_DATA_SEED
    heldout_seed: int = HELDOUT_DATA_SEED
    heldout_images: int = 2000
    seed: int = 0

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise InputError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden % self.heads:
            raise InputError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_config(cfg: ClassifierTrainConfig) -> ClassifierConfig:
    """The ViT of a training config: the renderer's ATTRIBUTES as labels, ViTImageProcessor-style input
    (resize to the input size, bilinear, mean = std = 0.5)."""
    from jax_inpaint.demo.faces import ATTRIBUTES

    size = (cfg.image_size, cfg.image_size)
    return ClassifierConfig(image_size=size, patch_size=(cfg.patch_size, cfg.patch_size), num_channels=3,
                            encoder=EncoderConfig(cfg.hidden, cfg.layers, cfg.heads, cfg.mlp, "gelu", 1e-6),
                            labels=tuple(ATTRIBUTES),
                            preprocess=ImagePreprocess("exact", size, None, (0.5,) * 3, (0.5,) * 3, "linear"))


def augment(key: Array, x: Array) -> Array:
    """x [N,H,W,3] in [-1, 1] -> flipped, shifted by up to 1 pixel, sometimes blurred, with noise."""
    n, h, w, _ = x.shape
    kf, ks, kb, kn, kl = jax.random.split(key, 5)
    x = jnp.where(jax.random.bernoulli(kf, 0.5, (n, 1, 1, 1)), x[:, :, ::-1], x)
    pad = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    dy, dx = jax.random.randint(ks, (2, n), 0, 3)
    x = jax.vmap(lambda im, a, b: jax.lax.dynamic_slice(im, (a, b, 0), (h, w, 3)))(pad, dy, dx)
    blur = (x + jnp.roll(x, 1, 1) + jnp.roll(x, -1, 1)) / 3
    blur = (blur + jnp.roll(blur, 1, 2) + jnp.roll(blur, -1, 2)) / 3
    amount = jax.random.uniform(kl, (n, 1, 1, 1)) * jax.random.bernoulli(kb, 0.5, (n, 1, 1, 1))
    x = x + amount * (blur - x)
    return x + 0.03 * jax.random.normal(kn, x.shape)


def make_train_step(mcfg: ClassifierConfig, tx: optax.GradientTransformation):
    """The jitted `train_step(params, opt_state, images uint8 [N,H,W,3], labels bool [N,L], key)`."""
    module = ViTModule(mcfg)

    def loss_fn(params, x, y):
        logits = module.apply({"params": params}, x)[0]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    def train_step(params, opt_state, imgs, labels, key):
        # [-1, 1] is already the model's input: ([0, 1] - mean 0.5) / std 0.5.
        x = augment(key, imgs.astype(jnp.float32) / 127.5 - 1.0)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, labels.astype(jnp.float32))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(train_step, donate_argnums=(0, 1))


def attribute_accuracy(classifier: Classifier, images_u8: np.ndarray, labels: np.ndarray,
                       batch: int = 500) -> dict[str, float]:
    """Per-label accuracy (threshold 0.5) of a classifier on uint8 images [N,H,W,3] with bool labels [N,L]
    (columns in the classifier's label order)."""
    probs = predict(classifier, images_u8, batch)
    correct = (probs >= 0.5) == np.asarray(labels, bool)
    return {name: float(correct[:, j].mean()) for j, name in enumerate(classifier.labels)}


def predict(classifier: Classifier, images_u8: np.ndarray, batch: int = 500) -> np.ndarray:
    """Attribute probabilities [N, L] of uint8 images [N,H,W,3]."""
    from jax_inpaint.inversion.inpainter import cached_jit

    fn = cached_jit(("probs", classifier.config), classifier.probs)   # the one inpaint's metrics use
    out = [np.asarray(fn(classifier.params, jnp.asarray(images_u8[i:i + batch], jnp.float32) / 127.5 - 1.0))
           for i in range(0, len(images_u8), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(classifier.labels)), np.float32)


def train_classifier(cfg: ClassifierTrainConfig, dest: str | os.PathLike, *, cache_dir: str | os.PathLike,
                     progress: bool = True, overwrite: bool = False,
                     script: str = "bin/train_demo_classifier.py") -> dict:
    """Train the classifier, measure its held-out accuracy per attribute, and write the model folder
    `dest` (model.json records the training and the accuracies). Returns {'accuracy', 'seconds', 'dest'}."""
    from tqdm.auto import tqdm

    from jax_inpaint.demo.train_gan import face_data, machine_description

    if os.path.exists(dest) and not overwrite:
        raise InputError(f"{os.path.abspath(dest)} already exists (use --overwrite to replace it)")
    t0 = time.time()
    mcfg = model_config(cfg)
    imgs, labels = face_data(cfg.num_images, size=cfg.image_size, seed=cfg.data_seed, cache_dir=cache_dir)
    test_imgs, test_labels = face_data(cfg.heldout_images, size=cfg.image_size, seed=cfg.heldout_seed,
                                       cache_dir=cache_dir)
    warmup = min(cfg.warmup, cfg.steps // 4)
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, cfg.steps, cfg.lr * 0.02)
    tx = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    key = jax.random.key(cfg.seed)
    params = init_params(mcfg, key=jax.random.fold_in(key, 0))
    opt_state = tx.init(params)
    step_fn = make_train_step(mcfg, tx)
    rng = np.random.default_rng(cfg.seed)
    loss_avg = None
    bar = tqdm(total=cfg.steps, desc="demo classifier", unit="step", disable=not progress, dynamic_ncols=True)
    for step in range(cfg.steps):
        idx = rng.integers(0, len(imgs), cfg.batch)
        params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(imgs[idx]), jnp.asarray(labels[idx]),
                                          jax.random.fold_in(key, step + 1))
        if step % 25 == 0 or step == cfg.steps - 1:
            loss = float(loss)
            loss_avg = loss if loss_avg is None else 0.8 * loss_avg + 0.2 * loss
            bar.set_postfix(bce=f"{loss_avg:.4f}")
        bar.update(1)
    bar.close()
    classifier = Classifier(mcfg, jax.device_get(params))
    acc = attribute_accuracy(classifier, test_imgs, test_labels)
    seconds = time.time() - t0
    source = {"trained_by": script, "train_config": cfg.to_dict(), "wall_seconds": round(seconds),
              "machine": machine_description(),
              "data": f"jax_inpaint.demo.faces.render_dataset({cfg.num_images}, seed={cfg.data_seed}, "
                      f"size={cfg.image_size}), augmented (flips, 1-pixel shifts, blur, noise)",
              "heldout_accuracy": {"renders": f"render_dataset({cfg.heldout_images}, seed={cfg.heldout_seed})",
                                   **{k: round(v, 4) for k, v in acc.items()}}}
    checkpoint.write_model_folder(dest, kind=KIND, config=mcfg.to_dict(), trees={"params": classifier.params},
                                  source=source, overwrite=overwrite)
    return {"accuracy": acc, "seconds": seconds, "dest": os.fspath(dest)}
