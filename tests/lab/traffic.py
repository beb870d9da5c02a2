"""traffic: the demo's shoppers. Reads pages and places orders at a steady rate and records every request.

    traffic run --url-host www.shop.test [--resolver IP] (--duration S | --until-file PATH) [--rate N]
                [--write-ratio 0.3] --out FILE.jsonl [--port 80] [--users N] [--workers N] [--timeout S]
    traffic summarize FILE.jsonl

`run` resolves the host through the lab resolver like a real client that honours TTL (the answer
is reused until its TTL runs out, then asked again), so a DNS flip reaches it exactly as it would
reach a shopper's browser. It writes one JSON line per request:

    {"t": 1700000000.123, "kind": "read"|"write", "address": "127.0.54.3", "side": "old"|"new"|null,
     "status": 200|null, "error": null|"...", "id": 4711|null, "latency_ms": 3.2}

`id` is the order id of an acknowledged write (status 201): the demo checks each one exists in the
new database afterwards. `summarize` turns a file into counts by side and status and per-second
buckets (JSON on stdout). Bounded: at most --workers requests in flight, --max-duration overall.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labapp import CachingResolver, NameUnresolvable  # noqa: E402

MAX_DURATION_S = 4 * 3600


class Recorder:
    """Appends one JSON line per request; flushed per line so a report can read the file while it grows."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()
        self.counts: Counter = Counter()

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self.counts[(record["kind"], record["status"])] += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()


def one_request(options: argparse.Namespace, resolver: CachingResolver, kind: str, recorder: Recorder) -> None:
    started = time.time()
    record: dict = {"t": round(started, 6), "kind": kind, "address": None, "side": None, "status": None, "error": None,
                    "id": None, "latency_ms": None}
    try:
        record["address"] = resolver.address(options.url_host)
    except NameUnresolvable as error:
        record["error"] = f"dns: {error}"
    except Exception as error:  # noqa: BLE001 - every failure is a recorded outcome, never a dead worker
        record["error"] = f"dns: {error.__class__.__name__}: {error}"
    if record["address"] is not None and not ipaddress.ip_address(record["address"]).is_loopback:
        record["error"] = f"refused: {record['address']} is not a loopback address (the lab's traffic stays local)"
    elif record["address"] is not None:
        connection = http.client.HTTPConnection(record["address"], options.port, timeout=options.timeout)
        host_header = options.url_host if options.port == 80 else f"{options.url_host}:{options.port}"
        try:
            if kind == "write":
                body = json.dumps({"user_id": random.randint(1, options.users),
                                   "amount": f"{random.randint(100, 99999) / 100:.2f}"})
                connection.request("POST", "/orders", body=body,
                                   headers={"Host": host_header, "Content-Type": "application/json"})
            else:
                connection.request("GET", "/", headers={"Host": host_header})
            response = connection.getresponse()
            payload = response.read()
            record["status"] = response.status
            record["side"] = response.getheader("X-Side")
            if kind == "write" and response.status == 201:
                record["id"] = json.loads(payload).get("id")
            elif response.status >= 400:
                try:
                    record["error"] = str(json.loads(payload).get("error"))
                except (ValueError, AttributeError):
                    record["error"] = payload[:200].decode(errors="replace") or f"HTTP {response.status}"
        except (OSError, http.client.HTTPException, ValueError) as error:
            record["error"] = f"{error.__class__.__name__}: {error}"
        finally:
            connection.close()
    record["latency_ms"] = round((time.time() - started) * 1000, 2)
    recorder.write(record)


def run(options: argparse.Namespace) -> int:
    if options.duration is None and options.until_file is None:
        raise SystemExit("traffic: give --duration S or --until-file PATH (or both)")
    if options.rate <= 0 or not 0 <= options.write_ratio <= 1:
        raise SystemExit("traffic: --rate must be > 0 and --write-ratio within 0..1")
    duration = min(options.duration if options.duration is not None else options.max_duration, options.max_duration)
    until_file = Path(options.until_file) if options.until_file else None
    resolver = CachingResolver(options.resolver)
    recorder = Recorder(Path(options.out))
    in_flight = threading.BoundedSemaphore(options.workers)
    workers: list[threading.Thread] = []
    interval = 1.0 / options.rate
    started = time.monotonic()
    next_at = started
    sent = 0

    def finished() -> bool:
        return time.monotonic() - started >= duration or (until_file is not None and until_file.exists())

    def work(kind: str) -> None:
        try:
            one_request(options, resolver, kind, recorder)
        finally:
            in_flight.release()

    while not finished():
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.2))
            continue
        # Bounded: when every worker is busy the client slows down instead of piling up threads.
        if not in_flight.acquire(timeout=0.2):
            continue
        kind = "write" if random.random() < options.write_ratio else "read"
        worker = threading.Thread(target=work, args=(kind,), daemon=True)
        worker.start()
        workers.append(worker)
        sent += 1
        next_at = max(next_at + interval, time.monotonic() - 1.0)
        if len(workers) > 4 * options.workers:
            workers = [w for w in workers if w.is_alive()]
    for worker in workers:
        worker.join(timeout=options.timeout + 2)
    recorder.close()
    elapsed = time.monotonic() - started
    counts = {f"{kind}:{status}": count for (kind, status), count in sorted(recorder.counts.items(), key=str)}
    print(json.dumps({"requests": sent, "seconds": round(elapsed, 2), "rate": round(sent / elapsed, 1) if elapsed else 0,
                      "resolver_lookups": resolver.lookups, "stale_answers": resolver.stale_answers, "counts": counts, "out": str(options.out)}))
    return 0


def read_records(path: Path) -> list[dict]:
    records = []
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a killed writer
    return records


def summarize_records(records: list[dict]) -> dict:
    """Counts by side and status, failures, and per-second buckets of a traffic run."""
    records = sorted(records, key=lambda r: r["t"])
    reads = [r for r in records if r["kind"] == "read"]
    writes = [r for r in records if r["kind"] == "write"]
    failed_reads = [r for r in reads if r.get("status") != 200]
    acknowledged = [r for r in writes if r.get("status") == 201 and r.get("id") is not None]
    rejected = [r for r in writes if not (r.get("status") == 201 and r.get("id") is not None)]
    old = [r for r in records if r.get("side") == "old"]
    new = [r for r in records if r.get("side") == "new"]
    first_second = int(records[0]["t"]) if records else 0
    buckets: dict[int, Counter] = {}
    for record in records:
        bucket = buckets.setdefault(int(record["t"]), Counter())
        bucket[record.get("side") or "none"] += 1
        bucket[record["kind"] + "s"] += 1
        if record["kind"] == "read" and record.get("status") != 200:
            bucket["failed_reads"] += 1
        if record["kind"] == "write" and not (record.get("status") == 201 and record.get("id") is not None):
            bucket["rejected_writes"] += 1
    seconds = []
    for second in range(first_second, (int(records[-1]["t"]) + 1) if records else first_second):
        bucket = buckets.get(second, Counter())
        seconds.append({"t": second, "offset_s": second - first_second,
                        **{key: bucket.get(key, 0) for key in ("old", "new", "none", "reads", "writes",
                                                               "failed_reads", "rejected_writes")}})

    def span(items: list[dict]) -> dict:
        return {"first_t": items[0]["t"], "last_t": items[-1]["t"],
                "seconds": round(items[-1]["t"] - items[0]["t"], 3)} if items else {"first_t": None, "last_t": None,
                                                                                    "seconds": 0.0}

    latencies = sorted(r["latency_ms"] for r in records if r.get("latency_ms") is not None)
    return {
        "requests": len(records),
        "reads": len(reads),
        "writes": len(writes),
        "acknowledged_writes": len(acknowledged),
        "failed_reads": len(failed_reads),
        "rejected_writes": len(rejected),
        "by_side": dict(Counter(r.get("side") or "none" for r in records)),
        "by_status": dict(Counter(str(r.get("status")) for r in records)),
        "by_kind_status": {kind: dict(Counter(str(r.get("status")) for r in records if r["kind"] == kind))
                           for kind in ("read", "write")},
        "errors": dict(Counter(r["error"] for r in records if r.get("error")).most_common(10)),
        "first_t": records[0]["t"] if records else None,
        "last_t": records[-1]["t"] if records else None,
        "first_new_t": new[0]["t"] if new else None,
        "last_old_t": old[-1]["t"] if old else None,
        "failed_read_window": span(failed_reads),
        "rejected_write_window": span(rejected),
        "latency_ms": {"p50": latencies[len(latencies) // 2] if latencies else None,
                       "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
                       "max": latencies[-1] if latencies else None},
        "seconds": seconds,
    }


def summarize(options: argparse.Namespace) -> int:
    print(json.dumps(summarize_records(read_records(Path(options.file))), indent=1))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="traffic", description="The demo's traffic generator.")
    verbs = top.add_subparsers(dest="verb", required=True)
    command = verbs.add_parser("run")
    command.add_argument("--url-host", required=True, help="host name of the shop, e.g. www.shop.test")
    command.add_argument("--resolver", default=os.environ.get("LAB_RESOLVER") or None)
    command.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    command.add_argument("--until-file", default=None, help="stop when this file appears")
    command.add_argument("--max-duration", type=float, default=MAX_DURATION_S, help="hard stop (seconds)")
    command.add_argument("--rate", type=float, default=20.0, help="requests per second")
    command.add_argument("--write-ratio", type=float, default=0.3)
    command.add_argument("--out", required=True)
    command.add_argument("--port", type=int, default=80)
    command.add_argument("--users", type=int, default=1000, help="user ids for orders are drawn from 1..N")
    command.add_argument("--workers", type=int, default=32, help="most requests in flight at once")
    command.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    command = verbs.add_parser("summarize")
    command.add_argument("file")
    return top


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    return {"run": run, "summarize": summarize}[options.verb](options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
