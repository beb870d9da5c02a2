"""The demo as a regression test: a whole migration under live traffic loses no acknowledged write.

A smaller configuration of `make demo` (its own world, a few thousand rows); the lab stays up
(DEMO_KEEP=1) because the rest of the suite shares it.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pymysql
import pytest

REPO = Path(__file__).resolve().parents[3]


def set_old_server_writable(lab) -> None:
    # The DB stage freezes the whole old server (read_only is server-wide); other tests share it.
    url = urlparse(lab["LAB_MYSQL_OLD"])
    connection = pymysql.connect(host=url.hostname, port=url.port, user=url.username, password=url.password)
    with connection, connection.cursor() as cursor:
        cursor.execute("SET GLOBAL read_only = OFF")


# The prod environment's old and new hosts (inventories/lab/hosts.yml), where the demo world's apps listen.
PROD_HOST_ADDRESSES = ("127.0.57.1", "127.0.57.2", "127.0.57.11", "127.0.58.1", "127.0.58.2", "127.0.58.11")


def free_port_base() -> int:
    """A port base no app listens on yet: a `make demo` world or one left by an earlier run keeps its ports."""
    for _attempt in range(50):
        port_base = random.randrange(10000, 19000, 100)
        if all(port_free(address, port_base + offset) for address in PROD_HOST_ADDRESSES for offset in (80, 81)):
            return port_base
    raise AssertionError("no free port base in 10000-19000: stop the labapp instances left running (labctl down)")


def port_free(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) != 0


def stop_world_apps(world: str) -> None:
    """DEMO_KEEP=1 leaves the world's app processes running; the suite goes on without them."""
    for args_file in (REPO / "tests" / "lab" / "state").glob(f"labapp-{world}-*.args.json"):
        instance = args_file.name[len("labapp-"):-len(".args.json")]
        subprocess.run([sys.executable, str(REPO / "tests" / "lab" / "labapp.py"), "stop", "--instance", instance],
                       capture_output=True, check=False)


@pytest.fixture
def demo_run(lab, tmp_path):
    world = f"demo{uuid.uuid4().hex[:5]}"
    env = dict(os.environ, LAB_WORLD=world, LAB_PORT_BASE=str(free_port_base()), DEMO_ROWS="5000", DEMO_KEEP="1",
               DEMO_RATE="15", DEMO_REPORT_DIR=str(tmp_path / "report"))
    try:
        completed = subprocess.run([str(REPO / "tests" / "lab" / "demo")], cwd=REPO, env=env, capture_output=True,
                                   text=True, timeout=1200, check=False)
    finally:
        set_old_server_writable(lab)
        stop_world_apps(world)
    return completed, tmp_path / "report"


def test_a_migration_under_traffic_loses_no_write_and_reruns_with_no_change(demo_run):
    completed, report = demo_run
    line = next((text for text in completed.stdout.splitlines() if text.startswith("demo: lost_writes=")), None)
    assert line is not None, completed.stdout[-3000:] + completed.stderr[-2000:]
    figures = dict(re.findall(r"(\w+)=([\d.]+)", line))
    assert figures["lost_writes"] == "0"
    assert figures["failed_reads"] == "0"
    assert figures["changed_on_rerun"] == "0"
    assert int(figures["rejected_writes"]) >= 0
    budget_line = next(text for text in completed.stdout.splitlines() if text.startswith("freeze_s="))
    budget = dict(re.findall(r"(\w+)=([\d.]+)", budget_line))
    # Writes are rejected only while the final delta runs and the endpoint flip propagates
    # (plus the traffic's one-second resolution).
    assert float(figures["freeze_s"]) <= float(budget["final_delta_s"]) + float(budget["endpoint_flip_s"]) + 1.5
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert (report / "report.md").read_text().startswith("# cutover.migration lab demo")
    assert (report / "timeline.png").read_bytes()[:4] == b"\x89PNG"
