"""The directory (fs) origin: bytes, ranges, conditionals, listing, path safety, TTL freshness."""

from __future__ import annotations

import email.utils
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

import s3util
from conftest import TESTER
from s3util import enc_query, parse_listing

MIB = 1 << 20


def expected_range(data: bytes, rng: str):
    """(status, content_range, body) per RFC 7233 / S3 for a single byte range."""
    size = len(data)
    a, b = rng.split("=", 1)[1].split("-")
    if a == "":
        n = int(b)
        if n == 0 or size == 0:
            return 416, None, None
        first, last = max(0, size - n), size - 1
    else:
        first = int(a)
        if first >= size:
            return 416, None, None
        last = min(int(b), size - 1) if b else size - 1
    return 206, f"bytes {first}-{last}/{size}", data[first:last + 1]


FS_KEYS = ["hello.txt", "empty", "chunky.bin", "dir/sub/deep.txt", "with space+plus.txt", "unicodé.txt"]


@pytest.mark.parametrize("key", FS_KEYS)
def test_fs_get_and_head(gw_fs_only, fs_data, key):
    data = fs_data.files["fsb/" + key]
    r = gw_fs_only.get("fsb", key)
    assert r.status == 200, r
    assert r.error is None, r
    assert r.body == data
    assert r.h("content-length") == str(len(data))
    assert r.h("etag") and r.h("etag").startswith('"') and r.h("etag").endswith('"'), r.headers
    assert r.h("x-cistern-cache") in ("hit", "miss", "partial", "bypass"), r.headers
    h = gw_fs_only.get("fsb", key, method="HEAD")
    assert h.status == 200, h
    assert h.body == b""
    assert h.h("content-length") == str(len(data))
    assert h.h("etag") == r.h("etag")
    assert h.h("last-modified") == r.h("last-modified")
    mtime = os.stat(fs_data.root / "fsb" / key).st_mtime
    lm = email.utils.parsedate_to_datetime(h.h("last-modified")).timestamp()
    assert abs(lm - int(mtime)) <= 1, (h.h("last-modified"), mtime)


CHUNKY_FS = 3 * MIB + 4321
FS_RANGES = [
    "bytes=0-0", "bytes=1048575-1048576", "bytes=1000000-3000000", "bytes=2097152-3145727",
    "bytes=3145728-", "bytes=7-", "bytes=-1", "bytes=-4321", "bytes=-4322",
    f"bytes=-{CHUNKY_FS + 1}", f"bytes=0-{CHUNKY_FS + 50}", f"bytes={CHUNKY_FS}-",
    f"bytes={CHUNKY_FS + 1}-{CHUNKY_FS + 9}", "bytes=-0",
]


@pytest.mark.parametrize("rng", FS_RANGES)
def test_fs_ranges(gw_fs_only, fs_data, rng):
    data = fs_data.files["fsb/chunky.bin"]
    status, cr, body = expected_range(data, rng)
    for attempt in ("cold-or-warm", "warm"):
        r = gw_fs_only.get("fsb", "chunky.bin", headers={"Range": rng})
        assert r.status == status, (attempt, r)
        if status == 206:
            assert r.h("content-range") == cr, (attempt, r.headers)
            assert r.h("content-length") == str(len(body))
            assert r.body == body, attempt
        else:
            assert r.error_code() == "InvalidRange", r


def test_fs_empty_object_range_416(gw_fs_only):
    r = gw_fs_only.get("fsb", "empty", headers={"Range": "bytes=0-"})
    assert r.status == 416, r


def test_fs_conditionals(gw_fs_only):
    h = gw_fs_only.get("fsb", "hello.txt", method="HEAD")
    etag = h.h("etag")
    lm = email.utils.parsedate_to_datetime(h.h("last-modified"))
    before = email.utils.format_datetime(lm - timedelta(days=1), usegmt=True)
    same = h.h("last-modified")
    cases = [
        ({"If-Match": etag}, 200), ({"If-Match": '"nope"'}, 412),
        ({"If-None-Match": etag}, 304), ({"If-None-Match": '"nope"'}, 200),
        ({"If-Modified-Since": same}, 304), ({"If-Modified-Since": before}, 200),
        ({"If-Unmodified-Since": same}, 200), ({"If-Unmodified-Since": before}, 412),
        ({"If-None-Match": etag, "Range": "bytes=0-3"}, 304),
        ({"If-Match": etag, "Range": "bytes=0-3"}, 206),
    ]
    for hdrs, want in cases:
        for method in ("GET", "HEAD"):
            r = gw_fs_only.get("fsb", "hello.txt", headers=hdrs, method=method)
            assert r.status == want, (hdrs, method, r)
            if want == 304:
                assert r.body == b""
            if want == 412 and method == "GET":
                assert r.error_code() == "PreconditionFailed", r


def test_fs_missing(gw_fs_only):
    r = gw_fs_only.get("fsb", "nope.txt")
    assert r.status == 404 and r.error_code() == "NoSuchKey", r
    r = gw_fs_only.get("fsb", "dir")  # a directory is not an object
    assert r.status == 404 and r.error_code() == "NoSuchKey", r
    r = gw_fs_only.get("priv2", "secret.txt")  # exists on disk, bucket not configured
    assert r.status == 404 and r.error_code() == "NoSuchBucket", r
    assert b"not exposed" not in r.body


def test_fs_list(gw_fs_only, fs_data):
    def lst(**params):
        q = enc_query(sorted({"list-type": "2", **params}.items()))
        r = s3util.request(gw_fs_only.endpoint, "GET", "/fsb?" + q, creds=TESTER)
        assert r.status == 200, r
        return parse_listing(r.body)

    want = sorted(k[len("fsb/"):] for k in fs_data.files if k.startswith("fsb/"))
    got = lst()
    assert got.keys == want, got
    d = lst(delimiter="/")
    assert "dir/" in d.prefixes and "hello.txt" in d.keys and "dir/sub/deep.txt" not in d.keys, d
    p = lst(prefix="dir/")
    assert p.keys == ["dir/sub/deep.txt"], p
    e = lst(prefix="with", **{"encoding-type": "url"})
    assert e.keys == ["with%20space%2Bplus.txt"], e
    m = lst(**{"max-keys": "2"})
    assert len(m.keys) == 2 and m.is_truncated and m.next_token, m
    m2 = lst(**{"max-keys": "2", "continuation-token": m.next_token})
    assert m2.keys and m2.keys[0] > m.keys[-1], (m, m2)


# --------------------------------------------------------------------------- path traversal


TRAVERSALS = [
    "/fsb/../../outside-secret.txt",
    "/fsb/../priv2/secret.txt",
    "/fsb/dir/sub/../../../../outside-secret.txt",
    "/fsb/%2e%2e/%2e%2e/outside-secret.txt",
    "/fsb/%2e%2e%2f%2e%2e%2foutside-secret.txt",
    "/fsb/..%2f..%2foutside-secret.txt",
    "/fsb/%2E%2E%2F%2E%2E%2Foutside-secret.txt",
    "/fsb/dir/..%2f..%2f..%2foutside-secret.txt",
    "/fsb/%2e%2e%2fpriv2%2fsecret.txt",
    "/fsb/../../../../../../../../etc/passwd",
    "/fsb/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/fsb//etc/passwd",
    "/fsb/%2fetc%2fpasswd",
    "/fsb/..",
    "/fsb/.",
    "/fsb/./hello.txt/..",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_path_traversal(gw_fs_only, fs_data, path, method):
    r = s3util.request(gw_fs_only.endpoint, method, path, creds=TESTER)
    assert 400 <= r.status < 500, r
    assert fs_data.outside_content not in r.body
    assert b"not exposed" not in r.body
    assert b"root:" not in r.body
    if method == "HEAD":
        # a HEAD must not reveal the size of a file outside the bucket either
        assert r.h("etag") is None, r.headers


@pytest.mark.parametrize("prefix", ["../", "../../", "..", "/", "//etc/", "../priv2/"])
def test_list_traversal(gw_fs_only, prefix):
    q = enc_query([("list-type", "2"), ("prefix", prefix)])
    r = s3util.request(gw_fs_only.endpoint, "GET", "/fsb?" + q, creds=TESTER)
    assert r.status < 500, r
    if r.status == 200:
        lst = parse_listing(r.body)
        assert lst.keys == [] and lst.prefixes == [], lst
    q = enc_query([("list-type", "2"), ("prefix", prefix), ("delimiter", "/")])
    r = s3util.request(gw_fs_only.endpoint, "GET", "/fsb?" + q, creds=TESTER)
    assert r.status < 500, r
    if r.status == 200:
        lst = parse_listing(r.body)
        assert lst.keys == [] and lst.prefixes == [], lst


def test_symlink_out_of_root_not_served(gw_fs_only, fs_data):
    link = fs_data.root / "fsb" / "link-out.txt"
    if not link.exists():
        link.symlink_to(fs_data.outside)
    try:
        r = gw_fs_only.get("fsb", "link-out.txt")
        assert fs_data.outside_content not in r.body, r
        assert r.status in (403, 404), r
    finally:
        link.unlink()


# --------------------------------------------------------------------------- public / anonymous


def test_public_read_bucket_allows_anonymous(gw_fs_only, fs_data):
    r = s3util.request(gw_fs_only.endpoint, "GET", "/pub/open.txt")
    assert r.status == 200, r
    assert r.body == fs_data.files["pub/open.txt"]
    r = s3util.request(gw_fs_only.endpoint, "GET", "/pub/open.txt", headers={"Range": "bytes=0-5"})
    assert r.status == 206 and r.body == fs_data.files["pub/open.txt"][:6], r


def test_anonymous_callers_cannot_choose_response_headers(gw_fs_only, fs_data):
    """As S3: response-* overrides need a signed request (else a public bucket would serve
    any object as text/html)."""
    r = s3util.request(gw_fs_only.endpoint, "GET", "/pub/open.txt?response-content-type=text%2Fhtml")
    assert r.status == 400 and r.error_code() == "InvalidRequest", r
    r = gw_fs_only.get("pub", "open.txt", query="response-content-type=text%2Fplain")
    assert r.status in (200, 403), r  # signed: allowed when the principal may read


def test_browser_form_posts_are_refused_before_reading_the_body(gw_fs_only):
    body = b"--x\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--x--\r\n"
    r = s3util.request(gw_fs_only.endpoint, "POST", "/pub",
                       headers={"Content-Type": "multipart/form-data; boundary=x"}, body=body)
    assert r.status == 501 and r.error_code() == "NotImplemented", r


def test_private_bucket_denies_anonymous(gw_fs_only):
    for path in ("/fsb/hello.txt", "/fsb?list-type=2"):
        r = s3util.request(gw_fs_only.endpoint, "GET", path)
        assert r.status == 403, r
        assert r.error_code() == "AccessDenied", r
        assert b"hello from the fs origin" not in r.body


def test_anonymous_denied_even_when_cached(gw_fs_only):
    assert gw_fs_only.get("fsb", "hello.txt").status == 200
    assert gw_fs_only.get("fsb", "hello.txt").status == 200
    r = s3util.request(gw_fs_only.endpoint, "GET", "/fsb/hello.txt")
    assert r.status == 403 and r.error_code() == "AccessDenied", r


# --------------------------------------------------------------------------- freshness


def test_ttl_rewrite_serves_new_version_in_full(gw_fs_only, fs_data):
    """fsb has ttl = 1s: after a rewrite and the TTL, the new bytes are served, never a mix."""
    path = fs_data.root / "fsb" / "ttl-rewrite.bin"
    v1 = s3util.det_bytes("ttl-v1", 2 * MIB + 11)
    v2 = s3util.det_bytes("ttl-v2", 3 * MIB + 99)
    path.write_bytes(v1)
    try:
        r = gw_fs_only.get("fsb", "ttl-rewrite.bin")
        assert r.status == 200 and r.body == v1, r
        r = gw_fs_only.get("fsb", "ttl-rewrite.bin", headers={"Range": "bytes=1048000-1049000"})
        assert r.body == v1[1048000:1049001]
        etag1 = r.h("etag")
        path.write_bytes(v2)
        time.sleep(2.0)
        r = gw_fs_only.get("fsb", "ttl-rewrite.bin")
        assert r.status == 200, r
        assert r.h("content-length") == str(len(v2))
        assert len(r.body) == len(v2) and r.body == v2, "stale or mixed bytes after TTL"
        assert r.h("etag") != etag1
        r = gw_fs_only.get("fsb", "ttl-rewrite.bin", headers={"Range": "bytes=1048000-3000000"})
        assert r.status == 206 and r.body == v2[1048000:3000001], r
        h = gw_fs_only.get("fsb", "ttl-rewrite.bin", method="HEAD")
        assert h.h("content-length") == str(len(v2))
    finally:
        path.unlink()


def _consistent(r, versions: list[bytes], rng: tuple[int, int] | None = None) -> bool:
    """True if r is an error, a cut stream, or exactly one version's bytes."""
    if r.error is not None or r.status >= 400:
        return True
    for v in versions:
        want = v if rng is None else v[rng[0]:rng[1] + 1]
        if r.body == want:
            return True
    return False


def test_rewrite_within_ttl_never_mixes(gw_fs_only, fs_data):
    """Chunk 0 of v1 is cached; the file changes; a full read must be all-v1, all-v2, or an error."""
    path = fs_data.root / "fsb" / "mix.bin"
    v1 = s3util.det_bytes("mix-v1", 3 * MIB + 5)
    v2 = s3util.det_bytes("mix-v2", 3 * MIB + 777)
    path.write_bytes(v1)
    try:
        r = gw_fs_only.get("fsb", "mix.bin", headers={"Range": "bytes=0-1048575"})
        assert r.status == 206 and r.body == v1[:MIB], r
        path.write_bytes(v2)
        r = gw_fs_only.get("fsb", "mix.bin")
        assert _consistent(r, [v1, v2]), (
            f"mixed response: status {r.status}, len {len(r.body)}, "
            f"first MiB is v1: {r.body[:MIB] == v1[:MIB]}, rest is v1: {r.body[MIB:] == v1[MIB:]}, "
            f"rest is v2: {r.body[MIB:] == v2[MIB:len(r.body)]}")
        time.sleep(2.0)
        r = gw_fs_only.get("fsb", "mix.bin")
        assert r.status == 200 and r.body == v2, "after the TTL the new version must be served"
    finally:
        path.unlink()


def test_shrink_within_ttl_never_serves_garbage(gw_fs_only, fs_data):
    path = fs_data.root / "fsb" / "shrink.bin"
    v1 = s3util.det_bytes("shrink-v1", 3 * MIB + 5)
    v2 = s3util.det_bytes("shrink-v2", MIB + 3)
    path.write_bytes(v1)
    try:
        r = gw_fs_only.get("fsb", "shrink.bin", headers={"Range": "bytes=0-10"})
        assert r.status == 206 and r.body == v1[:11], r
        path.write_bytes(v2)
        rng = (2 * MIB, 2 * MIB + 100000)
        r = gw_fs_only.get("fsb", "shrink.bin", headers={"Range": f"bytes={rng[0]}-{rng[1]}"})
        if r.status == 206 and r.error is None:
            assert r.body == v1[rng[0]:rng[1] + 1], "served bytes that are neither v1 nor v2"
        time.sleep(2.0)
        r = gw_fs_only.get("fsb", "shrink.bin", headers={"Range": f"bytes={rng[0]}-{rng[1]}"})
        assert r.status == 416, r
        r = gw_fs_only.get("fsb", "shrink.bin")
        assert r.status == 200 and r.body == v2, r
    finally:
        path.unlink()


def test_deleted_file_becomes_404_after_ttl(gw_fs_only, fs_data):
    path = fs_data.root / "fsb" / "deleted.txt"
    path.write_bytes(b"soon gone\n")
    r = gw_fs_only.get("fsb", "deleted.txt")
    assert r.status == 200, r
    path.unlink()
    time.sleep(2.0)
    r = gw_fs_only.get("fsb", "deleted.txt")
    assert r.status == 404 and r.error_code() == "NoSuchKey", r


def test_new_file_visible_after_ttl(gw_fs_only, fs_data):
    path = fs_data.root / "fsb" / "late.txt"
    r = gw_fs_only.get("fsb", "late.txt")
    assert r.status == 404, r
    path.write_bytes(b"arrived late\n")
    try:
        time.sleep(2.0)
        r = gw_fs_only.get("fsb", "late.txt")
        assert r.status == 200 and r.body == b"arrived late\n", r
    finally:
        path.unlink()


def test_mtime_in_past_last_modified(gw_fs_only, fs_data):
    path = fs_data.root / "fsb" / "old.txt"
    path.write_bytes(b"old\n")
    t = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone.utc).timestamp()
    os.utime(path, (t, t))
    try:
        h = gw_fs_only.get("fsb", "old.txt", method="HEAD")
        assert h.status == 200, h
        assert h.h("last-modified") == "Sat, 03 Feb 2001 04:05:06 GMT", h.headers
    finally:
        path.unlink()
