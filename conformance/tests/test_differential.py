"""Differential tests: the same request to moto directly and through Cistern must agree.

moto's answers are also checked against the known object bytes, so a quirk of moto shows up as a
failure on the "moto" side of the assertion rather than being silently mirrored.
"""

from __future__ import annotations

import email.utils
from datetime import timedelta

import pytest

import s3util
from conftest import LIST_KEYS, SELFTEST, SPECIAL_KEYS, TESTER
from s3util import enc_query, parse_listing

MIB = 1 << 20
CHUNKY = 3 * MIB + 12345  # size of chunky.bin (chunk size is 1 MiB in the shared gateway)

# Headers that must be byte-identical between moto and Cistern on 200/206 responses.
OBJECT_HEADERS = [
    "etag", "content-length", "content-range", "last-modified", "content-type",
    "cache-control", "content-disposition", "content-language", "content-encoding", "expires",
    "x-amz-meta-color", "x-amz-meta-x-y",
]


def both(gw, moto, method, bucket, key, headers=None, query=""):
    m = s3util.get(moto.endpoint, bucket, key, moto.creds, headers=headers, query=query,
                   method=method)
    c = s3util.get(gw.endpoint, bucket, key, TESTER, headers=headers, query=query, method=method)
    return m, c


def assert_same(m, c, *, expect_body: bytes | None = None, method="GET"):
    assert c.error is None, f"cistern body cut short: {c!r}"
    assert c.status == m.status, f"status: moto {m!r}\ncistern {c!r}"
    if m.status in (200, 206):
        if method == "GET":
            if expect_body is not None:
                assert m.body == expect_body, "moto itself returned unexpected bytes"
            assert len(c.body) == len(m.body), f"body length: moto {len(m.body)} cistern {len(c.body)}"
            assert c.body == m.body, "body bytes differ"
        for h in OBJECT_HEADERS:
            assert c.h(h) == m.h(h), f"header {h}: moto {m.h(h)!r} cistern {c.h(h)!r}"
        if not SELFTEST:
            assert c.h("x-cistern-cache") in ("hit", "miss", "partial", "bypass"), c.headers
    elif m.status == 304:
        assert c.body == b""
        for h in ("etag", "last-modified"):
            if m.h(h) is not None:
                assert c.h(h) == m.h(h), f"304 header {h}: moto {m.h(h)!r} cistern {c.h(h)!r}"
    elif method == "GET":
        assert c.error_code() == m.error_code(), f"error code: moto {m!r}\ncistern {c!r}"


# --------------------------------------------------------------------------- GET / HEAD


OBJECT_KEYS = ["small.txt", "empty", "chunky.bin", "exact2m.bin", "meta.html", "big40.bin"] + SPECIAL_KEYS


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("key", OBJECT_KEYS)
def test_whole_object(gw, moto, moto_data, key, method):
    m, c = both(gw, moto, method, "motob", key)
    assert m.status == 200, m
    assert_same(m, c, expect_body=moto_data.objects[key], method=method)


def _s(n):
    return str(n)


RANGES_CHUNKY = [
    "bytes=0-0",
    "bytes=0-1048575",             # exactly chunk 0
    "bytes=1048575-1048576",       # straddles chunks 0|1
    "bytes=1000000-2200000",       # spans 3 chunks
    "bytes=1048576-2097151",       # exactly chunk 1
    "bytes=3145728-",              # open range, last (partial) chunk
    "bytes=100-",                  # open range from inside chunk 0
    "bytes=-1",
    "bytes=-12345",                # exactly the last partial chunk
    "bytes=-12346",                # suffix crossing into chunk 2
    f"bytes=-{CHUNKY + 100}",      # suffix longer than the object: whole object, 206
    f"bytes={CHUNKY - 1}-{CHUNKY - 1}",
    f"bytes=0-{CHUNKY + 1000}",    # end past the object: clamped
    f"bytes={CHUNKY}-",            # 416
    f"bytes={CHUNKY + 5}-{CHUNKY + 10}",  # 416
    # Known deviation (README, compatibility matrix): S3 ignores an invalid or multi-range
    # Range header and sends the whole object. Cistern drops such a header where no signature
    # covers it (test_auth: presigned URLs); botocore signs `range`, and s3s rejects it with 400
    # InvalidArgument while parsing, after the signature covering it was checked.
    # strict=True: the day this is fixed, the marker must go.
    pytest.param("bytes=5-2", marks=pytest.mark.xfail(not SELFTEST, strict=True, reason="s3s rejects invalid Range (400)")),
    pytest.param("bytes=0-1,5-6", marks=pytest.mark.xfail(not SELFTEST, strict=True, reason="s3s rejects multi-range (400)")),
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("rng", RANGES_CHUNKY)
def test_range_chunky(gw, moto, moto_data, rng, method):
    m, c = both(gw, moto, method, "motob", "chunky.bin", headers={"Range": rng})
    _check_moto_range(m, moto_data.objects["chunky.bin"], rng, method)
    assert_same(m, c, method=method)


@pytest.mark.parametrize("rng", ["bytes=2097151-", "bytes=1048576-2097151", "bytes=2097152-",
                                 "bytes=-1048577", "bytes=1048575-1048575"])
def test_range_exact_chunk_multiple(gw, moto, moto_data, rng):
    m, c = both(gw, moto, "GET", "motob", "exact2m.bin", headers={"Range": rng})
    _check_moto_range(m, moto_data.objects["exact2m.bin"], rng, "GET")
    assert_same(m, c)


@pytest.mark.parametrize("rng", ["bytes=0-", "bytes=0-0", "bytes=-1"])
def test_range_on_empty_object(gw, moto, rng):
    m, c = both(gw, moto, "GET", "motob", "empty", headers={"Range": rng})
    if rng == "bytes=-1":
        # moto answers 200; RFC 7233 says a suffix range of an empty representation is
        # unsatisfiable (416). Accept either, but nothing else.
        assert c.status in (200, 416), c
        assert c.body == b"" or c.error_code() == "InvalidRange", c
        return
    assert m.status == 416, m
    assert_same(m, c)


@pytest.mark.parametrize("rng", ["bytes=0-3", "bytes=-4", "bytes=6-"])
def test_range_on_special_keys(gw, moto, moto_data, rng):
    for key in SPECIAL_KEYS:
        m, c = both(gw, moto, "GET", "motob", key, headers={"Range": rng})
        assert m.status == 206, (key, m)
        assert_same(m, c)


def test_range_on_multipart_object(gw, moto, moto_data):
    for rng in ["bytes=8388600-8388700", "bytes=-5000000", "bytes=41000000-"]:
        m, c = both(gw, moto, "GET", "motob", "big40.bin", headers={"Range": rng})
        _check_moto_range(m, moto_data.objects["big40.bin"], rng, "GET")
        assert_same(m, c)


def _check_moto_range(m, data: bytes, rng: str, method: str):
    """Ground truth for single ranges (RFC 7233), so a moto quirk cannot pass unnoticed."""
    spec = rng.split("=", 1)[1]
    size = len(data)
    if "," in spec:
        assert m.status == 200
        return
    a, b = spec.split("-")
    if a == "":
        n = int(b)
        if n == 0 or size == 0:
            assert m.status == 416
            return
        first, last = max(0, size - n), size - 1
    else:
        first = int(a)
        last = min(int(b), size - 1) if b else size - 1
        if b and int(b) < first:
            assert m.status == 200
            return
        if first >= size:
            assert m.status == 416, m
            return
    assert m.status == 206, m
    assert m.h("content-range") == f"bytes {first}-{last}/{size}", m
    if method == "GET":
        assert m.body == data[first:last + 1]


# --------------------------------------------------------------------------- conditionals


def _http_date(dt) -> str:
    return email.utils.format_datetime(dt, usegmt=True)


@pytest.fixture(scope="module")
def small_meta(moto):
    r = s3util.get(moto.endpoint, "motob", "small.txt", moto.creds, method="HEAD")
    lm = email.utils.parsedate_to_datetime(r.h("last-modified"))
    return {"etag": r.h("etag"), "lm": lm}


CONDITIONS = {
    "if-match-true": lambda e, lm: {"If-Match": e},
    "if-match-false": lambda e, lm: {"If-Match": '"0123456789abcdef0123456789abcdef"'},
    "if-none-match-true": lambda e, lm: {"If-None-Match": '"0123456789abcdef0123456789abcdef"'},
    "if-none-match-false": lambda e, lm: {"If-None-Match": e},
    "if-modified-since-same": lambda e, lm: {"If-Modified-Since": _http_date(lm)},
    "if-modified-since-earlier": lambda e, lm: {"If-Modified-Since": _http_date(lm - timedelta(days=1))},
    "if-unmodified-since-same": lambda e, lm: {"If-Unmodified-Since": _http_date(lm)},
    "if-unmodified-since-earlier": lambda e, lm: {"If-Unmodified-Since": _http_date(lm - timedelta(days=1))},
    "if-match-false+ims-earlier": lambda e, lm: {
        "If-Match": '"0123456789abcdef0123456789abcdef"',
        "If-Modified-Since": _http_date(lm - timedelta(days=1))},
    "if-none-match-false+ims-earlier": lambda e, lm: {
        "If-None-Match": e, "If-Modified-Since": _http_date(lm - timedelta(days=1))},
    "if-match-true+ius-same": lambda e, lm: {"If-Match": e, "If-Unmodified-Since": _http_date(lm)},
    "if-match-true+range": lambda e, lm: {"If-Match": e, "Range": "bytes=2-5"},
    "if-none-match-false+range": lambda e, lm: {"If-None-Match": e, "Range": "bytes=2-5"},
    "if-match-false+range": lambda e, lm: {"If-Match": '"ffff"', "Range": "bytes=2-5"},
}
EXPECTED_CONDITION_STATUS = {
    "if-match-true": 200, "if-match-false": 412, "if-none-match-true": 200,
    "if-none-match-false": 304, "if-modified-since-same": 304, "if-modified-since-earlier": 200,
    "if-unmodified-since-same": 200, "if-unmodified-since-earlier": 412,
    "if-match-false+ims-earlier": 412, "if-none-match-false+ims-earlier": 304,
    "if-match-true+ius-same": 200, "if-match-true+range": 206, "if-none-match-false+range": 304,
    "if-match-false+range": 412,
}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("cond", sorted(CONDITIONS))
def test_conditional(gw, moto, small_meta, cond, method):
    hdrs = CONDITIONS[cond](small_meta["etag"], small_meta["lm"])
    m, c = both(gw, moto, method, "motob", "small.txt", headers=hdrs)
    assert m.status == EXPECTED_CONDITION_STATUS[cond], f"moto: {m!r}"
    assert_same(m, c, method=method)
    if c.status in (412,) and method == "GET":
        assert c.error_code() == "PreconditionFailed"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.skipif(SELFTEST, reason="moto deviates from S3 here")
def test_conditional_if_match_true_ius_false_is_200(gw, small_meta, method):
    """S3 documents: If-Match true and If-Unmodified-Since false -> 200 (RFC 7232 §3.4).
    moto answers 412 here, so this one is checked against the S3 spec, not moto."""
    e, lm = small_meta["etag"], small_meta["lm"]
    c = gw.get("motob", "small.txt", method=method,
               headers={"If-Match": e, "If-Unmodified-Since": _http_date(lm - timedelta(days=1))})
    assert c.status == 200, c


def test_conditional_on_cached_object(gw, moto, small_meta):
    """Conditionals are answered from metadata: same answers once the object is cached."""
    gw.get("motob", "small.txt")
    gw.get("motob", "small.txt")
    for cond in ("if-none-match-false", "if-match-false", "if-modified-since-same"):
        hdrs = CONDITIONS[cond](small_meta["etag"], small_meta["lm"])
        m, c = both(gw, moto, "GET", "motob", "small.txt", headers=hdrs)
        assert_same(m, c)


# --------------------------------------------------------------------------- overrides


OVERRIDES = [
    ("response-content-type", "text/x-override; charset=latin-1"),
    ("response-content-disposition", 'attachment; filename="x y.txt"'),
    ("response-cache-control", "no-store"),
    ("response-content-language", "de-CH"),
    ("response-expires", "Thu, 01 Dec 1994 16:00:00 GMT"),
    ("response-content-encoding", "identity"),
]


@pytest.mark.parametrize("param,value", OVERRIDES)
def test_response_override(gw, moto, param, value):
    q = enc_query([(param, value)])
    for key in ("meta.html", "chunky.bin"):
        m, c = both(gw, moto, "GET", "motob", key, query=q, headers={"Range": "bytes=0-99"})
        assert m.status == 206
        assert_same(m, c)
        hdr = {"response-content-type": "content-type"}.get(param, param[len("response-"):])
        assert c.h(hdr) == value


def test_all_overrides_together(gw, moto):
    q = enc_query(OVERRIDES)
    m, c = both(gw, moto, "GET", "motob", "meta.html", query=q)
    assert m.status == 200
    assert_same(m, c)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_key(gw, moto, method):
    m, c = both(gw, moto, method, "motob", "no/such/key.txt")
    assert m.status == 404
    assert_same(m, c, method=method)
    if method == "GET":
        assert c.error_code() == "NoSuchKey", c


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_bucket(gw, method):
    c = gw.get("no-such-bucket-xyz", "k.txt", method=method)
    assert c.status == 404, c
    if method == "GET":
        assert c.error_code() == "NoSuchBucket", c
    c = s3util.request(gw.endpoint, "GET", "/no-such-bucket-xyz?list-type=2", creds=TESTER)
    assert c.status == 404 and c.error_code() == "NoSuchBucket", c


@pytest.mark.skipif(SELFTEST, reason="gateway-only")
def test_origin_bucket_not_exposed(gw, moto):
    """motob-other exists at the origin but is not configured in Cistern."""
    c = gw.get("motob-other", "x.txt")
    assert c.status == 404 and c.error_code() == "NoSuchBucket", c


# --------------------------------------------------------------------------- listings


def list_pages(endpoint, creds, bucket, params: dict, v2: bool = True, limit: int = 50):
    """Follow pagination; return a list of Listing pages (raw XML parsed)."""
    pages = []
    token = None
    marker = None
    for _ in range(limit):
        p = dict(params)
        if v2:
            p["list-type"] = "2"
            if token:
                p["continuation-token"] = token
        elif marker:
            p["marker"] = marker
        path = f"/{bucket}?" + enc_query(sorted(p.items()))
        r = s3util.request(endpoint, "GET", path, creds=creds)
        assert r.status == 200, r
        page = parse_listing(r.body)
        pages.append(page)
        if not page.is_truncated:
            break
        if v2:
            token = page.next_token
            assert token, "truncated V2 page without NextContinuationToken"
        else:
            marker = page.next_marker or (page.keys[-1] if page.keys else None)
            if page.next_marker is None and params.get("delimiter"):
                pytest.fail("truncated V1 page with delimiter but no NextMarker")
            assert marker
    return pages


def _summary(pages, params: dict):
    """What must agree between moto and Cistern, page by page.

    With encoding-type=url, keys/prefixes/markers are compared decoded (moto leaves V1
    CommonPrefixes unencoded where S3 encodes them; test_listing_*_encoded checks the encoding).
    NextMarker is compared only with a delimiter: S3 returns it only then (moto returns a bogus
    value without one)."""
    from urllib.parse import unquote
    dec = unquote if params.get("encoding-type") == "url" else (lambda x: x)
    out = []
    for p in pages:
        d = dict(keys=[dec(k) for k in p.keys], prefixes=[dec(x) for x in p.prefixes],
                 truncated=p.is_truncated, key_count=p.key_count, sizes=p.sizes, etags=p.etags,
                 encoding_type=p.encoding_type, max_keys=p.max_keys)
        if params.get("delimiter"):
            d["next_marker"] = dec(p.next_marker) if p.next_marker is not None else None
        out.append(d)
    return out


LIST_CASES = {
    "prefix": {"prefix": "list/"},
    "prefix-delim": {"prefix": "list/", "delimiter": "/"},
    "root-delim": {"delimiter": "/"},
    "paged-5": {"prefix": "list/a/", "max-keys": "5"},
    "paged-delim-2": {"prefix": "list/", "delimiter": "/", "max-keys": "2"},
    "max-keys-0": {"prefix": "list/", "max-keys": "0"},
    "max-keys-1": {"prefix": "list/b/", "max-keys": "1"},
    "start-after": {"prefix": "list/", "start-after": "list/b/y.txt"},
    "start-after-paged": {"prefix": "list/", "start-after": "list/a/05.txt", "max-keys": "4"},
    "encoding-url": {"prefix": "list/", "encoding-type": "url"},
    "encoding-url-delim": {"prefix": "list/", "delimiter": "/", "encoding-type": "url"},
    "encoding-url-special": {"encoding-type": "url"},
    "unicode-prefix": {"prefix": "unicodé/"},
    "unicode-prefix-delim": {"prefix": "list/é/", "delimiter": "/"},
    "special-prefix-plus": {"prefix": "list/plus+"},
    "special-prefix-percent": {"prefix": "list/100%"},
    "special-prefix-space": {"prefix": "list/d e/"},
    "nothing": {"prefix": "nothing-here/"},
    "delim-not-slash": {"prefix": "list/a/", "delimiter": "5"},
    "all-paged-7": {"max-keys": "7"},
}
LIST_V1_CASES = {
    "prefix": {"prefix": "list/"},
    "marker": {"prefix": "list/", "marker": "list/a/05.txt"},
    "paged-delim-3": {"prefix": "list/", "delimiter": "/", "max-keys": "3"},
    "paged-4": {"prefix": "list/a/", "max-keys": "4"},
    "max-keys-0": {"prefix": "list/", "max-keys": "0"},
    "encoding-url": {"prefix": "list/", "encoding-type": "url", "delimiter": "/"},
    "root-delim": {"delimiter": "/"},
}


@pytest.mark.parametrize("case", sorted(LIST_CASES))
def test_list_objects_v2(gw, moto, moto_data, case):
    params = LIST_CASES[case]
    mp = list_pages(moto.endpoint, moto.creds, "motob", params, v2=True)
    cp = list_pages(gw.endpoint, TESTER, "motob", params, v2=True)
    _check_moto_listing(mp, moto_data, params)
    assert _summary(cp, params) == _summary(mp, params)


@pytest.mark.parametrize("case", sorted(LIST_V1_CASES))
def test_list_objects_v1(gw, moto, moto_data, case):
    params = LIST_V1_CASES[case]
    mp = list_pages(moto.endpoint, moto.creds, "motob", params, v2=False)
    cp = list_pages(gw.endpoint, TESTER, "motob", params, v2=False)
    _check_moto_listing(mp, moto_data, params)
    assert _summary(cp, params) == _summary(mp, params)


def _check_moto_listing(pages, moto_data, params):
    """Ground truth: the union of keys+prefixes across pages is what S3 semantics give."""
    from urllib.parse import unquote
    prefix = params.get("prefix", "")
    delim = params.get("delimiter")
    after = params.get("start-after") or params.get("marker") or ""
    if params.get("max-keys") == "0":
        assert pages[0].keys == [] and pages[0].prefixes == []
        return
    keys, prefixes = [], set()
    for k in sorted(moto_data.objects):
        if not k.startswith(prefix) or k <= after:
            continue
        rest = k[len(prefix):]
        if delim and delim in rest:
            prefixes.add(prefix + rest[:rest.index(delim) + len(delim)])
        else:
            keys.append(k)
    url = params.get("encoding-type") == "url"
    dec = (lambda s: unquote(s)) if url else (lambda s: s)
    got_keys = [dec(k) for p in pages for k in p.keys]
    got_prefixes = {dec(x) for p in pages for x in p.prefixes}
    assert got_keys == keys, "moto listing keys differ from S3 semantics"
    if delim:
        # With start-after a prefix may be re-reported; compare sets only.
        assert got_prefixes == prefixes, "moto listing prefixes differ from S3 semantics"


def test_listing_keys_are_url_encoded(gw, moto_data):
    """boto3 asks listings with encoding-type=url: special keys must come back encoded."""
    pages = list_pages(gw.endpoint, TESTER, "motob", {"encoding-type": "url"}, v2=True)
    keys = [k for p in pages for k in p.keys]
    assert "with%20space.txt" in keys, keys
    assert "plus%2Bsign%2B.txt" in keys, keys


@pytest.mark.skipif(SELFTEST, reason="moto leaves V1 CommonPrefixes unencoded")
def test_listing_v1_keys_and_prefixes_are_url_encoded(gw, moto_data):
    q = enc_query([("delimiter", "/"), ("encoding-type", "url"), ("prefix", "list/")])
    r = s3util.request(gw.endpoint, "GET", "/motob?" + q, creds=TESTER)
    assert r.status == 200, r
    lst = parse_listing(r.body)
    assert lst.encoding_type == "url"
    assert "list/d%20e/" in lst.prefixes and "list/plus%2B/" in lst.prefixes, lst.prefixes
    assert "list/%C3%A9/" in lst.prefixes, lst.prefixes


def test_boto3_list_paginator(gw, moto_data):
    s3 = gw.client()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="motob", PaginationConfig={"PageSize": 6}):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert keys == sorted(moto_data.objects), set(keys) ^ set(moto_data.objects)
    assert set(LIST_KEYS) <= set(keys)


# --------------------------------------------------------------------------- partNumber
# moto does not implement partNumber reads (GET ignores it; HEAD answers the part's length and
# ETag without saying where the part lies), so these are checked against S3's documented
# behaviour rather than against moto.


def test_part_number_on_moto_is_a_clear_error_not_a_guess(gw, moto_data):
    for method in ("GET", "HEAD"):
        r = s3util.get(gw.endpoint, "motob", "big40.bin", TESTER, query="partNumber=2", method=method)
        assert r.status == 501, r
        if method == "GET":
            assert r.error_code() == "NotImplemented", r


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_part_number_on_a_single_part_object(gw, fs_data, method):
    data = fs_data.files["fsb/chunky.bin"]
    r = s3util.get(gw.endpoint, "fsb", "chunky.bin", TESTER, query="partNumber=1", method=method)
    assert r.status == 206, r
    assert r.h("content-range") == f"bytes 0-{len(data) - 1}/{len(data)}", r
    assert r.h("content-length") == str(len(data)), r
    if method == "GET":
        assert r.body == data
    r = s3util.get(gw.endpoint, "fsb", "chunky.bin", TESTER, query="partNumber=2", method=method)
    assert r.status == 416, r
    if method == "GET":
        assert r.error_code() == "InvalidPartNumber", r


def test_part_number_with_range_is_refused(gw, fs_data):
    r = s3util.get(gw.endpoint, "fsb", "chunky.bin", TESTER, query="partNumber=1",
                   headers={"Range": "bytes=0-1"})
    assert r.status == 400, r
    assert r.error_code() == "InvalidRequest", r
