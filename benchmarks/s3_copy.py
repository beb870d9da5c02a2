"""Copy one dataset from the old account's bucket into a new bucket in the new account, four ways.

    .venv/bin/python benchmarks/s3_copy.py            # the issue's dataset: 2,000 x 64 KiB, 200 x 1 MiB, 4 x 96 MiB
    .venv/bin/python benchmarks/s3_copy.py --quick    # 200 x 64 KiB, 20 x 1 MiB, 2 x 12 MiB

Ways, each into its own fresh target bucket, each a first copy and then a no-op rerun (the
median of five reruns, taken in rounds -- every tool once per round -- so that a burst of load on
the shared lab machine slows a round of every tool rather than all reruns of one):
- this collection's core (``s3_copy_transfer.copy_bucket``, what s3_cross_account_copy runs),
  ``method: server_side``: source identity lists and reads metadata, target identity copies;
- the same with ``method: stream``: every byte through this process (ranged GETs, multipart upload);
- ``aws s3 sync`` (awscli from .venv, run in this process through ``awscli.clidriver`` so its S3
  calls can be counted at botocore), with one identity: the target's, granted read on the source
  by the source bucket policy, as a user of the CLI would have to;
- ``rclone sync`` (Debian's rclone, one remote, server-side copy), same identity, its default
  comparison (size + modification time); requests counted from ``--dump headers``;
- ``aws s3 sync, disk``: what a user does when the target identity may not read the source (field
  report 000), the tool ``stream`` replaces: ``aws s3 sync`` down to a local directory as the
  source identity, then up as the target's (``stream_vs_awscli_disk``).

Every tool runs with 16 concurrent requests (awscli's max_concurrent_requests, rclone's
--transfers/--checkers, the core's concurrency) against the same lab endpoint. The core and awscli
run in-process, so neither pays Python start-up; rclone is a separate process (its start-up is a
few milliseconds). One more row times the real module through ``ansible-playbook`` (the no-op
rerun of the server-side copy, ``--no-playbook`` skips it): Ansible's start-up, the module's
packaging and the STS AssumeRole calls on top of the core, which a user running the module pays.
The lab's moto serves S3 from one process, so absolute MiB/s are the lab's, not AWS's; the
ratios are the point. Calls are counted at botocore for the in-process tools.

One more no-op row, ``listing floor``, sends just the listing requests every rerun needs (both
buckets, 1,000 keys a page, the two sides at once, signed, answers read but not parsed): the time
moto takes to answer them, which no client can go below while it has to notice a change on either
side. ``noop_ceiling_vs_awscli`` (awscli's no-op over that floor) is the best no-op ratio any tool
could reach in that run. The lab's moto answers listings without its per-object model walk and
date re-parsing (tests/lab/moto_patches/serializer_timestamps.py and s3_listing_contents.py,
same bytes); unpatched it spent ~0.1 s of CPU per 1,000 keys, most of every tool's rerun.

Why ``stream`` does not beat ``rclone sync`` here: rclone copies server-side (one remote), so moto
copies each object inside its own process, while ``stream`` has moto serve every byte out (GET)
and take it back in (PUT) through this process, two requests per object; moto's single core is
the bottleneck of both, and it has more work per object for ``stream``. On AWS the comparison is
with the runner's network instead (see docs/s3_cross_account_copy.md); where rclone can copy, so
can this module's ``server_side``/``auto``, the fastest row.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import botocore.client  # noqa: E402
import conftest  # noqa: E402,F401  (makes ansible_collections.cutover.migration importable)
import urllib3  # noqa: E402

from ansible_collections.cutover.migration.plugins.module_utils.accounts import open_account  # noqa: E402
from ansible_collections.cutover.migration.plugins.module_utils.s3_copy import MIB, build_options  # noqa: E402
from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import copy_bucket  # noqa: E402

CALLS: Counter = Counter()
_lock = threading.Lock()
_original_make_api_call = botocore.client.BaseClient._make_api_call


def _counting_make_api_call(self, operation_name, api_params):
    if self.meta.service_model.service_name == "s3":
        with _lock:
            CALLS[operation_name] += 1
    return _original_make_api_call(self, operation_name, api_params)


botocore.client.BaseClient._make_api_call = _counting_make_api_call

CONCURRENCY = 16
# The no-op rerun is short and the lab machine is shared: every tool's is the median of this many,
# taken in rounds (every tool once per round).
NOOP_RUNS = 5
LISTING_FLOOR = "listing floor"
AWSCLI_DISK = "aws s3 sync, disk"
FULL = [(2000, 64 * 1024, "small"), (200, MIB, "medium"), (4, 96 * MIB, "large")]
QUICK = [(200, 64 * 1024, "small"), (20, MIB, "medium"), (2, 12 * MIB, "large")]


def lab_env() -> dict[str, str]:
    out = subprocess.run([str(REPO / "tests" / "lab" / "labctl"), "env"], capture_output=True, text=True, check=True)
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            name, _unused, value = line[len("export "):].partition("=")
            env[name] = value.strip("'\"")
    return env


def make_dataset(s3, bucket: str, shape) -> tuple[int, int]:
    s3.create_bucket(Bucket=bucket)
    jobs = []
    for count, size, label in shape:
        for number in range(count):
            jobs.append((f"{label}/{number // 100:03d}/object-{number:05d}.bin", size))
    blobs = {size: os.urandom(size) for _unused, size, _unused_2 in shape}

    def put(job):
        key, size = job
        # Same bytes per size class would let anything dedupe; prefix the key to make each object unique.
        body = key.encode().ljust(64, b"\0") + blobs[size][64:]
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream",
                      Metadata={"dataset": "benchmark"})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, jobs))
    return len(jobs), sum(size for _unused, size in jobs)


def remove_buckets(s3, marker: str) -> None:
    for bucket in s3.list_buckets()["Buckets"]:
        if marker not in bucket["Name"]:
            continue
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                s3.delete_objects(Bucket=bucket["Name"], Delete={"Objects": objects, "Quiet": True})
        s3.delete_bucket(Bucket=bucket["Name"])


def grant_read(s3, bucket: str, account: str) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))


def timed(action):
    CALLS.clear()
    started = time.perf_counter()
    detail = action()
    return time.perf_counter() - started, sum(CALLS.values()), detail


def run_core(source, target, source_bucket, target_bucket, method):
    options = build_options({"bucket": source_bucket}, {"bucket": target_bucket}, method=method,
                            concurrency=CONCURRENCY, part_size="16MiB", multipart_threshold="256MiB")
    result = copy_bucket(source, target, options).as_dict()
    assert not result["failures"], result["failures"][:3]
    return f"copied={result['objects']['copied']} skipped={result['objects']['skipped']}"


def credentials_env(account_session) -> dict[str, str]:
    frozen = account_session.session.get_credentials().get_frozen_credentials()
    return {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
            "AWS_SESSION_TOKEN": frozen.token}


def awscli_sync(account, origin, destination, config_file):
    """``aws s3 sync origin destination`` as ``account``, in this process."""
    from awscli.clidriver import create_clidriver

    saved = dict(os.environ)
    os.environ.update(credentials_env(account))
    os.environ["AWS_CONFIG_FILE"] = config_file
    try:
        driver = create_clidriver()
        output = io.StringIO()
        with redirect_stdout(output):
            status = driver.main(["s3", "sync", origin, destination, "--only-show-errors"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert status == 0, output.getvalue()[-2000:]


def run_awscli(target, source_bucket, target_bucket, config_file):
    awscli_sync(target, f"s3://{source_bucket}", f"s3://{target_bucket}", config_file)
    return "exit=0"


def run_awscli_via_disk(source, target, source_bucket, target_bucket, directory, config_file):
    """What a user does when the target identity may not read the source (field report 000):
    ``aws s3 sync`` down to a local directory as the source identity, then up as the target's."""
    Path(directory).mkdir(exist_ok=True)
    awscli_sync(source, f"s3://{source_bucket}", directory, config_file)
    awscli_sync(target, directory, f"s3://{target_bucket}", config_file)
    return "exit=0"


def run_rclone(target, env, source_bucket, target_bucket, log_dir):
    credentials = credentials_env(target)
    rclone_env = {name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"}
    rclone_env.update({
        "RCLONE_CONFIG_LAB_TYPE": "s3", "RCLONE_CONFIG_LAB_PROVIDER": "Other",
        "RCLONE_CONFIG_LAB_ACCESS_KEY_ID": credentials["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY": credentials["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_LAB_SESSION_TOKEN": credentials["AWS_SESSION_TOKEN"],
        "RCLONE_CONFIG_LAB_ENDPOINT": env["AWS_ENDPOINT_URL"], "RCLONE_CONFIG_LAB_REGION": "us-east-1",
        "RCLONE_CONFIG_LAB_FORCE_PATH_STYLE": "true",
    })
    log = Path(log_dir) / f"rclone-{uuid.uuid4().hex[:6]}.log"
    command = ["/usr/bin/rclone", "sync", f"lab:{source_bucket}", f"lab:{target_bucket}", "--s3-no-check-bucket",
               "--transfers", str(CONCURRENCY), "--checkers", str(CONCURRENCY), "--dump", "headers",
               "--log-file", str(log)]
    completed = subprocess.run(command, env=rclone_env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:] + log.read_text()[-2000:]
    requests = len(re.findall(r"HTTP REQUEST", log.read_text()))
    CALLS["rclone"] += requests
    return f"exit=0 requests={requests}"


def listing_floor(source, target, source_bucket, target_bucket):
    """The listing requests every no-op has to make (both buckets, 1,000 keys a page, the two sides
    at once), signed and sent, with the answers read but not parsed: what moto takes to answer
    them, and so the least time any client could take for a rerun that notices changes on both
    sides. A tool's no-op over this floor is its own work."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    token_pattern = re.compile(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>")

    def list_all(account, bucket):
        credentials = account.session.get_credentials().get_frozen_credentials()
        pool = urllib3.PoolManager()
        pages = 0
        token = None
        while True:
            query = {"list-type": "2", "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            url = f"{endpoint}/{bucket}?{urlencode(sorted(query.items()))}"
            request = AWSRequest(method="GET", url=url)
            S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
            answer = pool.request("GET", url, headers=dict(request.headers.items()))
            assert answer.status == 200, answer.data[:500]
            pages += 1
            match = token_pattern.search(answer.data)
            if not match:
                return pages
            token = match.group(1).decode()

    with ThreadPoolExecutor(2) as pool:
        pages = list(pool.map(list_all, (source, target), (source_bucket, target_bucket)))
    CALLS["ListObjectsV2"] += sum(pages)
    return f"pages={'+'.join(map(str, pages))}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the objects, smaller large objects")
    parser.add_argument("--no-playbook", action="store_true", help="skip the row run through ansible-playbook")
    arguments = parser.parse_args()
    shape = QUICK if arguments.quick or os.environ.get("BENCH_QUICK") else FULL

    env = lab_env()
    os.environ.update(env)
    source = open_account("source", {"role_arn": f"arn:aws:iam::{env['LAB_ACCOUNT_OLD']}:role/bench"})
    target = open_account("target", {"role_arn": f"arn:aws:iam::{env['LAB_ACCOUNT_NEW']}:role/bench"})
    source_s3, target_s3 = source.client("s3"), target.client("s3")
    run_id = uuid.uuid4().hex[:8]
    source_bucket = f"bench-src-{run_id}"
    started = time.perf_counter()
    objects, total_bytes = make_dataset(source_s3, source_bucket, shape)
    grant_read(source_s3, source_bucket, env["LAB_ACCOUNT_NEW"])
    print(f"dataset: {objects} objects, {total_bytes / MIB:.0f} MiB in s3://{source_bucket} "
          f"(written in {time.perf_counter() - started:.1f} s)")

    work = tempfile.mkdtemp(prefix="bench-s3-")
    config_file = Path(work) / "aws-config"
    config_file.write_text(f"[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = {CONCURRENCY}\n")

    ways = {
        "core server_side": lambda dst: run_core(source, target, source_bucket, dst, "server_side"),
        "core stream": lambda dst: run_core(source, target, source_bucket, dst, "stream"),
        "aws s3 sync": lambda dst: run_awscli(target, source_bucket, dst, str(config_file)),
        "rclone sync": lambda dst: run_rclone(target, env, source_bucket, dst, work),
        AWSCLI_DISK: lambda dst: run_awscli_via_disk(source, target, source_bucket, dst,
                                                     str(Path(work) / "download"), str(config_file)),
    }
    rows = []
    targets = {}
    for name, way in ways.items():
        label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        target_bucket = f"bench-dst-{label}-{run_id}"
        target_s3.create_bucket(Bucket=target_bucket)
        targets[name] = target_bucket
        seconds, calls, detail = timed(lambda way=way, target_bucket=target_bucket: way(target_bucket))
        if name == "rclone sync":
            calls = CALLS["rclone"]
        rows.append({"way": name, "phase": "copy", "seconds": seconds, "requests": calls, "detail": detail})
        print(f"  {name:18} {'copy':6} {seconds:8.2f} s  {calls:6} requests  {detail}", flush=True)

    # No-op reruns in rounds, every tool once per round, so a burst of load on the shared machine
    # slows one round of every tool rather than all the reruns of one tool.
    noop_runs: dict[str, list[float]] = {name: [] for name in [*ways, LISTING_FLOOR]}
    noop_calls: dict[str, int] = {}
    noop_detail: dict[str, str] = {}
    for _round in range(NOOP_RUNS):
        for name, way in ways.items():
            seconds, calls, detail = timed(lambda way=way, name=name: way(targets[name]))
            noop_runs[name].append(seconds)
            noop_calls[name] = CALLS["rclone"] if name == "rclone sync" else calls
            noop_detail[name] = detail
        seconds, calls, detail = timed(lambda: listing_floor(source, target, source_bucket,
                                                             targets["core server_side"]))
        noop_runs[LISTING_FLOOR].append(seconds)
        noop_calls[LISTING_FLOOR] = calls
        noop_detail[LISTING_FLOOR] = detail
    for name, runs in noop_runs.items():
        seconds = statistics.median(runs)
        detail = noop_detail[name] + " runs=" + "/".join(f"{run:.2f}" for run in runs)
        rows.append({"way": name, "phase": "no-op", "seconds": seconds, "requests": noop_calls[name],
                     "detail": detail})
        print(f"  {name:18} {'no-op':6} {seconds:8.2f} s  {noop_calls[name]:6} requests  {detail}", flush=True)

    if not arguments.no_playbook:
        target_bucket = targets["core server_side"]
        args = {"source": {"role_arn": f"arn:aws:iam::{env['LAB_ACCOUNT_OLD']}:role/bench", "bucket": source_bucket},
                "target": {"role_arn": f"arn:aws:iam::{env['LAB_ACCOUNT_NEW']}:role/bench", "bucket": target_bucket},
                "method": "server_side", "concurrency": CONCURRENCY, "part_size": "16MiB"}
        started = time.perf_counter()
        result = conftest.run_module("s3_cross_account_copy", args)
        seconds = time.perf_counter() - started
        assert result.get("failed") is not True and result["changed"] is False, result.get("msg")
        calls = sum(sum(counts.values()) for side, counts in result["requests"].items() if side != "writes")
        detail = f"module elapsed_s={result['elapsed_s']} skipped={result['objects']['skipped']}"
        rows.append({"way": "module (playbook)", "phase": "no-op", "seconds": seconds, "requests": calls,
                     "detail": detail})
        print(f"  {'module (playbook)':18} {'no-op':6} {seconds:8.2f} s  {calls:6} requests  {detail}", flush=True)

    baseline = {row["phase"]: row["seconds"] for row in rows if row["way"] == "aws s3 sync"}
    print()
    print(f"{'way':18} {'phase':6} {'wall s':>8} {'MiB/s':>8} {'requests':>9} {'vs aws':>7}")
    for row in rows:
        ratio = baseline[row["phase"]] / row["seconds"]
        rate_text = f"{total_bytes / MIB / row['seconds']:8.1f}" if row["phase"] == "copy" else f"{'-':>8}"
        print(f"{row['way']:18} {row['phase']:6} {row['seconds']:8.2f} {rate_text} {row['requests']:9} {ratio:6.2f}x")

    def seconds(way, phase):
        return next(row["seconds"] for row in rows if row["way"] == way and row["phase"] == phase)

    headline = [
        f"objects={objects}", f"mib={total_bytes / MIB:.0f}",
        f"server_side_copy_s={seconds('core server_side', 'copy'):.2f}",
        f"stream_copy_s={seconds('core stream', 'copy'):.2f}",
        f"awscli_copy_s={seconds('aws s3 sync', 'copy'):.2f}",
        f"rclone_copy_s={seconds('rclone sync', 'copy'):.2f}",
        f"server_side_noop_s={seconds('core server_side', 'no-op'):.2f}",
        f"awscli_noop_s={seconds('aws s3 sync', 'no-op'):.2f}",
        f"rclone_noop_s={seconds('rclone sync', 'no-op'):.2f}",
        f"copy_vs_awscli={seconds('aws s3 sync', 'copy') / seconds('core server_side', 'copy'):.2f}x",
        f"noop_vs_awscli={seconds('aws s3 sync', 'no-op') / seconds('core server_side', 'no-op'):.2f}x",
        f"noop_vs_rclone={seconds('rclone sync', 'no-op') / seconds('core server_side', 'no-op'):.2f}x",
        f"listing_floor_s={seconds(LISTING_FLOOR, 'no-op'):.2f}",
        f"noop_ceiling_vs_awscli={seconds('aws s3 sync', 'no-op') / seconds(LISTING_FLOOR, 'no-op'):.2f}x",
        f"stream_vs_rclone={seconds('rclone sync', 'copy') / seconds('core stream', 'copy'):.2f}x",
        f"awscli_disk_copy_s={seconds(AWSCLI_DISK, 'copy'):.2f}",
        f"stream_vs_awscli_disk={seconds(AWSCLI_DISK, 'copy') / seconds('core stream', 'copy'):.2f}x",
        f"stream_noop_vs_awscli_disk={seconds(AWSCLI_DISK, 'no-op') / seconds('core stream', 'no-op'):.2f}x",
    ]
    if not arguments.no_playbook:
        headline.append(f"module_playbook_noop_s={seconds('module (playbook)', 'no-op'):.2f}")
    # moto holds every byte in memory; the lab is shared, so give it back.
    for s3, marker in ((target_s3, run_id), (source_s3, run_id)):
        remove_buckets(s3, marker)
    print("bench: s3_copy " + " ".join(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
