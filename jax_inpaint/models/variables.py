"""A Flax module's variables from the shapes of its inputs: the one place that builds the dummy
inputs `module.init` needs. Each model says what its inputs look like (shapes, as
`jax.ShapeDtypeStruct`s: `input_shape`), and gets random variables (`init_variables`: tests,
benchmarks, training from scratch) or their shapes alone (`variable_shapes`: checking a checkpoint
or a conversion, nothing allocated) from the same description."""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


def input_shape(*shape: int, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
    """One dummy input of a module's `init`, as a shape (nothing allocated)."""
    return jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype)


def init_variables(module, inputs: Sequence[Any], key: Array) -> dict:
    """Random variables of `module` (all collections: params, buffers...), initialised with `key`
    on zero inputs of the shapes `inputs` (a sequence of pytrees of `input_shape`s; None for an
    absent optional input)."""
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tuple(inputs))
    return module.init({"params": key}, *zeros)


def variable_shapes(module, inputs: Sequence[Any]) -> dict:
    """The shapes (jax.ShapeDtypeStruct) of `init_variables(module, inputs, key)`: nothing allocated."""
    return jax.eval_shape(lambda *args: module.init({"params": jax.random.key(0)}, *args), *tuple(inputs))
