"""The host allocator's settings (jax_inpaint.allocator): freed memory is kept and reused, so a second
allocation of the same size touches no fresh pages; the CLI applies them before any command runs."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc options (Linux)")

# Allocate, write and free 64 MB twice; print whether the settings applied and the second round's page faults.
PROBE = """
import ctypes, resource
from jax_inpaint.allocator import tune_host_allocator
applied = tune_host_allocator()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def touch():
    p = libc.malloc(64 << 20)
    ctypes.memset(p, 1, 64 << 20)
    libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env_value=None):
    env = dict(os.environ)
    env.pop("JAX_INPAINT_HOST_ALLOCATOR", None)
    if env_value is not None:
        env["JAX_INPAINT_HOST_ALLOCATOR"] = env_value
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    applied, faults = p.stdout.split()
    return applied == "True", int(faults)


def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    applied, faults = _probe()
    assert applied
    assert faults < 100, faults  # 64 MB of fresh 4 KB pages would be 16384 faults


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_held_free_bytes_counts_what_was_freed():
    code = PROBE.replace("print(applied,", "from jax_inpaint.allocator import held_free_bytes\n"
                                           "print(held_free_bytes() >= 64 << 20,")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "True"  # the 64 MB block freed last is held for reuse


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_default_keeps_glibcs_settings():
    applied, faults = _probe("default")
    assert not applied
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        huge_pages_always = "[always]" in f.read()
    if not huge_pages_always:  # glibc maps a block this large afresh: every 4 KB page faults again
        assert faults > 8000, faults


@pytest.mark.parametrize("command, tuned", [("masks", True), ("demo", False)])
def test_the_cli_tunes_the_allocator_before_commands_that_search(command, tuned):
    """Before any command runs (jax not imported yet), except `demo`, which is mostly compiling."""
    code = ("import sys\nfrom jax_inpaint import allocator\nfrom jax_inpaint.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "print(allocator._applied, 'jax' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-2:] == [str(tuned and _glibc()) if tuned else "None", "False"]
