"""The lab's moto patches http_keep_alive and werkzeug_request_log, on a real moto server.

A child process (the patches never leak into other tests) starts moto's ThreadedMotoServer twice
on free ports, once as moto ships it and once with the patches applied, and talks raw HTTP to
both over plain sockets, so that what is on the wire is what is checked: which connections stay
open, that each answer is the same bytes but for ``Connection`` (and the date and request id),
that a body the application did not read is drained exactly (the next request on the
connection is parsed where it starts), and that chunked bodies, HTTP/1.0, a client's
``Connection: close`` and idle connections keep werkzeug's close.
"""

from __future__ import annotations

import json

import pytest
from lab_moto import load_patch, run_in_moto_child

CHECK = r'''
import json, logging, re, socket, sys, time
sys.path.insert(0, sys.argv[1])
from moto.server import ThreadedMotoServer

SIGNED = ("Authorization: AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/s3/aws4_request, "
          "SignedHeaders=host, Signature=0\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(method, path, body=b"", version="HTTP/1.1", extra=""):
    head = f"{method} {path} {version}\r\nHost: s3.amazonaws.com\r\n{SIGNED}{extra}"
    if body is not None and "chunked" not in extra:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def read_answer(sock_file, head=False):
    status = sock_file.readline()
    if not status:
        return None
    headers = {}
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    # A HEAD answer names the object's length but carries no body.
    body = b"" if head else sock_file.read(int(headers.get("content-length", 0)))
    return status.decode().strip(), headers, body


def closed_after(sock, sock_file, wait=2.0):
    sock.settimeout(wait)
    try:
        return sock_file.read(1) == b""
    except OSError:
        return False


def comparable(answer):
    status, headers, body = answer
    kept = {name: value for name, value in headers.items()
            if name not in ("date", "last-modified", "connection", "x-amzn-requestid", "x-amz-request-id", "x-amz-id-2", "server")}
    text = re.sub(r"<LastModified>[^<]*</LastModified>", "", body.decode(errors="replace"))
    return status, kept, text.split("<RequestId>")[0]


def exchange(port, payloads, wait=2.0):
    """Every payload sent on one connection, one after the other; the answers, and whether the
    server closed after each."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock_file = sock.makefile("rb")
    answers = []
    for payload in payloads:
        try:
            sock.sendall(payload)
        except OSError:
            answers.append(None)
            break
        answer = read_answer(sock_file, head=payload.startswith(b"HEAD "))
        answers.append(answer)
        if answer is None or answer[1].get("connection", "").lower() == "close":
            break
    closed = closed_after(sock, sock_file, wait)
    sock.close()
    return answers, closed


def scenario(port):
    out = {}
    blob = bytes(range(256)) * 40
    # The bucket and the objects, each request on its own connection (works either way).
    for payload in (request("PUT", "/keepalive-check"),
                    request("PUT", "/keepalive-check/a%20key", blob),
                    request("PUT", "/keepalive-check/empty", b"")):
        answers, _ = exchange(port, [payload])
        assert answers[0][0].endswith("200 OK"), answers
    sequence = [request("GET", "/keepalive-check/a%20key"),
                request("HEAD", "/keepalive-check/a%20key", body=None),
                request("PUT", "/keepalive-check/b", b"x" * 70000),
                request("GET", "/keepalive-check/b"),
                request("GET", "/keepalive-check/missing"),
                # moto answers this without reading the body: the next request must still parse.
                request("POST", "/keepalive-check/a%20key?nosuchaction", b"y" * 3000),
                request("GET", "/keepalive-check?list-type=2")]
    # Well inside the patched server's idle timeout (1 s here): still open means kept.
    answers, closed = exchange(port, sequence, wait=0.3)
    out["sequence"] = [comparable(answer) if answer else None for answer in answers]
    out["sequence_answers"] = len([answer for answer in answers if answer])
    out["sequence_connection"] = [answer[1].get("connection") if answer else None for answer in answers]
    out["sequence_closed_at_end"] = closed
    # The same requests, each on a connection of its own (what moto answers without the patch).
    # The object b is written anew, so its answers are alike too.
    out["separate"] = [comparable(exchange(port, [payload], wait=0.1)[0][0]) for payload in sequence]
    out["b_size"] = len(answers[3][2]) if len(answers) > 3 and answers[3] else None
    for name, payload in (
            ("http10", request("GET", "/keepalive-check/a%20key", version="HTTP/1.0")),
            ("client_close", request("GET", "/keepalive-check/a%20key", extra="Connection: close\r\n")),
            ("chunked", request("PUT", "/keepalive-check/c", body=b"5\r\nhello\r\n0\r\n\r\n",
                                extra="Transfer-Encoding: chunked\r\n"))):
        answers, closed = exchange(port, [payload, request("GET", "/keepalive-check/a%20key")])
        out[name] = {"answers": len([answer for answer in answers if answer]), "closed": closed,
                     "connection": answers[0][1].get("connection") if answers[0] else None,
                     "status": answers[0][0] if answers[0] else None}
    # Both servers share moto's in-process backend: the next one starts from the same objects.
    exchange(port, [request("DELETE", "/keepalive-check/c")], wait=0.1)
    return out


def start():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, port


logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
results = {}
server, port = start()
results["moto"] = scenario(port)
server.stop()

from moto_patches import http_keep_alive, werkzeug_request_log
http_keep_alive.IDLE_TIMEOUT_S = 1.0
http_keep_alive.apply()
werkzeug_request_log.apply()
print("PATCHED-FROM-HERE", file=sys.stderr, flush=True)
server, port = start()
results["patched"] = scenario(port)
sock = socket.create_connection(("127.0.0.1", port))
sock_file = sock.makefile("rb")
sock.sendall(request("GET", "/keepalive-check/empty"))
read_answer(sock_file)
began = time.monotonic()
results["idle_closed"] = closed_after(sock, sock_file, wait=10.0)
results["idle_closed_after_s"] = time.monotonic() - began
server.stop()

# moto reads every body it is sent; an application that does not (an early error) is what the
# drain is for, on the same werkzeug server.
import threading
from werkzeug.serving import make_server


def application(environ, start_response):
    if environ["PATH_INFO"] == "/ignore":
        body = b"ignored"
    else:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


plain_port = free_port()
plain = make_server("127.0.0.1", plain_port, application, threaded=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
answers, closed = exchange(plain_port, [request("POST", "/ignore", b"z" * 300000),
                                        request("POST", "/echo", b"second body"),
                                        request("POST", "/ignore", b"q" * 10),
                                        request("POST", "/echo", b"third")], wait=0.3)
results["plain"] = {"bodies": [answer[2].decode() if answer else None for answer in answers],
                    "closed": closed}
plain.shutdown()
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def checked() -> tuple[dict, str]:
    completed = run_in_moto_child(CHECK)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def test_connections_are_kept_and_answers_are_moto_s_own_bytes(checked):
    results = checked[0]
    moto, patched = results["moto"], results["patched"]
    # Unpatched, werkzeug closes after the first answer; patched, all seven are served on one
    # connection, none says close, and the connection is still open after the last.
    assert moto["sequence_answers"] == 1 and moto["sequence_connection"][0] == "close"
    assert patched["sequence_answers"] == 7
    assert patched["sequence_connection"] == [None] * 7
    assert patched["sequence_closed_at_end"] is False
    # The same answers (a fresh connection each, unpatched) but for the connection header.
    assert patched["sequence"] == moto["separate"]
    assert patched["sequence"][0] == moto["sequence"][0]
    assert [answer[0] for answer in patched["sequence"]][:5] == ["HTTP/1.1 200 OK"] * 4 + ["HTTP/1.1 404 NOT FOUND"]
    assert patched["b_size"] == 70000


def test_unread_bodies_are_drained_so_the_next_request_parses(checked):
    results = checked[0]
    sequence = results["patched"]["sequence"]
    # The POST's body was not read by moto; the list after it is answered as a listing, not as
    # garbage made of the left-over body bytes.
    listing = sequence[6]
    assert listing[0] == "HTTP/1.1 200 OK"
    assert "<ListBucketResult" in listing[2] and "<Key>a key</Key>" in listing[2]
    # A body the application ignored (300,000 bytes) is read off the
    # connection, so the requests after it get their own answers.
    assert results["plain"] == {"bodies": ["ignored", "second body", "ignored", "third"], "closed": False}


def test_http10_client_close_chunked_and_idle_connections_are_closed(checked):
    results = checked[0]
    for name in ("http10", "client_close", "chunked"):
        assert results["patched"][name] == results["moto"][name], name
        assert results["patched"][name]["answers"] == 1 and results["patched"][name]["closed"] is True, name
        assert results["patched"][name]["connection"] == "close", name
    assert results["patched"]["chunked"]["status"] == "HTTP/1.1 200 OK"
    assert results["idle_closed"] is True
    assert 0.5 < results["idle_closed_after_s"] < 5.0


def test_request_lines_are_not_logged_once_patched_and_are_by_default(checked):
    stderr = checked[1]
    before, _marker, after = stderr.partition("PATCHED-FROM-HERE")
    assert '"GET /keepalive-check/a%20key HTTP/1.1" 200' in before
    assert "HTTP/1.1\" 200" not in after


def test_body_length_is_known_only_without_chunking_and_with_a_sane_length():
    patch = load_patch("http_keep_alive")
    assert patch.body_length({}) == 0
    assert patch.body_length({"Content-Length": " 12 "}) == 12
    assert patch.body_length({"Content-Length": "-1"}) is None
    assert patch.body_length({"Content-Length": "x"}) is None
    assert patch.body_length({"Transfer-Encoding": "gzip, chunked", "Content-Length": "5"}) is None
    assert patch.may_keep_alive("HTTP/1.1", {"Connection": "keep-alive"}) is True
    assert patch.may_keep_alive("HTTP/1.1", {"Connection": "Keep-Alive, Close"}) is False
    assert patch.may_keep_alive("HTTP/1.0", {}) is False
