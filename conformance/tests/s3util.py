"""Small, dependency-light helpers for talking S3 over raw HTTP.

Everything here goes over HTTP only (DESIGN.md §7 invariant 6), so the same call can target moto
directly or Cistern, for differential comparison.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"


# --------------------------------------------------------------------------- credentials / URLs


@dataclass(frozen=True)
class Creds:
    access_key: str
    secret: str


def enc_key(key: str) -> str:
    """URI-encode an object key for a path-style URL the way the AWS SDKs do."""
    return quote(key, safe="/-_.~")


def obj_path(bucket: str, key: str = "") -> str:
    return "/" + bucket + "/" + enc_key(key) if key else "/" + bucket


def enc_query(params: Iterable[tuple[str, str | None]]) -> str:
    """AWS-style query encoding (RFC 3986 unreserved kept). A None value gives a bare name."""
    parts = []
    for k, v in params:
        if v is None:
            parts.append(quote(k, safe="-_.~"))
        else:
            parts.append(quote(k, safe="-_.~") + "=" + quote(v, safe="-_.~"))
    return "&".join(parts)


# --------------------------------------------------------------------------- raw HTTP


@dataclass
class Resp:
    status: int
    reason: str
    header_list: list[tuple[str, str]]
    body: bytes
    error: str | None = None  # set when the body was cut short

    @property
    def headers(self) -> dict[str, str]:
        d: dict[str, str] = {}
        for k, v in self.header_list:
            k = k.lower()
            d[k] = d[k] + ", " + v if k in d else v
        return d

    def h(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def error_code(self) -> str | None:
        return xml_error_code(self.body)

    def __repr__(self) -> str:  # short, for assertion messages
        b = self.body[:300]
        return f"<Resp {self.status} {self.headers!r} body[:300]={b!r} err={self.error}>"


def sign_headers(method: str, url: str, headers: dict[str, str] | None, creds: Creds,
                 body: bytes = b"", region: str = REGION) -> dict[str, str]:
    """SigV4-sign a request (header auth), returning the headers to send.

    The path in `url` is used verbatim for the canonical URI (S3 rules: no normalisation),
    so raw paths such as `/b/../x` are signed as sent.
    """
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    S3SigV4Auth(Credentials(creds.access_key, creds.secret), "s3", region).add_auth(req)
    return {k: v for k, v in req.headers.items()}


def request(endpoint: str, method: str, path: str, headers: dict[str, str] | None = None,
            creds: Creds | None = None, body: bytes = b"", timeout: float = 60.0) -> Resp:
    """Send one request with http.client (no path normalisation, no retries, no redirects).

    endpoint: "127.0.0.1:PORT". path: already-encoded path (+ "?query").
    """
    hdrs = dict(headers or {})
    if creds is not None:
        hdrs = sign_headers(method, f"http://{endpoint}{path}", hdrs, creds, body)
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        r = conn.getresponse()
        err = None
        try:
            data = r.read()
        except http.client.IncompleteRead as e:
            data, err = e.partial, f"IncompleteRead({len(e.partial)} bytes)"
        return Resp(r.status, r.reason, r.getheaders(), data, err)
    finally:
        conn.close()


def get(endpoint, bucket, key, creds, headers=None, query: str = "", method="GET") -> Resp:
    path = obj_path(bucket, key) + (("?" + query) if query else "")
    return request(endpoint, method, path, headers=headers, creds=creds)


# --------------------------------------------------------------------------- XML


def _strip_ns(tag: str) -> str:
    return tag.split("}", 1)[1] if "}" in tag else tag


def xml_root(body: bytes) -> ET.Element:
    root = ET.fromstring(body)
    for el in root.iter():
        el.tag = _strip_ns(el.tag)
    return root


def xml_error_code(body: bytes) -> str | None:
    try:
        root = xml_root(body)
    except ET.ParseError:
        return None
    if root.tag != "Error":
        return None
    c = root.find("Code")
    return c.text if c is not None else None


@dataclass
class Listing:
    keys: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    key_count: int | None = None
    next_token: str | None = None
    next_marker: str | None = None
    encoding_type: str | None = None
    max_keys: int | None = None
    sizes: list[int] = field(default_factory=list)
    etags: list[str] = field(default_factory=list)


def parse_listing(body: bytes) -> Listing:
    root = xml_root(body)
    assert root.tag == "ListBucketResult", body[:500]
    out = Listing()
    for c in root.findall("Contents"):
        out.keys.append(c.findtext("Key") or "")
        out.sizes.append(int(c.findtext("Size") or "0"))
        out.etags.append(c.findtext("ETag") or "")
    for p in root.findall("CommonPrefixes"):
        out.prefixes.append(p.findtext("Prefix") or "")
    out.is_truncated = (root.findtext("IsTruncated") or "false").lower() == "true"
    kc = root.findtext("KeyCount")
    out.key_count = int(kc) if kc is not None else None
    out.next_token = root.findtext("NextContinuationToken")
    out.next_marker = root.findtext("NextMarker")
    out.encoding_type = root.findtext("EncodingType")
    mk = root.findtext("MaxKeys")
    out.max_keys = int(mk) if mk is not None else None
    return out


# --------------------------------------------------------------------------- data


def det_bytes(seed: int | str, n: int) -> bytes:
    """Deterministic pseudo-random bytes (fast: ~300 MB/s)."""
    return random.Random(f"cistern-{seed}").randbytes(n) if n else b""


def write_det_file(path, seed: int | str, size: int, block: int = 16 << 20) -> str:
    """Write `size` deterministic bytes to path; return the sha256 hex digest."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        i = 0
        left = size
        while left:
            n = min(block, left)
            b = det_bytes(f"{seed}/{i}", n)
            f.write(b)
            h.update(b)
            left -= n
            i += 1
    return h.hexdigest()


def sha256_file(path, block: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(block)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------- Prometheus


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, _, labels, value = m.group(1), m.group(2), m.group(3), m.group(4)
        lab = {}
        if labels:
            for lm in _LABEL.finditer(labels):
                lab[lm.group(1)] = bytes(lm.group(2), "utf-8").decode("unicode_escape")
        try:
            out.append((name, lab, float(value)))
        except ValueError:
            pass
    return out


def metric_sum(samples, name: str, **labels) -> float:
    """Sum every sample of `name` whose labels include all of `labels`."""
    total = 0.0
    for n, lab, v in samples:
        if n != name:
            continue
        if all(lab.get(k) == str(want) for k, want in labels.items()):
            total += v
    return total


# --------------------------------------------------------------------------- signed streaming


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def streaming_put(endpoint: str, path: str, creds: Creds, data: bytes, chunk: int = 64 * 1024,
                  bad_chunk: int | None = None, region: str = REGION) -> Resp:
    """PUT with a SigV4 *signed* aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), as
    the AWS SDKs send it: each chunk signed, chained from the header signature. `bad_chunk`
    replaces that chunk's signature (the last one is the empty final chunk)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    scope = f"{day}/{region}/s3/aws4_request"
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    encoded_len = sum(len(f"{len(p):x};chunk-signature=") + 64 + 2 + len(p) + 2 for p in pieces)
    streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    signed = {"content-encoding": "aws-chunked", "content-length": str(encoded_len),
              "host": endpoint, "x-amz-content-sha256": streaming, "x-amz-date": amz_date,
              "x-amz-decoded-content-length": str(len(data))}
    names = sorted(signed)
    canonical = "\n".join(["PUT", path, "", *(f"{n}:{signed[n]}" for n in names), "",
                           ";".join(names), streaming])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret).encode(), day), region), "s3"),
                "aws4_request")
    prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    auth = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={prev}")
    empty = hashlib.sha256(b"").hexdigest()
    body = b""
    for i, p in enumerate(pieces):
        csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty,
                          hashlib.sha256(p).hexdigest()])
        sig = hmac.new(key, csts.encode(), hashlib.sha256).hexdigest()
        if i == bad_chunk:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        body += f"{len(p):x};chunk-signature={sig}\r\n".encode() + p + b"\r\n"
        prev = sig
    headers = {k: v for k, v in signed.items() if k not in ("host", "content-length")}
    headers["authorization"] = auth
    return request(endpoint, "PUT", path, headers=headers, body=body)


def unsigned_trailer_put(endpoint: str, path: str, creds: Creds, data: bytes,
                         chunk: int = 64 * 1024, crc: str | None = None) -> Resp:
    """PUT with an unsigned aws-chunked body and an `x-amz-checksum-crc32` trailer
    (STREAMING-UNSIGNED-PAYLOAD-TRAILER), as the AWS SDKs send uploads over HTTPS. `crc`
    replaces the right CRC32 (base64)."""
    import base64
    import zlib
    if crc is None:
        crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = b""
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        body += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    body += b"0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n".encode() + b"\r\n"
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    region = REGION
    scope = f"{day}/{region}/s3/aws4_request"
    payload = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    signed = {"content-encoding": "aws-chunked", "content-length": str(len(body)),
              "host": endpoint, "x-amz-content-sha256": payload, "x-amz-date": amz_date,
              "x-amz-decoded-content-length": str(len(data)),
              "x-amz-trailer": "x-amz-checksum-crc32"}
    names = sorted(signed)
    canonical = "\n".join(["PUT", path, "", *(f"{n}:{signed[n]}" for n in names), "",
                           ";".join(names), payload])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret).encode(), day), region), "s3"),
                "aws4_request")
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers = {k: v for k, v in signed.items() if k not in ("host", "content-length")}
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return request(endpoint, "PUT", path, headers=headers, body=body)
