"""Make every ELBv2 load balancer in moto a real HTTP reverse proxy on its lab address.

moto only records load balancers, listeners and target groups; nothing listens. The lab needs a
target registration or a DNS flip done through the API to really move traffic, so a poller in
labd's process starts one proxy per load balancer on ``<lab_address>:80`` (the address
elbv2_addresses.py gave it, which the lab DNS serves for its DNSName) and stops it when the load
balancer is deleted. Each request is forwarded to the targets registered *at that moment* in the
target groups the listeners' default actions forward to, round-robin, skipping a target that
refuses the connection, as an ALB skips an unhealthy one.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POLL_INTERVAL_S = 0.5
PROXY_PORT = 80
CONNECT_TIMEOUT_S = 2.0
# An ALB's default idle timeout is 60 s; a lab target that is slower than this is broken.
RESPONSE_TIMEOUT_S = 30.0
HOP_BY_HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                      "trailers", "transfer-encoding", "upgrade", "content-length"}
LOAD_BALANCER_HEADER = "X-Lab-Load-Balancer"

_started = threading.Event()
proxies_by_arn: dict[str, LoadBalancerProxy] = {}


def _log(message: str) -> None:
    print(f"elbv2_proxies: {message}", file=sys.stderr, flush=True)


def _is_loopback_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _backends():
    """(backend) for every account and region moto has created, without creating new ones."""
    from moto.elbv2.models import elbv2_backends

    # dict.items on moto's BackendDict: its own __getitem__ would create empty backends.
    for _account, account_backends in list(dict.items(elbv2_backends)):
        for _region, backend in list(dict.items(account_backends)):
            yield backend


def _forwarded_target_group_arns(load_balancer) -> list[str]:
    arns: list[str] = []
    for listener in list(load_balancer.listeners.values()):
        for action in list(listener.default_actions or []):
            data = getattr(action, "data", None) or {}
            if str(data.get("Type", getattr(action, "type", ""))).lower() != "forward":
                continue
            found = [data["TargetGroupArn"]] if data.get("TargetGroupArn") else [
                group.get("TargetGroupArn") for group in (data.get("ForwardConfig") or {}).get("TargetGroups", [])]
            arns.extend(arn for arn in found if arn and arn not in arns)
    return arns


def registered_targets(backend, load_balancer) -> list[tuple[str, int]]:
    """(address, port) of every registered target reachable by IP, in registration order."""
    targets: list[tuple[str, int]] = []
    for arn in _forwarded_target_group_arns(load_balancer):
        target_group = backend.target_groups.get(arn)
        if target_group is None:
            continue
        for target in list(target_group.targets.values()):
            identifier = str(target.get("Id", ""))
            # ip targets carry the address; an instance target can only be reached when its Id is one.
            # Loopback only: the lab's balancers never send traffic off the machine.
            if not _is_loopback_ip(identifier):
                continue
            try:
                port = int(target.get("Port") or target_group.port)
            except (TypeError, ValueError):
                continue
            if (identifier, port) not in targets:
                targets.append((identifier, port))
    return targets


class LoadBalancerProxy:
    """One listening proxy for one load balancer."""

    def __init__(self, backend, load_balancer) -> None:
        self.backend = backend
        self.arn = load_balancer.arn
        self.name = load_balancer.name
        self.address = load_balancer.lab_address
        self.turn = itertools.count()
        self.server = _ProxyServer((self.address, PROXY_PORT), _ProxyHandler)
        self.server.proxy = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.25},
                                       name=f"elb-proxy-{self.name}", daemon=True)
        self.thread.start()

    def current_targets(self) -> list[tuple[str, int]]:
        load_balancer = self.backend.load_balancers.get(self.arn)
        if load_balancer is None:
            return []
        # moto mutates these dicts from its request threads; a concurrent change only costs a retry.
        for _attempt in range(3):
            try:
                return registered_targets(self.backend, load_balancer)
            except RuntimeError:
                continue
        return []

    def targets_in_turn(self) -> list[tuple[str, int]]:
        targets = self.current_targets()
        if not targets:
            return []
        start = next(self.turn) % len(targets)
        return targets[start:] + targets[:start]

    def stop(self) -> None:
        try:
            self.server.shutdown()
            self.server.server_close()
        except Exception as error:  # noqa: BLE001 - stopping one proxy must not stop the poller
            _log(f"stopping {self.name}: {error}")


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    proxy: LoadBalancerProxy


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format, *args) -> None:  # noqa: A002 - signature of the base class
        return

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for name, value in headers or [("Content-Type", "text/plain")]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header(LOAD_BALANCER_HEADER, self.server.proxy.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else None
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP_HEADERS}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = str(PROXY_PORT)
        for address, port in proxy.targets_in_turn():
            connection = http.client.HTTPConnection(address, port, timeout=CONNECT_TIMEOUT_S)
            try:
                connection.connect()
            except OSError:
                connection.close()
                continue  # refused or unreachable: the next target, as an ALB skips an unhealthy one
            try:
                connection.sock.settimeout(RESPONSE_TIMEOUT_S)
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                passed = [(name, value) for name, value in response.getheaders()
                          if name.lower() not in HOP_BY_HOP_HEADERS]
                self._reply(response.status, payload, passed)
            except OSError as error:
                self._reply(502, f"target {address}:{port} failed: {error}".encode())
            except http.client.HTTPException as error:
                self._reply(502, f"target {address}:{port} answered badly: {error!r}".encode())
            finally:
                connection.close()
            return
        self._reply(503, b"no healthy targets")

    def _handle(self) -> None:
        try:
            self._forward()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # noqa: BLE001 - a broken target or client must never kill the proxy
            _log(f"{self.server.proxy.name}: {error!r}")
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def sync_proxies() -> None:
    """Start a proxy for every load balancer with a lab address; stop those whose balancer is gone."""
    wanted = {}
    for backend in _backends():
        for load_balancer in list(backend.load_balancers.values()):
            if getattr(load_balancer, "lab_address", None):
                wanted[load_balancer.arn] = (backend, load_balancer)
    for arn in [arn for arn in proxies_by_arn if arn not in wanted]:
        proxies_by_arn.pop(arn).stop()
    for arn, (backend, load_balancer) in wanted.items():
        if arn in proxies_by_arn:
            continue
        try:
            proxies_by_arn[arn] = LoadBalancerProxy(backend, load_balancer)
        except OSError as error:
            taken_by = [p.name for p in proxies_by_arn.values() if p.address == load_balancer.lab_address]
            if not getattr(load_balancer, "lab_proxy_warned", False):
                _log(f"cannot listen for {load_balancer.name} on {load_balancer.lab_address}:{PROXY_PORT}: {error}"
                     + (f" (address already served for {taken_by})" if taken_by else ""))
                load_balancer.lab_proxy_warned = True


def _poll_forever() -> None:
    while True:
        try:
            sync_proxies()
        except Exception as error:  # noqa: BLE001 - the poller outlives any one bad poll
            _log(f"poll failed: {error!r}")
        time.sleep(POLL_INTERVAL_S)


def apply() -> None:
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_poll_forever, name="elbv2-proxies", daemon=True).start()
