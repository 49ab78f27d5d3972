"""Training the demo StyleGAN2 (`--generator demo-faces`) on procedural faces (`jax_inpaint.demo.faces`).

StyleGAN2 as in NVIDIA's stylegan2-ada-pytorch `training/loss.py` and `training_loop.py`, with our own
`GeneratorModule` / `DiscriminatorModule`:
  * non-saturating logistic loss: G minimises softplus(-D(G(z))), D minimises softplus(D(G(z))) + softplus(-D(x));
  * lazy R1 on the reals every `r1_interval` D steps, weighted by gamma / 2 and multiplied by the interval,
    with Adam's learning rate and betas compensated by c = interval / (interval + 1);
  * Adam (lr 0.0025, betas (0, 0.99), eps 1e-8); the mapping network's lower rate is inside its layers;
  * an exponential moving average of G's weights with a half-life of `ema_kimg` thousand images (ramped up
    over the first images as NVIDIA's `ema_rampup`), and w_avg tracked with beta 0.995 as the mapping does;
  * style mixing with probability `style_mixing` (one cut-off per batch, as the reference);
  * random horizontal flips of the reals.
Path-length regularisation is skipped: it costs a second generator pass with double back-propagation and
matters for the smoothness of W at high resolutions; at 32 pixels it is not worth its price on a CPU.
No augmentation beyond flips (ADA is for small datasets; ours is rendered, as large as we like).

The fake images of one step serve both players: the generator step returns them, and the discriminator
step (in the same compiled function) uses them with the generator's previous weights, which saves one
generator pass per step (NVIDIA draws new ones after the G update; the difference is one Adam step).

`train(cfg, out)` renders (once) and caches the data set, resumes from the newest orbax checkpoint in
`out/checkpoints`, shows a tqdm bar with the losses, writes a sample grid of G_ema every `sample_every`
steps to `out/samples/`, and `export(out, dest)` writes a model folder that `load_generator` reads.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_inpaint import files, images
from jax_inpaint.models import folders as checkpoint
from jax_inpaint.errors import InputError
from jax_inpaint.models.stylegan2 import (KIND, DiscriminatorConfig, DiscriminatorModule, GeneratorConfig,
                                   GeneratorModule, discriminator_inputs, generator_inputs)
from jax_inpaint.models.variables import init_variables

Array = jax.Array

TRAIN_DATA_SEED = 0   # dataset seed of the training renders; held-out renders use other seeds


@dataclasses.dataclass(frozen=True)
class GanTrainConfig:
    """Everything that defines a demo GAN training run (saved beside its checkpoints)."""
    resolution: int = 32
    g_channels: tuple[int, ...] = (128, 128, 64, 32)   # blocks 4, 8, 16, 32 ...
    d_channels: tuple[int, ...] = (64, 64, 64, 32)
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 4
    batch: int = 16
    steps: int = 10000
    lr: float = 0.0025
    beta2: float = 0.99
    r1_gamma: float = 0.01       # ADA's heuristic 0.0002 * res^2 / batch gives 0.0064 at 32 px, batch 32;
    r1_interval: int = 16        # its CIFAR-10 (32 px) run used 0.01: we take that
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    style_mixing: float = 0.5
    num_images: int = 40000
    data_seed: int = TRAIN_DATA_SEED
    seed: int = 0
    sample_every: int = 250
    checkpoint_every: int = 250

    def __post_init__(self):
        if self.resolution < 16 or self.resolution & (self.resolution - 1):
            raise InputError(f"resolution must be a power of two >= 16, got {self.resolution}")
        n = int(np.log2(self.resolution)) - 1   # blocks 4, 8, ..., resolution
        for name in ("g_channels", "d_channels"):
            if len(getattr(self, name)) != n:
                raise InputError(f"{name} needs {n} entries (blocks 4 .. {self.resolution}), "
                                 f"got {getattr(self, name)}")
        if self.batch % 4:
            raise InputError(f"batch must be a multiple of 4 (the minibatch-std group), got {self.batch}")

    @property
    def generator(self) -> GeneratorConfig:
        return GeneratorConfig(z_dim=self.z_dim, c_dim=0, w_dim=self.w_dim, img_resolution=self.resolution,
                               img_channels=3, channels=tuple(self.g_channels), mapping_layers=self.mapping_layers)

    @property
    def discriminator(self) -> DiscriminatorConfig:
        return DiscriminatorConfig(c_dim=0, img_resolution=self.resolution, img_channels=3,
                                   channels=tuple(self.d_channels))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d) -> "GanTrainConfig":
        d = dict(d)
        d["g_channels"], d["d_channels"] = tuple(d["g_channels"]), tuple(d["d_channels"])
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Data.

def face_data(n: int, *, size: int, seed: int, cache_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Renders faces 0 .. n-1 of `faces.render_dataset(seed=seed)` once and caches them as .npz:
    images uint8 [n, size, size, 3], labels bool [n, len(ATTRIBUTES)]."""
    from jax_inpaint.demo import faces

    path = os.path.join(os.fspath(cache_dir), f"faces_s{seed}_{size}px_{n}.npz")
    if os.path.isfile(path):
        with np.load(path) as f:
            return f["images"], f["labels"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    imgs, labs, _ = faces.render_dataset(n, seed=seed, size=size)
    files.atomic_write(path, lambda tmp: np.savez(tmp, images=imgs, labels=labs), suffix=".npz")
    return imgs, labs


def sample_reals(data: Array, key: Array, batch: int) -> Array:
    """A random batch of uint8 images [N,R,R,3] -> float [-1, 1], each flipped left-right with p = 1/2."""
    k_idx, k_flip = jax.random.split(key)
    x = data[jax.random.randint(k_idx, (batch,), 0, data.shape[0])].astype(jnp.float32) / 127.5 - 1.0
    flip = jax.random.bernoulli(k_flip, 0.5, (batch, 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1], x)


# ---------------------------------------------------------------------------------------------
# State and the training step.

@flax.struct.dataclass
class TrainState:
    step: Array                 # int32 scalar: completed steps
    g_params: Any
    g_buffers: Any              # w_avg and the fixed per-layer noise
    g_ema: Any                  # EMA of g_params
    d_params: Any
    g_opt: Any
    d_opt: Any


def optimizers(cfg: GanTrainConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """Adam for G and for D; D's rate and betas are compensated for the lazy R1 (NVIDIA's mb_ratio)."""
    c = cfg.r1_interval / (cfg.r1_interval + 1)
    g = optax.adam(cfg.lr, b1=0.0, b2=cfg.beta2, eps=1e-8)
    d = optax.adam(cfg.lr * c, b1=0.0 ** c, b2=cfg.beta2 ** c, eps=1e-8)
    return g, d


def init_state(cfg: GanTrainConfig, *, key: Array) -> TrainState:
    gcfg, dcfg = cfg.generator, cfg.discriminator
    kg, kd = jax.random.split(key)
    gv = init_variables(GeneratorModule(gcfg), generator_inputs(gcfg), kg)
    dp = init_variables(DiscriminatorModule(dcfg), discriminator_inputs(dcfg), kd)["params"]
    gopt, dopt = optimizers(cfg)
    return TrainState(step=jnp.zeros((), jnp.int32), g_params=gv["params"], g_buffers=gv["buffers"],
                      g_ema=jax.tree.map(jnp.copy, gv["params"]), d_params=dp, g_opt=gopt.init(gv["params"]), d_opt=dopt.init(dp))


def _random_noise(gcfg: GeneratorConfig, key: Array, batch: int) -> dict[str, Array]:
    return {name: jax.random.normal(jax.random.fold_in(key, i), (batch,) + shape)
            for i, (name, shape) in enumerate(gcfg.noise_shapes.items())}


def _generate(cfg: GanTrainConfig, params, buffers, key: Array) -> tuple[Array, Array]:
    """A training batch of fakes [N,R,R,3] (random noise, style mixing) and its unmixed w [N, w_dim]."""
    gcfg = cfg.generator
    module = GeneratorModule(gcfg)
    variables = {"params": params, "buffers": buffers}
    kz, kz2, kmix, kcut, kn = jax.random.split(key, 5)
    z = jax.random.normal(kz, (cfg.batch, gcfg.z_dim))
    ws = module.apply(variables, z, None, method=GeneratorModule.map)       # [N, num_ws, w_dim]
    if cfg.style_mixing > 0:
        ws2 = module.apply(variables, jax.random.normal(kz2, z.shape), None, method=GeneratorModule.map)
        cutoff = jax.random.randint(kcut, (), 1, gcfg.num_ws)
        cutoff = jnp.where(jax.random.uniform(kmix) < cfg.style_mixing, cutoff, gcfg.num_ws)
        ws = jnp.where(jnp.arange(gcfg.num_ws)[None, :, None] < cutoff, ws, ws2)
    img = module.apply(variables, ws, _random_noise(gcfg, kn, cfg.batch), method=GeneratorModule.synthesize)
    return img, ws[:, 0]


def make_train_step(cfg: GanTrainConfig, *, r1: bool):
    """The jitted `train_step(state, reals, key) -> (state, metrics)`: one G step and one D step
    (with the lazy R1 term when `r1`). reals: [N,R,R,3] in [-1, 1]."""
    d_module = DiscriminatorModule(cfg.discriminator)
    gopt, dopt = optimizers(cfg)
    ema_nimg = cfg.ema_kimg * 1000.0

    def g_loss(g_params, g_buffers, d_params, key):
        fakes, w = _generate(cfg, g_params, g_buffers, key)
        logits = d_module.apply({"params": d_params}, fakes)
        return jnp.mean(jax.nn.softplus(-logits)), (fakes, w)

    def d_loss(d_params, fakes, reals):
        fake_logits = d_module.apply({"params": d_params}, fakes)
        loss_fake = jnp.mean(jax.nn.softplus(fake_logits))
        if r1:
            def real_logit_sum(x):
                logits = d_module.apply({"params": d_params}, x)
                return jnp.sum(logits), logits
            grads, real_logits = jax.grad(real_logit_sum, has_aux=True)(reals)
            penalty = jnp.mean(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))
            r1_term = penalty * (cfg.r1_gamma / 2) * cfg.r1_interval
        else:
            real_logits = d_module.apply({"params": d_params}, reals)
            penalty = r1_term = jnp.zeros(())
        loss_real = jnp.mean(jax.nn.softplus(-real_logits))
        return loss_fake + loss_real + r1_term, {"D_loss": loss_fake + loss_real, "R1": penalty,
                                                  "D_real": jnp.mean(real_logits), "D_fake": jnp.mean(fake_logits)}

    def train_step(state: TrainState, reals: Array, key: Array):
        key = jax.random.fold_in(key, state.step)
        (lg, (fakes, w)), gg = jax.value_and_grad(g_loss, has_aux=True)(state.g_params, state.g_buffers,
                                                                         state.d_params, key)
        upd, g_opt = gopt.update(gg, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, upd)
        (_, dm), dg = jax.value_and_grad(d_loss, has_aux=True)(state.d_params, jax.lax.stop_gradient(fakes), reals)
        upd, d_opt = dopt.update(dg, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, upd)
        # G_ema, with the half-life ramped up over the first images; buffers follow G (w_avg tracked).
        nimg = (state.step + 1).astype(jnp.float32) * cfg.batch
        half = jnp.minimum(ema_nimg, nimg * cfg.ema_rampup) if cfg.ema_rampup > 0 else ema_nimg
        beta = 0.5 ** (cfg.batch / jnp.maximum(half, 1e-8))
        g_ema = jax.tree.map(lambda e, p: p + (e - p) * beta, state.g_ema, g_params)
        buffers = dict(state.g_buffers)
        buffers["w_avg"] = jnp.mean(w, axis=0) + (state.g_buffers["w_avg"] - jnp.mean(w, axis=0)) * 0.995
        new = TrainState(step=state.step + 1, g_params=g_params, g_buffers=buffers, g_ema=g_ema,
                         d_params=d_params, g_opt=g_opt, d_opt=d_opt)
        return new, {"G_loss": lg, **dm}

    return jax.jit(train_step, donate_argnums=0)


def sample_grid(cfg: GanTrainConfig, state: TrainState, z: Array) -> np.ndarray:
    """G_ema's images of z [N, z_dim] with the fixed noise, as float [N,R,R,3]."""
    module = GeneratorModule(cfg.generator)
    variables = {"params": state.g_ema, "buffers": state.g_buffers}
    return np.asarray(_sample(module, variables, z))


def _sample(module: GeneratorModule, variables, z):
    noise = {name: variables["buffers"]["synthesis"][name.split(".")[0]][name.split(".")[1]]["noise_const"]
             for name in module.cfg.noise_shapes}
    return _sample_jit(module, variables, z, noise)


def _sample_fn(module, variables, z, noise):
    ws = module.apply(variables, z, None, method=GeneratorModule.map)
    return module.apply(variables, ws, noise, method=GeneratorModule.synthesize)


_sample_jit = jax.jit(_sample_fn, static_argnums=0)


# ---------------------------------------------------------------------------------------------
# The training loop.

def checkpoint_manager(out: str):
    """The orbax manager of a training folder's checkpoints/ (the newest two kept)."""
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(os.path.abspath(os.path.join(out, "checkpoints")),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def _restore(manager, cfg: GanTrainConfig, step: int) -> TrainState:
    import orbax.checkpoint as ocp
    abstract = jax.eval_shape(lambda: init_state(cfg, key=jax.random.key(0)))
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def read_run_config(out: str) -> GanTrainConfig:
    path = os.path.join(out, "train_config.json")
    if not os.path.isfile(path):
        raise InputError(f"{out}: not a demo GAN training folder (no train_config.json)")
    with open(path) as f:
        return GanTrainConfig.from_dict(json.load(f)["config"])


def train(cfg: GanTrainConfig, out: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
          max_minutes: float | None = None, progress: bool = True) -> dict:
    """Train (or resume) a demo GAN in `out` until `cfg.steps` steps or `max_minutes` have passed.

    `out` receives train_config.json, checkpoints/ (orbax, the newest two), samples/ (grids of 64
    G_ema faces) and log.jsonl (losses every 50 steps). Returns {'step', 'images_seen', 'seconds'}.
    A folder started with another config refuses to resume (the error names the differing fields).
    """
    from tqdm.auto import tqdm

    out = os.fspath(out)
    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    cfg_path = os.path.join(out, "train_config.json")
    if os.path.isfile(cfg_path):
        old = read_run_config(out)
        diff = sorted(k for k, v in cfg.to_dict().items() if k not in ("steps", "sample_every", "checkpoint_every")
                      and old.to_dict()[k] != v)
        if diff:
            raise InputError(f"{out} holds a run with other settings ({', '.join(diff)}): use a new folder")
        info = json.load(open(cfg_path))
    else:
        info = {"seconds": 0.0}
    info["config"] = cfg.to_dict()

    data, _ = face_data(cfg.num_images, size=cfg.resolution, seed=cfg.data_seed,
                        cache_dir=cache_dir or os.path.join(out, "data"))
    data = jnp.asarray(data)
    manager = checkpoint_manager(out)
    latest = manager.latest_step()
    state = init_state(cfg, key=jax.random.key(cfg.seed)) if latest is None else _restore(manager, cfg, latest)
    start = int(state.step)
    steps = {False: make_train_step(cfg, r1=False), True: make_train_step(cfg, r1=True)}
    sample_batch = jax.jit(sample_reals, static_argnums=2)
    key = jax.random.key(cfg.seed + 1)
    grid_z = jax.random.normal(jax.random.key(cfg.seed + 2), (64, cfg.z_dim))
    log = open(os.path.join(out, "log.jsonl"), "a")
    bar = tqdm(total=cfg.steps, initial=start, desc="demo GAN", unit="step", dynamic_ncols=True,
               disable=not progress)
    t0, seconds0 = time.time(), float(info.get("seconds", 0.0))

    def save_info():
        info.update(step=int(state.step), images_seen=int(state.step) * cfg.batch,
                    seconds=seconds0 + time.time() - t0, machine=machine_description())
        files.write_json(cfg_path, info)

    def write_samples(step):
        grid = images.image_grid(list(sample_grid(cfg, state, grid_z)), ncols=8, pad=1)
        images.save_png(os.path.join(out, "samples", f"step{step:06d}.png"), grid)
        images.save_png(os.path.join(out, "samples", "latest.png"), grid)

    try:
        step = start
        while step < cfg.steps:
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                break
            kb = jax.random.fold_in(key, 2 * step)
            reals = sample_batch(data, kb, cfg.batch)
            state, m = steps[step % cfg.r1_interval == 0](state, reals, jax.random.fold_in(key, 2 * step + 1))
            step += 1
            if step % 50 == 0 or step == cfg.steps:
                m = {k: float(v) for k, v in m.items()}
                if not all(np.isfinite(list(m.values()))):
                    raise FloatingPointError(f"step {step}: non-finite losses {m}")
                bar.set_postfix(G=f"{m['G_loss']:.3f}", D=f"{m['D_loss']:.3f}", R1=f"{m['R1']:.3g}")
                log.write(json.dumps({"step": step, "t": seconds0 + time.time() - t0, **m}) + "\n")
                log.flush()
            bar.update(1)
            if step % cfg.sample_every == 0 or step == cfg.steps:
                write_samples(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(manager, step, state, save_info)
    finally:
        bar.close()
        log.close()
        close_run(manager, state, save_info)
    return {"step": int(state.step), "images_seen": int(state.step) * cfg.batch,
            "seconds": seconds0 + time.time() - t0}


def save_checkpoint(manager, step: int, state, save_info: Callable[[], None]) -> None:
    """A training loop's periodic checkpoint: save step, wait for the write, record the run (`save_info`)."""
    import orbax.checkpoint as ocp

    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    save_info()


def add_run_options(parser, fields: dict, defaults, out_help: str, convert=None, show=str) -> None:
    """A training script's options: --out, one per config field in `fields` ({name: text}; the type is the
    default's, or `convert`), --max-minutes, --cache-dir, --export, --overwrite and --quiet."""
    parser.add_argument("--out", required=True, help=f"training folder ({out_help})")
    for name, text in fields.items():
        default = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=(convert or type)(default), default=None,
                            help=f"{text} (default {show(default)}; when resuming, the run's own)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    parser.add_argument("--cache-dir", default=None, help="where the rendered data set is cached (default OUT/data)")
    parser.add_argument("--export", metavar="DEST", default=None,
                        help="do not train: write the newest checkpoint of OUT as the model folder DEST")
    parser.add_argument("--overwrite", action="store_true", help="with --export: replace DEST")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def use_run_compile_cache(out: str) -> None:
    """Compiled programs cached in OUT/jax_cache, so that a resumed run does not compile again."""
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(out), "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def close_run(manager, state, save_info: Callable[[], None]) -> None:
    """The way out of a training loop (finished, stopped or failed): checkpoint the last step unless it is
    saved already, wait for the writes, close the manager and record the run's time (`save_info`)."""
    import orbax.checkpoint as ocp

    if int(state.step) != (manager.latest_step() or 0):
        manager.save(int(state.step), args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()
    manager.close()
    save_info()


def machine_description() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}, jax {jax.__version__} ({jax.default_backend()})"


def export(out: str | os.PathLike, dest: str | os.PathLike, *, script: str = "bin/train_demo_gan.py",
           overwrite: bool = False) -> str:
    """Write the newest checkpoint of a training folder as a 'stylegan2' model folder (G = G_ema)."""
    out = os.fspath(out)
    cfg = read_run_config(out)
    with open(os.path.join(out, "train_config.json")) as f:
        info = json.load(f)
    manager = checkpoint_manager(out)
    latest = manager.latest_step()
    if latest is None:
        raise InputError(f"{out}: no checkpoint to export")
    state = _restore(manager, cfg, latest)
    manager.close()
    source = {"trained_by": script, "steps": int(state.step), "images_seen": int(state.step) * cfg.batch,
              "wall_seconds": round(float(info.get("seconds", 0.0))), "machine": info.get("machine", ""),
              "train_config": cfg.to_dict(),
              "data": f"jax_inpaint.demo.faces.render_dataset({cfg.num_images}, seed={cfg.data_seed}, "
                      f"size={cfg.resolution}) with random left-right flips"}
    trees = {"G": {"params": state.g_ema, "buffers": state.g_buffers}, "D": {"params": state.d_params}}
    return checkpoint.write_model_folder(dest, kind=KIND, config={"G": cfg.generator.to_dict(),
                                                                  "D": cfg.discriminator.to_dict()},
                                         trees=trees, source=source, overwrite=overwrite)
