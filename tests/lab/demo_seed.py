"""Seed "old prod" for the demo through the lab inventory's own seed playbook.

The inventory (inventories/lab) is the one place that names the demo's world; this only runs
`inventories/lab-support/seed.yml -i inventories/lab -l prod` (find-or-create, so a second `make demo` on a migrated lab
changes nothing) and returns the names the demo's traffic and checks need.
"""

from __future__ import annotations

import os
import subprocess

import lab_config


def seed_old_prod(rows: int, objects: int | None = None) -> dict[str, str]:
    world = os.environ.get("LAB_WORLD") or "shop"
    env = dict(os.environ)
    env.update(lab_config.lab_environment())
    env["LAB_SEED_ROWS"] = str(rows)
    if objects is not None:
        env["LAB_SEED_OBJECTS"] = str(objects)
    env["ANSIBLE_NOCOLOR"] = "1"
    venv_bin = lab_config.REPO_ROOT / ".venv" / "bin"
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
    completed = subprocess.run([str(venv_bin / "ansible-playbook"), "inventories/lab-support/seed.yml", "-i", "inventories/lab", "-l", "prod"],
                               cwd=lab_config.REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"demo: seeding old prod failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-2000:]}")
    return {"www": f"www.{world}.test", "database": world.replace("-", "_"), "domain": f"{world}.test"}
