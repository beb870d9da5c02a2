"""Helpers of the lab_apps tests: HTTP, DNS and MySQL as a client sees them."""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.resolver
import pymysql

REPO_ROOT = Path(__file__).resolve().parents[3]
LABAPP = REPO_ROOT / "tests" / "lab" / "labapp"
TRAFFIC = REPO_ROOT / "tests" / "lab" / "traffic"


def free_listen_address() -> str:
    """An unused 127.0.57.x:808y, so parallel runs and reruns never share an app address."""
    for _attempt in range(50):
        address = f"127.0.57.{random.randint(10, 249)}"
        port = random.randint(8080, 8099)
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        return f"{address}:{port}"
    raise RuntimeError("no free 127.0.57.x:808x address")


def run_labapp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run([str(LABAPP), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and completed.returncode != 0:
        raise AssertionError(f"labapp {' '.join(args)} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: dict | str


def http_request(address: str, port: int, method: str = "GET", path: str = "/", body: dict | None = None,
                 host: str | None = None, timeout: float = 5) -> Response:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        headers = {"Host": host or address}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read().decode()
        try:
            parsed: dict | str = json.loads(raw)
        except ValueError:
            parsed = raw
        return Response(response.status, {name.lower(): value for name, value in response.getheaders()}, parsed)
    finally:
        connection.close()


def resolve(resolver_address: str, name: str) -> str:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [resolver_address]
    resolver.cache = None
    return sorted(rdata.address for rdata in resolver.resolve(name, "A"))[0]


def wait_until(check, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # noqa: BLE001 - keep polling, report the last reason
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def wait_for_response(request, accept, timeout: float, what: str, interval: float = 0.2) -> Response:
    """Repeat ``request()`` until ``accept(response)``; the accepted response."""
    def accepted():
        response = request()
        return response if accept(response) else None

    return wait_until(accepted, timeout=timeout, interval=interval, what=what)


def mysql_connect(url_or_host: str, database: str | None = None, port: int = 3306, user: str = "lab",
                  password: str = "lab") -> pymysql.connections.Connection:
    from urllib.parse import urlparse

    if url_or_host.startswith("mysql://"):
        parsed = urlparse(url_or_host)
        return pymysql.connect(host=parsed.hostname, port=parsed.port or 3306, user=parsed.username,
                               password=parsed.password, database=database, autocommit=True)
    return pymysql.connect(host=url_or_host, port=port, user=user, password=password, database=database, autocommit=True)


@dataclass
class LabLoadBalancer:
    name: str
    arn: str
    dns_name: str
    hosted_zone_id: str
    target_group_arn: str
    address: str


def as_target(listen: str) -> dict:
    address, _sep, port = listen.rpartition(":")
    return {"Id": address, "Port": int(port)}


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def upsert_a(route53, zone_id: str, name: str, address: str, ttl: int) -> None:
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": name, "Type": "A", "TTL": ttl,
                                                  "ResourceRecords": [{"Value": address}]}}]})
