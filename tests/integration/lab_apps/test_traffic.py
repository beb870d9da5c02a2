"""The demo's traffic generator records every request truthfully and follows DNS like a real client."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

from lab_apps_helpers import TRAFFIC, mysql_connect, resolve, upsert_a, wait_until


def run_traffic(lab, host: str, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(TRAFFIC), "run", "--url-host", host, "--resolver", lab["LAB_RESOLVER"], "--rate", "20",
                             "--write-ratio", "0.3", "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summarize(path: Path) -> dict:
    completed = subprocess.run([str(TRAFFIC), "summarize", str(path)], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(completed.stdout)


def test_traffic_through_an_alias_record_is_recorded_request_by_request(
        lab, tmp_path, app_database, start_app, load_balancer, delegated_zone):
    database = app_database()
    _first, first_listen = start_app(database)
    _second, second_listen = start_app(database)
    balancer = load_balancer([first_listen, second_listen])
    route53, zone_id, zone = delegated_zone()
    host = f"www.{zone.rstrip('.')}"
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": host, "Type": "A", "AliasTarget": {
            "HostedZoneId": balancer.hosted_zone_id, "DNSName": balancer.dns_name, "EvaluateTargetHealth": False}}}]})
    wait_until(lambda: resolve(lab["LAB_RESOLVER"], host), timeout=20, what=f"{host} resolves")
    out = tmp_path / "traffic.jsonl"

    process = run_traffic(lab, host, out, "--duration", "3")
    stdout, stderr = process.communicate(timeout=30)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    summary = summarize(out)
    acknowledged = [r["id"] for r in records if r["kind"] == "write" and r["status"] == 201]
    with mysql_connect(lab["LAB_MYSQL_OLD"], database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM orders WHERE served_by LIKE 't-web-%'")
        stored = {row[0] for row in cursor.fetchall()}

    assert process.returncode == 0, stderr
    assert 30 <= len(records) <= 70, f"about 20/s for 3 s, got {len(records)}: {stdout}"
    assert set(records[0]) == {"t", "kind", "address", "side", "status", "error", "id", "latency_ms"}
    assert {r["address"] for r in records} == {balancer.address}
    assert summary["requests"] == len(records)
    assert summary["reads"] + summary["writes"] == len(records)
    assert summary["by_side"] == {"old": len(records)}
    assert summary["by_status"] == dict(Counter(str(r["status"]) for r in records))
    assert summary["failed_reads"] == 0 and summary["rejected_writes"] == 0
    assert summary["acknowledged_writes"] == len(acknowledged) > 0
    assert sum(second["old"] for second in summary["seconds"]) == len(records)
    assert set(acknowledged) <= stored


def test_traffic_follows_a_record_flip_once_the_ttl_has_passed(lab, tmp_path, app_database, start_app, load_balancer,
                                                               delegated_zone):
    database = app_database()
    _old_instance, old_listen = start_app(database, side="old")
    _new_instance, new_listen = start_app(database, side="new")
    old_balancer = load_balancer([old_listen])
    new_balancer = load_balancer([new_listen])
    route53, zone_id, zone = delegated_zone()
    host = f"www.{zone.rstrip('.')}"
    upsert_a(route53, zone_id, host, old_balancer.address, 2)
    wait_until(lambda: resolve(lab["LAB_RESOLVER"], host), timeout=20, what=f"{host} resolves")
    out = tmp_path / "traffic.jsonl"
    stop_file = tmp_path / "stop"

    process = run_traffic(lab, host, out, "--until-file", str(stop_file), "--max-duration", "40")
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= 20, timeout=15, what="old-side traffic")
    flipped_at = time.time()
    upsert_a(route53, zone_id, host, new_balancer.address, 2)
    wait_until(lambda: any(json.loads(line)["side"] == "new" for line in out.read_text().splitlines()), timeout=15,
               what="new-side traffic")
    time.sleep(2)
    stop_file.touch()
    process.communicate(timeout=30)
    summary = summarize(out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    settled = [r for r in records if r["t"] > summary["first_new_t"] + 0.5]

    assert process.returncode == 0
    assert records[0]["side"] == "old"
    assert summary["first_new_t"] > flipped_at
    assert summary["first_new_t"] - flipped_at < 10  # TTL 2 s twice (resolver, client), plus a loaded machine
    assert settled and {r["side"] for r in settled} == {"new"}
    assert summary["failed_reads"] == 0 and summary["rejected_writes"] == 0
