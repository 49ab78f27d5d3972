"""The latent search: K seeds optimised at once (vmap), a chunk of Adam steps per compiled call (scan).

State per seed: the optimised variables (w, and the noise maps when optimised), the fixed noise, the
optax state, the best iterate so far and whether the seed is still alive (finite loss). The compiled
chunk function takes the state (donated), the first step index, the frozen weights, and one target
image and mask per batch item (so a batch may mix images: `inpaint-batch` lays (image x seed) items
out on a device mesh), so a new image, mask, prompt or set of seeds reuses the compiled program; only
shapes and the options that change the program (the `Objective.spec`) compile anew.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_inpaint.objective import Objective, normalize_noise
from jax_inpaint.recipe import InpaintConfig

Array = jax.Array


def lr_schedule(cfg: InpaintConfig) -> Callable[[Array], Array]:
    """Step -> learning rate: exponential decay (the study) or NVIDIA's projector ramp."""
    steps = cfg.steps
    if cfg.schedule == "exponential":
        return optax.exponential_decay(cfg.lr, transition_steps=steps, decay_rate=cfg.lr_decay)

    def nvidia(step):
        t = step / steps
        ramp = jnp.minimum(1.0, (1.0 - t) / cfg.lr_rampdown)
        ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
        ramp = ramp * jnp.minimum(1.0, t / cfg.lr_rampup)
        return cfg.lr * ramp

    return nvidia


def w_noise_scale(cfg: InpaintConfig, step: Array, w_std: Array) -> Array:
    """Std of the exploration noise added to w at `step` (NVIDIA's decaying w noise)."""
    t = step / cfg.steps
    return w_std * cfg.w_noise * jnp.maximum(0.0, 1.0 - t / cfg.w_noise_ramp) ** 2


@functools.lru_cache(maxsize=4)
def w_statistics(G, n: int = 10000) -> tuple[np.ndarray, float]:
    """(mean, per-channel std) of mapped w over n standard-normal z (fixed key), as NVIDIA's projector."""
    z = jax.random.normal(jax.random.key(123), (n, G.z_dim))
    c = None
    if G.c_dim:
        c = jax.nn.one_hot(jax.random.randint(jax.random.key(124), (n,), 0, G.c_dim), G.c_dim)
    w = np.asarray(G.mapping(z, c))[:, 0]
    mean = w.mean(axis=0)
    return mean, float(np.sqrt(np.mean(np.square(w - mean))))


@dataclasses.dataclass
class SearchResult:
    seeds: list[int]
    ws: np.ndarray  # [K, num_ws, w_dim]: best iterate per seed
    noise: dict[str, np.ndarray] | None  # {name: [K, H, W]} used with the best iterate (None: no noise)
    best_loss: np.ndarray  # [K]
    best_step: np.ndarray  # [K]
    alive: np.ndarray  # [K] bool: False when the loss became NaN / inf
    history: dict[str, np.ndarray]  # 'loss' and each term: [steps, K]


class Search:
    """A compiled search for one objective spec and one batch size."""

    def __init__(self, objective: Objective, batch: int):
        self.objective = objective
        self.cfg = cfg = objective.cfg
        self.G = objective.models.G
        self.batch = batch
        self.tx = optax.adam(lr_schedule(cfg), b1=0.9, b2=0.999, eps=1e-8)
        # Equal chunks of at most cfg.chunk steps that cover the run (steps past the end are no-ops).
        n_chunks = -(-cfg.steps // cfg.chunk)
        self.chunk = -(-cfg.steps // n_chunks)
        self._init = jax.jit(jax.vmap(self._init_one, in_axes=(0, None, None, None)))
        self._chunk = jax.jit(self._run_chunk, donate_argnums=(0,))

    # One seed ------------------------------------------------------------------------------------
    def _init_one(self, key, frozen, w_std, c):
        cfg, G = self.cfg, self.G
        k_init, k_noise, k_loop = jax.random.split(key, 3)
        w_avg = frozen["G"]["buffers"]["w_avg"]
        if cfg.init == "w_avg":
            w = w_avg + cfg.init_jitter * w_std * jax.random.normal(k_init, w_avg.shape)
        else:
            z = jax.random.normal(k_init, (1, G.z_dim))
            w = G.map_fn(frozen["G"], z, c, cfg.init_trunc)[0, 0]
        rows = G.num_ws if cfg.space == "w+" else 1
        w = jnp.broadcast_to(w, (rows, G.w_dim))
        if cfg.noise == "const":
            noise = G.noise_const_of(frozen["G"])
        else:
            noise = {k: v[0] for k, v in G.random_noise(k_noise, 1).items()}
        if not G.config.use_noise:
            noise = {}
        opt_vars = {"w": w, "noise": noise} if cfg.noise == "optimize" else {"w": w}
        fixed_noise = {} if cfg.noise == "optimize" else noise
        return {"vars": opt_vars, "fixed_noise": fixed_noise, "opt": self.tx.init(opt_vars),
                "best_vars": opt_vars, "best_loss": jnp.asarray(jnp.inf, jnp.float32),
                "best_step": jnp.asarray(-1, jnp.int32), "alive": jnp.asarray(True), "key": k_loop}

    def _ws(self, w: Array) -> Array:
        return jnp.broadcast_to(w, (self.G.num_ws, self.G.w_dim))

    def _step_one(self, s, step, frozen, target, known, w_std, prepared):
        cfg, obj = self.cfg, self.objective
        noise_key = jax.random.fold_in(s["key"], step)

        def loss_fn(v):
            w = v["w"]
            if cfg.w_noise > 0:
                w = w + w_noise_scale(cfg, step, w_std) * jax.random.normal(noise_key, w.shape)
            noise = v.get("noise", s["fixed_noise"])
            return obj.loss(frozen, self._ws(w), noise if self.G.config.use_noise else None, target, known, prepared)

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(s["vars"])
        updates, opt = self.tx.update(grads, s["opt"], s["vars"])
        new_vars = optax.apply_updates(s["vars"], updates)
        if cfg.noise == "optimize":
            new_vars = {**new_vars, "noise": normalize_noise(new_vars["noise"])}
        finite = jnp.isfinite(loss)
        active = (step < cfg.steps) & s["alive"]
        ok = active & finite
        better = ok & (loss < s["best_loss"])

        def pick(cond, a, b):
            return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)

        out = {**s,
               "vars": pick(ok, new_vars, s["vars"]),
               "opt": pick(ok, opt, s["opt"]),
               "best_vars": pick(better, s["vars"], s["best_vars"]),
               "best_loss": jnp.where(better, loss, s["best_loss"]),
               "best_step": jnp.where(better, step, s["best_step"]),
               "alive": s["alive"] & (finite | ~active)}
        return out, (loss, terms)

    def _run_chunk(self, state, t0, frozen, targets, knowns, w_std):
        prepared = jax.vmap(self.objective.prepare_target, in_axes=(None, 0, 0))(frozen, targets, knowns)
        step_all = jax.vmap(self._step_one, in_axes=(0, None, None, 0, 0, None, 0))

        def body(s, step):
            return step_all(s, step, frozen, targets, knowns, w_std, prepared)

        return jax.lax.scan(body, state, t0 + jnp.arange(self.chunk))

    # Driving it ---------------------------------------------------------------------------------
    def run(self, seeds: Sequence[int], frozen, target: Array, known: Array, w_std: float,
            progress: Callable[[int, np.ndarray], None] | None = None, sharding=None) -> SearchResult:
        """Optimise `len(seeds) <= batch` items (padded to the batch size, so shapes never change).

        target [H,W,3] and known [H,W] are shared by all items, or given per item ([k,H,W,3], [k,H,W]).
        `sharding`: a `jax.sharding.Sharding` for arrays whose leading axis is the batch (data
        parallel over a device mesh); the frozen weights are then replicated on the same mesh.
        """
        seeds = list(seeds)
        k = len(seeds)
        if k > self.batch:
            raise ValueError("more seeds than the batch size")
        pad = self.batch - k
        padded = seeds + [seeds[-1]] * pad
        targets, knowns = jnp.asarray(target, jnp.float32), jnp.asarray(known, jnp.float32)
        if targets.ndim == 3:
            targets = jnp.broadcast_to(targets, (k,) + targets.shape)
            knowns = jnp.broadcast_to(knowns, (k,) + knowns.shape)
        if pad:
            targets = jnp.concatenate([targets, jnp.repeat(targets[-1:], pad, 0)])
            knowns = jnp.concatenate([knowns, jnp.repeat(knowns[-1:], pad, 0)])
        keys = jax.vmap(jax.random.key)(jnp.asarray(padded, jnp.uint32))
        if sharding is not None:
            replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            frozen = jax.device_put(frozen, replicated)
            keys, targets, knowns = jax.device_put((keys, targets, knowns), sharding)
        c = frozen.get("c")
        w_std = jnp.asarray(w_std, jnp.float32)
        state = self._init(keys, frozen, w_std, c)
        losses, terms_hist = [], []
        pending = None  # read a chunk's losses only after the next chunk is dispatched (keeps the device busy)

        def collect(t0, out):
            loss, terms = out
            loss = np.asarray(loss)[:, :k]
            losses.append(loss)
            terms_hist.append({n: np.asarray(v)[:, :k] for n, v in terms.items()})
            if progress is not None:
                progress(min(self.chunk, self.cfg.steps - t0), loss[-1])

        for t0 in range(0, self.cfg.steps, self.chunk):
            state, out = self._chunk(state, jnp.asarray(t0, jnp.int32), frozen, targets, knowns, w_std)
            if pending is not None:
                collect(*pending)
            pending = (t0, out)
        collect(*pending)
        history = {"loss": np.concatenate(losses)[: self.cfg.steps]}
        for n in terms_hist[0]:
            history[n] = np.concatenate([h[n] for h in terms_hist])[: self.cfg.steps]
        best = jax.tree.map(lambda x: np.asarray(x)[:k], state["best_vars"])
        fixed = jax.tree.map(lambda x: np.asarray(x)[:k], state["fixed_noise"])
        ws = np.broadcast_to(best["w"], (k, self.G.num_ws, self.G.w_dim)).copy()
        noise = best.get("noise", fixed) if self.G.config.use_noise else None
        return SearchResult(seeds, ws, noise, np.asarray(state["best_loss"])[:k],
                            np.asarray(state["best_step"])[:k], np.asarray(state["alive"])[:k], history)


_SEARCHES: dict[tuple, Search] = {}


def get_search(objective: Objective, batch: int) -> Search:
    """The compiled search for this objective's spec and batch size, built once and then reused.

    A cached search was traced with the first objective of its spec; the weights, targets and prompt
    embeddings are arguments of the compiled program, so only the spec (the key) must agree.
    """
    key = (objective.spec, batch)
    if key not in _SEARCHES:
        if len(_SEARCHES) >= 8:
            _SEARCHES.pop(next(iter(_SEARCHES)))
        _SEARCHES[key] = Search(objective, batch)
    return _SEARCHES[key]


def default_batch(num_seeds: int, cfg: InpaintConfig) -> int:
    return num_seeds if cfg.batch == 0 else min(cfg.batch, num_seeds)


def batches(seeds: Sequence[int], size: int) -> list[list[int]]:
    return [list(seeds[i:i + size]) for i in range(0, len(seeds), size)]


