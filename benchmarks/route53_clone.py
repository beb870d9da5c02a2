"""Clone a Route53 zone old account -> new account three ways, against the lab.

    .venv/bin/python benchmarks/route53_clone.py            # 1,000 and 10,000 records
    .venv/bin/python benchmarks/route53_clone.py --quick    # 200 and 1,000 records

Ways: this collection's core (``route53_api.clone_zone``, what route53_zone_clone runs);
octoDNS (``octodns`` + ``octodns-route53``, Route53 -> Route53 with ``role_arn`` per account,
``max_changes: 990`` because moto rejects its default 1,000); and a per-record loop the way
amazon.aws.route53 works (look the zone up, read the record, one ChangeResourceRecordSets per
record). The loop here reads only the one record with StartRecordName, which is kinder than
amazon.aws (it lists the zone); even so it makes 3 calls a record. In the lab each of its change
calls costs time proportional to the zone, so for the 10,000 row the loop copies the first 1,000
records and its time is extrapolated linearly (its call counts are exact: 3 per record + 1);
the row says so. Calls are counted at botocore, for every client in the process.

Each way gets its own source zone (same records) so the target names do not collide.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import botocore.client  # noqa: E402
import conftest  # noqa: E402,F401  (makes ansible_collections.cutover.migration importable)

from ansible_collections.cutover.migration.plugins.module_utils.accounts import open_account  # noqa: E402
from ansible_collections.cutover.migration.plugins.module_utils.route53_api import clone_zone  # noqa: E402

CALLS: Counter = Counter()
_original_make_api_call = botocore.client.BaseClient._make_api_call


def _counting_make_api_call(self, operation_name, api_params):
    if self.meta.service_model.service_name == "route53":
        CALLS[operation_name] += 1
    response = _original_make_api_call(self, operation_name, api_params)
    if operation_name == "ListHealthChecks":
        # moto omits IsTruncated, which octoDNS reads (a moto gap, not an octoDNS bug).
        response.setdefault("IsTruncated", False)
    return response


botocore.client.BaseClient._make_api_call = _counting_make_api_call


def counted() -> tuple[int, int]:
    reads = sum(count for name, count in CALLS.items() if name.startswith(("List", "Get")))
    writes = sum(count for name, count in CALLS.items() if not name.startswith(("List", "Get")))
    return reads, writes


def lab_env() -> dict[str, str]:
    env = conftest.read_lab_env()
    if not env:
        sys.exit("the lab is not running: tests/lab/labctl up")
    os.environ.update(env)
    return env


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/cutover-bench"


def make_source(client, size: int, label: str) -> tuple[str, str, list[dict]]:
    zone = f"bench-{label}-{size}-{uuid.uuid4().hex[:6]}.test."
    zone_id = client.create_hosted_zone(Name=zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"].split("/")[-1]
    records = [{"Name": f"host-{n:05d}.{zone}", "Type": "A", "TTL": 300,
                "ResourceRecords": [{"Value": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"}]} for n in range(size)]
    for start in range(0, size, 1000):
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
            "Changes": [{"Action": "CREATE", "ResourceRecordSet": item} for item in records[start:start + 1000]]})
    return zone, zone_id, records


def run_collection(env, zone):
    source = open_account("source", {"role_arn": role(env["LAB_ACCOUNT_OLD"])})
    target = open_account("target", {"role_arn": role(env["LAB_ACCOUNT_NEW"])})
    clone_zone(source, target, {"source": {"zone": zone}, "target": {}, "wait": True})


def run_octodns(env, zone):
    from octodns.manager import Manager

    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "octodns.yaml"
        config.write_text(f"""
providers:
  old:
    class: octodns_route53.Route53Provider
    role_arn: {role(env['LAB_ACCOUNT_OLD'])}
    max_changes: 990
  new:
    class: octodns_route53.Route53Provider
    role_arn: {role(env['LAB_ACCOUNT_NEW'])}
    max_changes: 990
zones:
  {zone}:
    sources: [old]
    targets: [new]
""")
        Manager(str(config)).sync(eligible_zones=[zone], dry_run=False)


def run_loop(env, zone, records, limit):
    source = open_account("source", {"role_arn": role(env["LAB_ACCOUNT_OLD"])}).client("route53")
    target = open_account("target", {"role_arn": role(env["LAB_ACCOUNT_NEW"])}).client("route53")
    del source
    target_id = target.create_hosted_zone(Name=zone, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    for record in records[:limit]:
        zones = target.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
        zone_id = next(item["Id"] for item in zones if item["Name"] == zone) if zones else target_id
        target.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=record["Name"], StartRecordType="A",
                                         MaxItems="1")
        target.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]})


def delete_zone(client, zone: str) -> None:
    """Remove a benchmark zone: the lab's DNS and every later test share these accounts."""
    for hosted_zone in client.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]:
        if hosted_zone["Name"] != zone:
            continue
        zone_id = hosted_zone["Id"]
        doomed = [record for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
                  for record in page["ResourceRecordSets"] if not (record["Name"] == zone and record["Type"] in ("NS", "SOA"))]
        for start in range(0, len(doomed), 500):
            client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": record} for record in doomed[start:start + 500]]})
        client.delete_hosted_zone(Id=zone_id)


def measure(function) -> tuple[float, int, int]:
    CALLS.clear()
    started = time.monotonic()
    function()
    elapsed = time.monotonic() - started
    reads, writes = counted()
    return elapsed, reads, writes


def measure_ways(env, zones, size: int, loop_sample: int) -> dict:
    row: dict = {"size": size}
    row["cutover"] = measure(lambda: run_collection(env, zones["cutover"][0]))
    row["octodns"] = measure(lambda: run_octodns(env, zones["octodns"][0]))
    limit = min(size, loop_sample)
    elapsed, reads, writes = measure(lambda: run_loop(env, zones["loop"][0], zones["loop"][2], limit))
    scale = size / limit
    row["loop"] = (elapsed * scale, int(reads * scale), int((writes - 1) * scale) + 1)
    row["loop_extrapolated"] = limit < size
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 records instead of 1,000 and 10,000")
    parser.add_argument("--loop-sample", type=int, default=1000, help="records the per-record loop copies before extrapolating")
    arguments = parser.parse_args()
    sizes = [200, 1000] if arguments.quick or os.environ.get("BENCH_QUICK") else [1000, 10000]
    env = lab_env()
    old = open_account("source", {"role_arn": role(env["LAB_ACCOUNT_OLD"])}).client("route53")
    new = open_account("target", {"role_arn": role(env["LAB_ACCOUNT_NEW"])}).client("route53")
    rows = []
    for size in sizes:
        zones = {way: make_source(old, size, way) for way in ("cutover", "octodns", "loop")}
        try:
            rows.append(measure_ways(env, zones, size, arguments.loop_sample))
        finally:
            for zone, _zone_id, _records in zones.values():
                delete_zone(old, zone)
                delete_zone(new, zone)

    print(f"{'records':>8} {'way':<28} {'wall s':>9} {'change calls':>13} {'list calls':>11}")
    for row in rows:
        for way, label in (("cutover", "cutover.route53_zone_clone"), ("octodns", "octoDNS Route53->Route53"),
                           ("loop", "per-record loop" + (" (extrap.)" if row["loop_extrapolated"] else ""))):
            elapsed, reads, writes = row[way]
            print(f"{row['size']:>8} {label:<28} {elapsed:>9.2f} {writes:>13} {reads:>11}")
    print()
    print(f"{'records':>8} {'octoDNS/cutover time':>21} {'loop/cutover time':>18} {'octoDNS/cutover changes':>24} "
          f"{'loop/cutover changes':>21}")
    headline = []
    for row in rows:
        ours, octo, loop = row["cutover"], row["octodns"], row["loop"]
        print(f"{row['size']:>8} {octo[0] / ours[0]:>21.1f} {loop[0] / ours[0]:>18.1f} {octo[2] / ours[2]:>24.1f} "
              f"{loop[2] / ours[2]:>21.1f}")
        size = row["size"]
        headline += [f"n{size}_s={ours[0]:.2f}", f"n{size}_change={ours[2]}", f"n{size}_list={ours[1]}",
                     f"n{size}_octodns_s={octo[0]:.2f}", f"n{size}_octodns_change={octo[2]}", f"n{size}_octodns_list={octo[1]}",
                     f"n{size}_loop_s={loop[0]:.1f}", f"n{size}_loop_change={loop[2]}",
                     f"n{size}_speedup_octodns={octo[0] / ours[0]:.1f}", f"n{size}_speedup_loop={loop[0] / ours[0]:.1f}"]
    print("bench: route53_clone " + " ".join(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
