"""Helpers for the unit tests of the lab's moto patches (tests/lab/moto_patches)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

LAB = Path(__file__).resolve().parents[1] / "lab"


def load_patch(name: str) -> ModuleType:
    """A patch module loaded on its own, its ``apply()`` not called: its pure parts can be tested."""
    spec = importlib.util.spec_from_file_location(f"lab_{name}", LAB / "moto_patches" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_moto_child(script: str) -> subprocess.CompletedProcess:
    """``script`` run with in-process moto in a child process (so patched classes never leak into
    other tests), with the lab directory as its first argument and no lab endpoint in its environment."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}
    environment.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"})
    return subprocess.run([sys.executable, "-c", script, str(LAB)], capture_output=True, text=True, check=False,
                          env=environment)
