import os

# The tiny model's tensors are too small for two intra-op threads to pay off, and on a
# busy 2-core machine OpenMP threads spinning for each other made image generation
# 10-20x slower (measured: 46-87 s against 3.5-4.5 s per 14-step tiny image). Set before
# torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pathlib
import subprocess
import sys

import pytest

from plantain_core.plugins import reset_registry

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch, tmp_path_factory):
    """Each test sees the plugins of its own environment, and a private image cache."""
    for var in ("PLANTAIN_SPEC_PATH", "PLANTAIN_STRICT_PLUGINS", "PLANTAIN_DISABLE_PLUGINS", "PLANTAIN_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PLANTAIN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """The example plugin package, pip-installed for real into a private target dir."""
    target = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(ROOT / "examples" / "plantain-example")],
        check=True,
    )
    return target


def run_cli(*args, env_extra=None, pythonpath=()):
    """Run the installed ``plantain`` console entry in a real subprocess."""
    env = dict(os.environ)
    for var in ("PLANTAIN_SPEC_PATH", "PLANTAIN_STRICT_PLUGINS", "PLANTAIN_DISABLE_PLUGINS", "PLANTAIN_DEBUG"):
        env.pop(var, None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "plantain_core", *args], capture_output=True, text=True, env=env, timeout=600
    )
