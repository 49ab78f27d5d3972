"""Shared test setup: float32-exact matmuls, a persistent XLA compilation cache, data paths."""
import os
import pathlib

import jax
import pytest

DATA = pathlib.Path(__file__).parent / "data"

jax.config.update("jax_default_matmul_precision", "highest")
# Compiling is the slowest part of these tests on a 2-core CPU: keep compiled programs across runs.
_cache = os.environ.get("JAX_INPAINT_TEST_CACHE", str(pathlib.Path(__file__).parent.parent / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    return DATA
