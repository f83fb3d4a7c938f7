"""Connection abuse (issue 19, item 4): slow headers, slow bodies, header limits, CL + TE.

One gateway with short `[server]` limits (1 s header and body timeouts, 8 KiB of headers) so
each timeout costs about a second. Raw sockets throughout: a client library would not send
what these tests send. The fd and memory ceiling under 1024 connections is a benchmark, not a
test: conformance/bench/abuse.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import time

import pytest

import s3util
from conftest import WRITER, WRITER_ACCOUNT, WRITER_ACCOUNT_KEY

LIMITS = """
[server]
header_read_timeout = "1s"
body_read_timeout = "1s"
max_header_bytes = "8KiB"

[[principals]]
access_key = "writeracct"
secret = { env = "WRITER_ACCOUNT_KEY" }
buckets = ["*"]
permissions = ["read", "list", "write", "delete"]
"""
CLOSE_WITHIN = 6.0  # seconds: the 1 s timeouts plus a loaded machine's slack


@pytest.fixture(scope="module")
def gw_limits(request, cistern_bin, tmp_path_factory, fs_data):
    from conftest import CisternFactory
    f = CisternFactory(cistern_bin, tmp_path_factory.mktemp("abuse"), request, fs_data)
    c = f.with_config("abuse", with_moto=False, extra=LIMITS,
                      env={"WRITER_ACCOUNT_KEY": WRITER_ACCOUNT_KEY})
    yield c
    f.close()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=CLOSE_WITHIN + 4)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s: socket.socket, limit: float = CLOSE_WITHIN + 4) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    t0 = time.monotonic()
    out = b""
    s.settimeout(limit)
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError(f"connection still open after {limit}s; got {out[:200]!r}")
        if not b:
            break
        out += b
    return out, time.monotonic() - t0


def status_of(raw: bytes) -> int | None:
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


def alive(gw) -> None:
    """The gateway still serves (no crash, no wedged accept loop)."""
    r = s3util.request(gw.endpoint, "GET", "/fsb/hello.txt", creds=WRITER)
    assert r.status == 200 and r.body == b"hello from the fs origin\n", r
    assert gw.proc.poll() is None


# ------------------------------------------------------------------------------------- headers


@pytest.mark.parametrize("first", [b"", b"PRI * HTTP/2.0\r\n"], ids=["nothing", "half h2 preface"])
def test_a_connection_that_sends_no_request_is_closed(gw_limits, first):
    for port in (gw_limits.s3_port, gw_limits.blob_port):
        s = connect(port)
        s.sendall(first)
        raw, took = read_until_closed(s)
        assert took < CLOSE_WITHIN, took
        s.close()
    alive(gw_limits)


def test_slowloris_headers_are_cut_off(gw_limits):
    """A byte of header every 0.2 s: the connection is closed at the header timeout, long
    before the headers could end."""
    s = connect(gw_limits.s3_port)
    s.sendall(b"GET /fsb/hello.txt HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    closed = False
    for b in b"X-Slow: " + b"a" * 200:
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        s.settimeout(0.2)
        try:
            if s.recv(65536) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
            break
    took = time.monotonic() - t0
    assert closed and took < CLOSE_WITHIN, f"closed={closed} after {took:.1f}s"
    s.close()
    alive(gw_limits)


def test_an_idle_keep_alive_connection_is_closed(gw_limits):
    s = connect(gw_limits.s3_port)
    s.sendall(b"GET /pub/open.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    first = s.recv(65536)
    assert status_of(first) == 200 and first.endswith(b"public bytes\n"), first
    raw, took = read_until_closed(s)
    assert raw == b"" and took < CLOSE_WITHIN, (raw[:200], took)
    s.close()


@pytest.mark.parametrize("shape", ["one 16 KiB header", "200 headers", "1 MiB header"])
def test_header_limits_answer_431_or_close(gw_limits, shape):
    if shape == "one 16 KiB header":
        extra = b"X-Big: " + b"a" * (16 << 10) + b"\r\n"
    elif shape == "200 headers":
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    else:
        extra = b"X-Huge: " + b"a" * (1 << 20) + b"\r\n"
    for port in (gw_limits.s3_port, gw_limits.blob_port):
        s = connect(port)
        try:
            s.sendall(b"GET /fsb/hello.txt HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: fine
        raw, took = read_until_closed(s)
        assert status_of(raw) in (431, None), raw[:300]
        assert b"hello from the fs origin" not in raw
        s.close()
    alive(gw_limits)


def test_headers_within_the_limit_are_served(gw_limits):
    """A 6 KiB header (under the 8 KiB limit) is an ordinary request."""
    hdrs = s3util.sign_headers("GET", f"http://{gw_limits.endpoint}/fsb/hello.txt",
                               {"X-Padding": "p" * 6000}, WRITER)
    r = s3util.request(gw_limits.endpoint, "GET", "/fsb/hello.txt", headers=hdrs)
    assert r.status == 200, r


def test_content_length_with_transfer_encoding_is_not_two_requests(gw_limits):
    """Both framings on one request (a smuggling attempt): hyper frames it by
    Transfer-Encoding alone (RFC 9112 §6.1) and closes the connection after answering, so the
    bytes Content-Length would have covered are never read as a second request."""
    s = connect(gw_limits.s3_port)
    smuggled = b"GET /pub/open.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    s.sendall(b"PUT /pub/smuggle.txt HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + body)
    raw, _ = read_until_closed(s)
    assert raw.count(b"HTTP/1.1 ") == 1, raw[:600]
    assert status_of(raw) in (400, 403), raw[:300]
    assert b"public bytes" not in raw
    s.close()
    # The reverse order of the two headers, the same.
    s = connect(gw_limits.s3_port)
    s.sendall(b"PUT /pub/smuggle.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    raw, _ = read_until_closed(s)
    assert raw.count(b"HTTP/1.1 ") == 1 and status_of(raw) in (400, 403), raw[:600]
    s.close()
    assert not (gw_limits.workdir / "smuggle.txt").exists()


# ---------------------------------------------------------------------------------------- bodies


def _send_slow_body(port: int, head: bytes, pieces: list[bytes], gap: float) -> tuple[bytes, float]:
    """Sends `head`, then `pieces` `gap` seconds apart, then stalls; returns what came back."""
    s = connect(port)
    s.sendall(head)
    for p in pieces:
        s.sendall(p)
        time.sleep(gap)
    raw, took = read_until_closed(s)
    s.close()
    return raw, took


def _s3_put_head(gw, path: str, length: int | None, body: bytes = b"") -> bytes:
    """A writer's signed PUT head; the payload hash is `body`'s (never checked when the body
    times out first)."""
    hdrs = {}
    if length is None:
        hdrs["Transfer-Encoding"] = "chunked"
    else:
        hdrs["Content-Length"] = str(length)
    signed = s3util.sign_headers("PUT", f"http://{gw.endpoint}{path}", hdrs, WRITER, body=body)
    lines = [f"PUT {path} HTTP/1.1", f"Host: {gw.endpoint}"]
    lines += [f"{k}: {v}" for k, v in signed.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_trickled_s3_upload_times_out_and_is_not_committed(gw_limits, fs_data, framing):
    key = f"abuse/slow-{framing}.bin"
    path = f"/fsb/{key}"
    if framing == "content-length":
        head, pieces = _s3_put_head(gw_limits, path, 1000), [b"x" * 10] * 5
    else:
        head, pieces = _s3_put_head(gw_limits, path, None), [b"a\r\n" + b"x" * 10 + b"\r\n"] * 5
    # Five pieces 0.3 s apart are within the timeout (it counts each wait, not the whole
    # body); then the client stops.
    raw, took = _send_slow_body(gw_limits.s3_port, head, pieces, 0.3)
    assert took < CLOSE_WITHIN, took
    assert status_of(raw) == 400 and b"<Code>RequestTimeout</Code>" in raw, raw[:500]
    assert not (fs_data.root / "fsb" / key).exists(), "a timed-out upload was committed"
    r = s3util.request(gw_limits.endpoint, "HEAD", path, creds=WRITER)
    assert r.status == 404, r
    alive(gw_limits)


def test_a_trickled_blob_upload_times_out_and_is_not_committed(gw_limits, fs_data):
    from test_blob import _shared_key
    key = "abuse/slow-blob.bin"
    url = f"http://127.0.0.1:{gw_limits.blob_port}/{WRITER_ACCOUNT}/fsb/{key}"
    date = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    hdrs = _shared_key("PUT", url, {"x-ms-version": "2025-11-05", "x-ms-date": date,
                                    "x-ms-blob-type": "BlockBlob", "Content-Length": "1000"},
                       WRITER_ACCOUNT, WRITER_ACCOUNT_KEY)
    lines = [f"PUT /{WRITER_ACCOUNT}/fsb/{key} HTTP/1.1", f"Host: 127.0.0.1:{gw_limits.blob_port}"]
    lines += [f"{k}: {v}" for k, v in hdrs.items() if k.lower() != "host"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    raw, took = _send_slow_body(gw_limits.blob_port, head, [b"y" * 10] * 5, 0.3)
    assert took < CLOSE_WITHIN, took
    assert status_of(raw) == 500, raw[:500]
    assert b"x-ms-error-code: OperationTimedOut" in raw.lower().replace(
        b"operationtimedout", b"OperationTimedOut"), raw[:500]
    assert not (fs_data.root / "fsb" / key).exists(), "a timed-out upload was committed"


def test_a_steady_slow_upload_is_not_cut(gw_limits, fs_data):
    """The body timeout is per wait: 3 s of pieces 0.4 s apart complete."""
    key = "abuse/steady.bin"
    path = f"/fsb/{key}"
    data = base64.b64encode(s3util.det_bytes("steady", 600))[:800]
    pieces = [data[i:i + 100] for i in range(0, len(data), 100)]
    s = connect(gw_limits.s3_port)
    s.sendall(_s3_put_head(gw_limits, path, len(data), data))
    for p in pieces:
        time.sleep(0.4)
        s.sendall(p)
    s.settimeout(10)
    raw = s.recv(65536)
    s.close()
    assert status_of(raw) == 200, raw[:500]
    try:
        assert (fs_data.root / "fsb" / key).read_bytes() == data
    finally:
        (fs_data.root / "fsb" / key).unlink(missing_ok=True)
