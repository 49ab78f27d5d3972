"""The latent search: K seeds optimised at once (vmap), a chunk of Adam steps per compiled call (scan).

State per seed: the optimised variables (w, and the noise maps when optimised), the fixed noise, the
optax state, the best iterate so far and whether the seed is still alive (finite loss). The compiled
chunk function takes the state (donated), the first step index, the frozen weights, and one target
image and mask per batch item (so a batch may mix images: `inpaint-batch` lays (image x seed) items
out on a device mesh), so a new image, mask, prompt or set of seeds reuses the compiled program; only
shapes and what changes the program (`Objective.program_spec`: the traced options, the networks'
configs, the constraints' shapes) compile anew.

Memory: `fit_search` picks the batch size. The chunk is compiled ahead of time (nothing allocated) and
its own memory analysis says what it needs (arguments + outputs + temporaries); when the seeds do not
fit in the memory available (device memory, or the host's on CPU) they are split into equal batches
that do, from the per-seed footprint of that analysis; the compiled chunk is then reused for every call.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_inpaint.allocator import held_free_bytes
from jax_inpaint.errors import InputError
from jax_inpaint.inversion.objective import Objective, ProgramSpec, normalize_noise
from jax_inpaint.inversion.config import InpaintConfig

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

    @classmethod
    def merge(cls, parts: Sequence["SearchResult"]) -> "SearchResult":
        """The results of several searches (batches of seeds) as one, their seeds in order."""
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]
        cat = np.concatenate
        noise = None if parts[0].noise is None else {k: cat([p.noise[k] for p in parts]) for k in parts[0].noise}
        return cls(sum((p.seeds for p in parts), []), cat([p.ws for p in parts]), noise,
                   cat([p.best_loss for p in parts]), cat([p.best_step for p in parts]), cat([p.alive for p in parts]),
                   {k: cat([p.history[k] for p in parts], axis=1) for k in parts[0].history})

    def select(self, keep: np.ndarray) -> "SearchResult":
        """The seeds where `keep` ([K] bool) is True."""
        keep = np.asarray(keep, bool)
        noise = None if self.noise is None else {k: v[keep] for k, v in self.noise.items()}
        return type(self)([s for s, k in zip(self.seeds, keep) if k], self.ws[keep], noise, self.best_loss[keep],
                          self.best_step[keep], self.alive[keep], {k: v[:, keep] for k, v in self.history.items()})


class Search:
    """A compiled search for one program spec (`Objective.program_spec`) and one batch size.

    How the steps run (`cfg.loop`): 'scan' compiles a chunk of `chunk` steps as one `lax.scan`; 'host'
    compiles ONE step (state donated) and Python dispatches it `chunk` times (dispatch is asynchronous,
    so the device never waits for Python). On XLA:CPU the body of a compiled loop runs about 2x slower
    than the same step outside a loop (bench/step.py measures both), so 'auto' is 'host' on CPU and
    'scan' on GPU/TPU, where a chunk saves the per-step launch and host round trip. Either way the
    losses are read once per chunk, and a chunk is the unit of progress and interruption.
    """

    def __init__(self, objective: Objective, batch: int):
        self.objective = objective
        self.cfg = cfg = objective.cfg
        self.G = objective.models.G
        self.batch = batch
        self.loop = resolve_loop(cfg.loop)
        self.tx = optax.adam(lr_schedule(cfg), b1=0.9, b2=0.999, eps=1e-8)
        # Equal chunks of at most cfg.chunk steps that cover the run (steps past the end are no-ops).
        n_chunks = -(-cfg.steps // cfg.chunk)
        self.chunk = -(-cfg.steps // n_chunks)
        self.steps_per_call = self.chunk if self.loop == "scan" else 1
        self._init = jax.jit(jax.vmap(self._init_one, in_axes=(0, None, None, None)))
        self._prepare = jax.jit(jax.vmap(objective.prepare_target, in_axes=(None, 0, 0)))
        self._program_jit = jax.jit(self._run_chunk, donate_argnums=(0,))
        self._compiled = None  # the program compiled ahead of time by `compile` (single device)
        self._signature = None  # the argument shapes it was compiled for
        self.traces = 0  # times the program was traced (each trace is a compile): tests count these
        self.memory: int | None = None  # bytes the compiled program needs (see `compile`)

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

    def _loss_one(self, v, s, step, frozen, target, known, w_std, prepared):
        """One seed's loss at its variables v: (loss, (terms, image [H,W,3]))."""
        cfg = self.cfg
        w = v["w"]
        if cfg.w_noise > 0:
            noise_key = jax.random.fold_in(s["key"], step)
            w = w + w_noise_scale(cfg, step, w_std) * jax.random.normal(noise_key, w.shape)
        noise = v.get("noise", s["fixed_noise"])
        loss, terms, img = self.objective.loss_and_image(frozen, self._ws(w), noise if self.G.config.use_noise
                                                         else None, target, known, prepared)
        return loss, (terms, img)

    def _update_one(self, s, step, loss, grads):
        """One seed's Adam step from its loss and gradient, kept only while the seed is alive."""
        cfg = self.cfg
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

        return {**s,
                "vars": pick(ok, new_vars, s["vars"]),
                "opt": pick(ok, opt, s["opt"]),
                "best_vars": pick(better, s["vars"], s["best_vars"]),
                "best_loss": jnp.where(better, loss, s["best_loss"]),
                "best_step": jnp.where(better, step, s["best_step"]),
                "alive": s["alive"] & (finite | ~active)}

    def _step_one(self, s, step, frozen, target, known, w_std, prepared):
        (loss, (terms, _)), grads = jax.value_and_grad(self._loss_one, has_aux=True)(
            s["vars"], s, step, frozen, target, known, w_std, prepared)
        return self._update_one(s, step, loss, grads), (loss, terms)

    # All seeds -----------------------------------------------------------------------------------
    def _step_all(self, s, step, frozen, targets, knowns, w_std, prepared, groups):
        """One step of every item. Without the diversity term each seed's gradient is its own (vmapped
        per seed); with it, the items of one group (the seeds of one image) are optimised jointly."""
        if self.cfg.diversity <= 0:
            return jax.vmap(self._step_one, in_axes=(0, None, None, 0, 0, None, 0))(
                s, step, frozen, targets, knowns, w_std, prepared)
        loss_all = jax.vmap(self._loss_one, in_axes=(0, 0, None, None, 0, 0, None, 0))

        def joint(v):
            losses, (terms, imgs) = loss_all(v, s, step, frozen, targets, knowns, w_std, prepared)
            div = diversity_terms(imgs, knowns, groups, s["alive"], self._lpips_distances(frozen))
            per_item = losses + self.cfg.diversity * div
            return jnp.sum(jnp.where(jnp.isfinite(per_item), per_item, 0.0)), (per_item, {**terms, "diversity": div})

        (_, (losses, terms)), grads = jax.value_and_grad(joint, has_aux=True)(s["vars"])
        new = jax.vmap(self._update_one, in_axes=(0, None, 0, 0))(s, step, losses, grads)
        return new, (losses, terms)

    def _lpips_distances(self, frozen) -> Callable[[Array], Array] | None:
        """The diversity term's distance between hole contents when it is LPIPS (`diversity_space`)."""
        if not self.objective.lpips_diversity:
            return None
        lp = self.objective.models.lpips
        return functools.partial(lp.pairwise_distances, frozen["lpips"], resize_to=self.cfg.lpips_resize or None)

    def _run_chunk(self, state, t0, frozen, targets, knowns, w_std, prepared, groups):
        """The compiled program: `steps_per_call` steps from step t0 (a scan of a chunk, or one step)."""
        self.traces += 1  # Python side effect: runs once per trace, never in the compiled program

        def body(s, step):
            return self._step_all(s, step, frozen, targets, knowns, w_std, prepared, groups)

        if self.loop == "scan":
            return jax.lax.scan(body, state, t0 + jnp.arange(self.chunk))
        state, out = body(state, t0)
        return state, jax.tree.map(lambda x: x[None], out)

    # Compiling it ahead of time ------------------------------------------------------------------
    def _abstract_args(self, frozen) -> tuple[tuple, tuple]:
        """Arguments of the init and step programs for this batch size, as shapes (nothing allocated)."""
        b, res = self.batch, self.G.img_resolution
        f32 = jnp.float32
        keys = jax.eval_shape(jax.vmap(jax.random.key), jax.ShapeDtypeStruct((b,), jnp.uint32))
        w_std = jax.ShapeDtypeStruct((), f32)
        init_args = (keys, frozen, w_std, frozen.get("c"))
        state = jax.eval_shape(self._init, *init_args)
        targets, knowns = jax.ShapeDtypeStruct((b, res, res, 3), f32), jax.ShapeDtypeStruct((b, res, res), f32)
        prepared = jax.eval_shape(self._prepare, frozen, targets, knowns)
        return init_args, (state, jax.ShapeDtypeStruct((), jnp.int32), frozen, targets, knowns, w_std, prepared,
                           jax.ShapeDtypeStruct((b,), jnp.int32))

    def lower(self, frozen) -> dict[str, "jax.stages.Lowered"]:
        """The search's programs for this batch size, lowered for abstract arguments (nothing allocated,
        nothing compiled): 'init' (every seed's start state), 'prepare' (the targets' fixed features)
        and 'chunk' (the steps of one call). What they compute (`as_text()`) is what the compile-cache
        key (`Objective.program_spec`) must determine."""
        init_args, chunk_args = self._abstract_args(frozen)
        return {"init": self._init.lower(*init_args), "prepare": self._prepare.lower(frozen, *chunk_args[3:5]),
                "chunk": self._program_jit.lower(*chunk_args)}

    def compile(self, frozen) -> int:
        """Compile the step program for this batch size on the default device without allocating
        anything (abstract state and targets) and return the bytes it needs: arguments + outputs -
        donated (aliased) + temporaries, from XLA's memory analysis of the compiled program. Later calls
        with these shapes run this executable (no second compile)."""
        if self._compiled is None:
            args = self._abstract_args(frozen)[1]
            self._compiled = self._program_jit.lower(*args).compile()
            self._signature = _signature(args)
            self.memory = compiled_bytes(self._compiled)
        return self.memory

    def _call(self, *args):
        """One call of the compiled program (the ahead-of-time executable when the shapes are its own)."""
        if self._compiled is not None and _single_device(args) and _signature(args) == self._signature:
            return self._compiled(*args)
        return self._program_jit(*args)

    def _chunk(self, state, t0, frozen, targets, knowns, w_std, prepared=None, groups=None):
        """One chunk of steps from step t0: (state, (loss [chunk, B], {term: [chunk, B]})). `prepared`:
        the targets' prepared features (computed here when not given); `groups` [B]: the image of each
        item (items of one image interact through the diversity term; -1: padding)."""
        if prepared is None:
            prepared = self._prepare(frozen, targets, knowns)
        if groups is None:
            groups = jnp.zeros((targets.shape[0],), jnp.int32)
        t0 = int(t0)
        outs = []
        for t in range(t0, t0 + self.chunk, self.steps_per_call):
            state, out = self._call(state, jnp.asarray(t, jnp.int32), frozen, targets, knowns, w_std, prepared, groups)
            outs.append(out)
        if len(outs) == 1:
            return state, outs[0]
        return state, jax.tree.map(lambda *x: jnp.concatenate(x), *outs)

    # Driving it ---------------------------------------------------------------------------------
    def run(self, seeds: Sequence[int], frozen, target: Array, known: Array, w_std: float,
            progress: Callable[[int, np.ndarray], None] | None = None, sharding=None,
            should_stop: Callable[[], bool] | None = None, groups: Sequence[int] | None = None,
            preview: Callable[[int, np.ndarray, dict | None], None] | None = None) -> SearchResult:
        """Optimise `len(seeds) <= batch` items (padded to the batch size, so shapes never change).

        target [H,W,3] and known [H,W] are shared by all items, or given per item ([k,H,W,3], [k,H,W]).
        `groups` [k]: which image each item belongs to (the diversity term acts within an image); default:
        one image when the target is shared, each item its own when targets are given per item.
        `sharding`: a `jax.sharding.Sharding` for arrays whose leading axis is the batch (data
        parallel over a device mesh); the frozen weights are then replicated on the same mesh.
        `should_stop()` is asked before the first chunk and after each chunk's losses are read; when
        it says True the run ends there with KeyboardInterrupt (a deterministic interruption point).
        `progress(steps, losses [k])` and `preview(steps done, best ws [k, num_ws, w_dim], best noise
        {name: [k, H, W]} or None)` are called after each chunk.
        """
        seeds = list(seeds)
        k = len(seeds)
        if k > self.batch:
            raise ValueError("more seeds than the batch size")
        pad = self.batch - k
        padded = seeds + [seeds[-1]] * pad
        targets, knowns = jnp.asarray(target, jnp.float32), jnp.asarray(known, jnp.float32)
        if groups is None:
            groups = [0] * k if targets.ndim == 3 else list(range(k))
        groups = jnp.asarray(list(groups) + [-1] * pad, jnp.int32)
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
            keys, targets, knowns, groups = jax.device_put((keys, targets, knowns, groups), sharding)
        c = frozen.get("c")
        w_std = jnp.asarray(w_std, jnp.float32)
        state = self._init(keys, frozen, w_std, c)
        # The per-seed fixed noise never changes: copied once (the first chunk consumes the state), read to the
        # host at most once (for the previews and the result), not after every chunk.
        fixed_noise, fixed_host = jax.tree.map(jnp.copy, state["fixed_noise"]), []

        def fixed():
            if not fixed_host:
                fixed_host.append(jax.tree.map(lambda x: np.asarray(x)[:k], fixed_noise))
            return fixed_host[0]

        prepared = self._prepare(frozen, targets, knowns)
        losses, terms_hist = [], []
        pending = None  # read a chunk's losses only after the next chunk is dispatched (keeps the device busy)

        def collect(t0, out, best):
            loss, terms = out
            loss = np.asarray(loss)[:, :k]
            losses.append(loss)
            terms_hist.append({n: np.asarray(v)[:, :k] for n, v in terms.items()})
            done = min(t0 + self.chunk, self.cfg.steps)
            if progress is not None:
                progress(done - t0, loss[-1])
            if preview is not None:
                best = jax.tree.map(lambda x: np.asarray(x)[:k], best)
                ws = np.broadcast_to(best["w"], (k, self.G.num_ws, self.G.w_dim))
                noise = best.get("noise", fixed()) if self.G.config.use_noise else None
                preview(done, ws, noise)

        def check_stop():  # the interruption point: between chunks (Ctrl-C lands within one chunk)
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt("stopped between two chunks of the search")

        check_stop()
        for t0 in range(0, self.cfg.steps, self.chunk):
            state, out = self._chunk(state, t0, frozen, targets, knowns, w_std, prepared, groups)
            # a copy of the best iterate so far, taken before the next chunk consumes (donates) the state
            best = None if preview is None else jax.tree.map(jnp.copy, state["best_vars"])
            if pending is not None:
                collect(*pending)
                check_stop()
            pending = (t0, out, best)
        collect(*pending)
        history = {"loss": np.concatenate(losses)[: self.cfg.steps]}
        for n in terms_hist[0]:
            history[n] = np.concatenate([h[n] for h in terms_hist])[: self.cfg.steps]
        best = jax.tree.map(lambda x: np.asarray(x)[:k], state["best_vars"])
        ws = np.broadcast_to(best["w"], (k, self.G.num_ws, self.G.w_dim)).copy()
        noise = best.get("noise", fixed()) if self.G.config.use_noise else None
        return SearchResult(seeds, ws, noise, np.asarray(state["best_loss"])[:k],
                            np.asarray(state["best_step"])[:k], np.asarray(state["alive"])[:k], history)


def resolve_loop(loop: str, platform: str | None = None) -> str:
    """'auto' -> 'host' on CPU, 'scan' on an accelerator; 'scan' and 'host' as given."""
    if loop != "auto":
        return loop
    return "host" if (platform or jax.default_backend()) == "cpu" else "scan"


# The LPIPS diversity term pushes the seeds apart by minus the mean of LPIPS^p. The LPIPS of two hole
# contents (the known pixels zeroed) is a mean over the whole image, so it grows with the hole's area: with
# p = 1 every hole pixel is pushed alike and large holes get the most diversity for a weight; with p = 0.5
# (a distance) the push grows as a pair comes closer, ~1/sqrt(LPIPS), which favours small holes. On the
# demo model (bench/diversity.py, 10 faces, K = 4, diversity / weight 0 for the centre / mouth hole):
# p = 0.5 at 0.0007: 1.92x / 2.44x; p = 1 at 0.003: 3.00x / 2.59x, but one centre completion implausible;
# p = 0.75 at 0.0013: 2.22x / 2.34x with nothing lost: the two hole sizes most evenly (on faces 20-39,
# which no choice was made on: 2.74x / 2.55x). The `demo-diverse` preset; table in bench/RESULTS.md.
LPIPS_DIVERSITY_POWER = 0.75


def diversity_terms(imgs: Array, knowns: Array, groups: Array, alive: Array,
                    lpips_distances: Callable[[Array], Array] | None = None) -> Array:
    """Each item's share of the joint diversity term: minus the mean distance of its hole content to that
    of the other live items of its group. imgs [B,H,W,3], knowns [B,H,W] (1 = known), groups [B] (-1:
    padding, no partner), alive [B]; the hole is each item's own, so items of one image compare the same
    pixels. Distance: by default the RMS difference of the hole pixels, each image box-filtered to at most
    32x32 first (the structure of the completion, not its pixel noise); with `lpips_distances` (hole
    contents [B,H,W,3], the known pixels zeroed -> [B, B] LPIPS) their LPIPS, the measure the reported
    diversity uses, to the power LPIPS_DIVERSITY_POWER."""
    b, h, w, c = imgs.shape
    hole = 1.0 - knowns
    x = imgs * hole[..., None]
    # A dead seed, or one whose image became NaN in this very step, is no partner and leaks no NaN into the others.
    live = alive & (groups >= 0) & jnp.all(jnp.isfinite(x.reshape(b, -1)), axis=-1)
    x = jnp.where(live[:, None, None, None], x, 0.0)
    if lpips_distances is not None:
        d2 = lpips_distances(x)
    else:
        f = max(1, h // 32)
        x = x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4)).reshape(b, -1)
        area = hole.reshape(b, h // f, f, w // f, f).mean(axis=(2, 4)).reshape(b, -1)
        d2 = jnp.sum(jnp.square(x[:, None] - x[None]), axis=-1) / jnp.maximum(
            c * jnp.sum(area, axis=-1)[:, None], 1e-6)
    pair = (groups[:, None] == groups[None]) & live[:, None] & live[None] & ~jnp.eye(b, dtype=bool)
    power = 0.5 if lpips_distances is None else LPIPS_DIVERSITY_POWER
    dist = jnp.power(jnp.where(pair, d2, 1.0) + 1e-8, power)  # where before the power: no infinite gradient at 0
    n = jnp.sum(pair, axis=1)
    return -jnp.sum(jnp.where(pair, dist, 0.0), axis=1) / jnp.maximum(n, 1)


_SEARCHES: dict[tuple[ProgramSpec, int], Search] = {}


def get_search(objective: Objective, batch: int) -> Search:
    """The compiled search for this objective's program spec and batch size, built once and then reused.

    A cached search was traced with the first objective of its spec; the weights, targets and prompt
    embeddings are arguments of the compiled program, so only the spec (the key) must agree.
    """
    key = (objective.program_spec, batch)
    search = _SEARCHES.pop(key, None)  # least recently used first: a hit moves to the end
    if search is None:
        if len(_SEARCHES) >= 8:
            _SEARCHES.pop(next(iter(_SEARCHES)))
        search = Search(objective, batch)
    _SEARCHES[key] = search
    return search


def batches(seeds: Sequence[int], size: int) -> list[list[int]]:
    return [list(seeds[i:i + size]) for i in range(0, len(seeds), size)]


# ---------------------------------------------------------------------------------------------
# Memory: how many seeds fit in one compiled call.

# Of the memory available when a run starts, the share one search plans to use: on CPU the host's
# RAM is shared with the outputs, the Python process and everything else running; on an accelerator
# the search has the device to itself but XLA's estimate is not the allocator's exact peak.
MEMORY_FRACTION = {"cpu": 0.6}
DEVICE_MEMORY_FRACTION = 0.85
# On CPU, vmapping more seeds adds no parallelism once the cores are busy, only memory (the demo on
# 2 cores: 122 seed-steps/s at K = 4, 100 at 64, 71 at 256): batch 0 runs at most this many at once.
CPU_MAX_BATCH = 256
# ... and fewer for large images: XLA:CPU's convolutions slow down per seed once a batch's feature maps
# outgrow the caches (a 3x3 convolution over 8 maps of 128x128x128 takes ~1.45x the time per map of one
# map). paper256 (largest map 256x256x64, 16 MB a seed), per-seed step time against K = 1 with all K
# seeds in one program, two readings on the tuned host allocator (bench/inpaint.py): 0.98-1.00 with 2
# seeds, 0.94-0.98 with 4, 1.31-1.35 with 8; NVIDIA's 64x64 config (8 MB a seed): 0.91-0.92 with 4 or 8.
# So without the diversity term (whose seeds must share a program to interact) a CPU batch holds at most
# this much of the generator's largest feature map: 4 seeds at 256x256, 8 at NVIDIA's 64x64 config,
# CPU_MAX_BATCH for the demo.
CPU_BATCH_BYTES = 64 * 2**20


def _signature(args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False))) for x in leaves)


def _single_device(args) -> bool:
    for x in jax.tree.leaves(args):
        sharding = getattr(x, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            return False
    return True


def compiled_bytes(compiled) -> int | None:
    """Peak bytes of a compiled executable by XLA's memory analysis (None where the backend has none)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 (not every backend implements it)
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_available_memory() -> int | None:
    """Bytes of RAM this process may still take: what the system has available (`system_available_memory`)
    plus what malloc holds free for this process's reuse (the tuned host allocator keeps freed memory,
    which the system then counts as used: `allocator.held_free_bytes`)."""
    avail = system_available_memory()
    return None if avail is None else avail + held_free_bytes()


def system_available_memory() -> int | None:
    """/proc/meminfo's MemAvailable (else free pages), and no more than the headroom under a cgroup memory
    limit (containers)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < 1 << 60:
            avail = min(avail, max(0, limit - usage))
    return avail


def available_memory(device=None) -> int | None:
    """Bytes a search may still allocate on `device` (default: the first device): on CPU the host's
    available RAM, on an accelerator its allocator's `bytes_limit - bytes_in_use`; None if unknown."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return host_available_memory()
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001
        return None
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def memory_budget(reserve: int = 0) -> tuple[int | None, int | None, str]:
    """(bytes the search may plan to use, bytes available, where): the available memory times the
    safety fraction, less `reserve` bytes of host memory kept for the outputs (on CPU)."""
    device = jax.devices()[0]
    avail = available_memory(device)
    if avail is None:
        return None, None, device.platform
    if device.platform == "cpu":
        return int(MEMORY_FRACTION["cpu"] * max(0, avail - reserve)), avail, "host memory"
    return int(DEVICE_MEMORY_FRACTION * avail), avail, f"{device.platform} memory"


def gigabytes(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GB" if n < 2 ** 40 else f"{n / 2 ** 40:.2f} TB"


def tree_bytes(tree) -> int:
    return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(tree))


def fit_search(objective: Objective, num_seeds: int, frozen, *, reserve: int = 0, batch: int | None = None,
               what: str = "batch") -> Search:
    """The compiled search that runs `num_seeds` seeds, in batches of `search.batch` (see `_fit`).

    remat 'auto': the synthesis blocks are rematerialised only when that lets more seeds run at once
    than without (the seeds would otherwise be split into batches, or not even one would fit); the
    search then runs the rematerialised program (`search.objective.cfg.remat == 'blocks'`)."""
    if objective.cfg.remat != "auto":
        return _fit(objective, num_seeds, frozen, reserve=reserve, batch=batch, what=what)
    try:
        search = _fit(objective, num_seeds, frozen, reserve=reserve, batch=batch, what=what)
    except InputError:
        search = None
    explicit = objective.cfg.batch if batch is None else batch
    if search is not None and (explicit or search.batch >= cpu_batch(objective, num_seeds)):
        return search  # a batch size asked for and fitting, or not limited by memory: nothing to gain
    remat = Objective(objective.models, objective.cfg.replace(remat="blocks"), objective.constraints, objective.c)
    try:
        other = _fit(remat, num_seeds, frozen, reserve=reserve, batch=batch, what=what)
    except InputError:
        if search is None:
            raise
        return search
    return other if search is None or other.batch > search.batch else search


def cpu_batch_limit(objective: Objective) -> int:
    """The most seeds one call runs on CPU (before memory is asked): CPU_MAX_BATCH, or, without the
    diversity term, as many as keep the generator's largest feature map within CPU_BATCH_BYTES (>= 1)."""
    if objective.cfg.diversity > 0:
        return CPU_MAX_BATCH
    g = objective.models.G.config
    largest = max(res * res * g.block_channels(res)[1] for res in g.block_resolutions) * 4  # float32 bytes
    return max(1, min(CPU_MAX_BATCH, CPU_BATCH_BYTES // largest))


def cpu_batch(objective: Objective, num_seeds: int) -> int:
    """The most seeds batch 0 runs at once before memory is asked: all of them, or on CPU equal batches
    of at most `cpu_batch_limit`."""
    limit = cpu_batch_limit(objective)
    if jax.devices()[0].platform == "cpu" and num_seeds > limit:
        return math.ceil(num_seeds / math.ceil(num_seeds / limit))
    return num_seeds


def _fit(objective: Objective, num_seeds: int, frozen, *, reserve: int = 0, batch: int | None = None,
         what: str = "batch") -> Search:
    """The compiled search that runs `num_seeds` seeds, in batches of `search.batch`.

    batch 0 (the default): all seeds at once if the compiled chunk fits in the memory budget, else
    the fewest equal batches that fit (per seed: what the chunk needs beyond the weights, divided by
    its batch size; each new size is compiled and checked again); on CPU at most `cpu_batch_limit`. A batch set explicitly is kept, but
    refused if its chunk needs more than all the memory available. Where the backend reports no
    memory, nothing is split. `reserve`: host bytes kept for the outputs (CPU). `batch`: the batch size
    asked for instead of the config's (0: as many as fit), named `what` in the error (e.g. '--per-device').
    """
    cfg = objective.cfg
    fixed = tree_bytes(frozen)  # the weights: there once, whatever the batch size
    asked = cfg.batch if batch is None else batch
    if asked:
        search = get_search(objective, min(asked, num_seeds))
        need = search.compile(frozen)
        _, avail, where = memory_budget(reserve)
        if need is not None and avail is not None and need > avail:
            raise InputError(f"{what} {search.batch}: the search needs about {gigabytes(need)} of {where}, "
                             f"{gigabytes(avail)} available: use a smaller {what} (or leave it to fit: as many "
                             "seeds as fit)" if what != "batch" else
                             f"batch {search.batch}: the search needs about {gigabytes(need)} of {where}, "
                             f"{gigabytes(avail)} available: use a smaller batch (or batch 0: as many seeds as fit)")
        return search
    batch = cpu_batch(objective, num_seeds)
    points = []  # (batch, bytes needed) of the sizes compiled so far
    for _ in range(6):  # the linear estimate converges in one or two steps
        search = get_search(objective, batch)
        need = search.compile(frozen)
        budget, avail, where = memory_budget(reserve)
        if need is None or budget is None or need <= budget:
            return search
        points.append((batch, need))
        if len(points) >= 2:  # two sizes: the line through them
            (b1, n1), (b2, n2) = points[-2:]
            per_seed = max(1.0, (n1 - n2) / (b1 - b2))
            base = n2 - per_seed * b2
        else:  # one size: all but the weights grows with the batch
            per_seed, base = max(1.0, (need - fixed) / batch), fixed
        fits = math.floor((budget - base) / per_seed)
        if fits < 1 or batch == 1:
            raise InputError(f"one seed's search needs about {gigabytes(base + per_seed)} of {where} "
                             f"({gigabytes(avail)} available): free memory or use a smaller model or image")
        n = math.ceil(num_seeds / min(fits, batch - 1))
        batch = math.ceil(num_seeds / n)  # equal batches: the last one is padded the least
    return search
