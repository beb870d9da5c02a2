"""Shared pytest fixtures: the lab's environment and a way to run the collection's modules.

Tests under tests/integration need the lab (``tests/lab/labctl up``); they are skipped with
a clear reason when it is down, never run against something else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LABCTL = REPO_ROOT / "tests" / "lab" / "labctl"

# Make `ansible_collections.cutover.migration...` importable from the working tree, the same
# layout ansible-test and ansible-playbook see: <tmp>/ansible_collections/cutover/migration -> repo.
# One link per working tree: two checkouts on one machine (a CI clone beside a work tree) must
# each import and run their own code, not whichever created a shared link first.
_TREE_ID = hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:8]  # noqa: S324 - a name, not security
_COLLECTIONS_ROOT = Path(tempfile.gettempdir()) / f"cutover-collections-{os.getuid()}-{_TREE_ID}"
_LINK = _COLLECTIONS_ROOT / "ansible_collections" / "cutover" / "migration"
if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    try:
        _LINK.symlink_to(REPO_ROOT)
    except FileExistsError:
        pass
if str(_COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS_ROOT))
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(_COLLECTIONS_ROOT))


def read_lab_env() -> dict[str, str]:
    """The ``export NAME=value`` lines of ``labctl env``, as a dict."""
    completed = subprocess.run([str(LABCTL), "env"], capture_output=True, text=True, check=False)
    env: dict[str, str] = {}
    for line in completed.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _sep, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="session")
def lab() -> dict[str, str]:
    """The running lab's variables (AWS endpoint, accounts, resolver, MySQL URLs); applied to os.environ."""
    status = subprocess.run([str(LABCTL), "status"], capture_output=True, text=True, check=False)
    if status.returncode != 0:
        pytest.skip(f"the lab is not running (tests/lab/labctl up): {status.stdout.strip()} {status.stderr.strip()}")
    env = read_lab_env()
    os.environ.update(env)
    return env


def run_module(module: str, args: dict, *, check: bool = False, diff: bool = False,
               env: dict[str, str] | None = None, timeout: float = 900) -> dict:
    """Run ``cutover.migration.<module>`` through ansible-playbook on localhost and return its result.

    This is the real module path (argument spec, check mode, no_log), not a call into the core.
    """
    with tempfile.TemporaryDirectory() as work:
        playbook = Path(work) / "play.yml"
        playbook.write_text(json.dumps([{
            "hosts": "localhost", "gather_facts": False, "connection": "local",
            "tasks": [{"name": "module under test", f"cutover.migration.{module}": args, "register": "result",
                       "ignore_errors": True},
                      {"name": "save result", "ansible.builtin.copy": {
                          "content": "{{ result | to_json }}", "dest": str(Path(work) / "result.json")},
                       "check_mode": False, "diff": False}],
        }]))
        command = [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook), "-i", "localhost,"]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        run_env = dict(os.environ)
        run_env.update({"ANSIBLE_COLLECTIONS_PATH": str(_COLLECTIONS_ROOT), "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"})
        run_env.update(env or {})
        completed = subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=timeout, check=False)
        result_file = Path(work) / "result.json"
        if not result_file.exists():
            raise AssertionError(f"ansible-playbook did not run the module:\n{completed.stdout}\n{completed.stderr}")
        result = json.loads(result_file.read_text())
        result["_stdout"] = completed.stdout
        return result


@pytest.fixture
def ansible_module():
    """``ansible_module(name, args, check=False, diff=False)`` -> the registered result dict."""
    return run_module


@pytest.fixture(scope="session")
def lab_account(lab):
    """``lab_account("old"|"new"|"parent"|"base")`` -> an AccountSession in that lab account."""
    from ansible_collections.cutover.migration.plugins.module_utils.accounts import open_account

    def open_lab_account(which: str, side: str = "target"):
        if which == "base":
            return open_account(side, {})
        account = lab[f"LAB_ACCOUNT_{which.upper()}"]
        return open_account(side, {"role_arn": f"arn:aws:iam::{account}:role/cutover-lab"})

    return open_lab_account
