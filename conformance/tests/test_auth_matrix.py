"""Negative authentication and authorization on cached objects, both dialects (issue 19, item 3).

Each object is read once with valid credentials first, and the test proves the next read is a
RAM hit (`x-cistern-cache: hit`, no origin request, `served_bytes{tier="memory"}` moved). Then
every bad request — as a full GET, a ranged GET and a HEAD — must get the dialect's error
(S3: status and XML `<Code>`; Blob: status, `x-ms-error-code` and an XML `<Error>`) and none of
the object: its bytes are all ≥ 0x80, so a failed response whose body holds any such byte has
leaked content (error documents are ASCII). Failed responses must not carry the object's ETag
or a Content-Range either.

S3 requests are shaped so that the fast path (`gateway/src/s3/fast.rs`: anonymous, SigV4
header and presigned GET/HEAD) would take them, and the whole S3 matrix also runs against a
gateway with `[s3] fast_path = false` (the s3s path). Uncached variants of some of these cases
live in test_auth.py and test_cache.py; the Blob GET cases in test_blob.py
(`_negative_cases`), which this file runs again as HEAD and ranged GET on its own blob.
"""

from __future__ import annotations

import datetime as dt
import unittest.mock as um
from urllib.parse import quote

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import s3util
from conftest import (DEV_ACCOUNT, DEV_ACCOUNT_KEY, LIMITED, LIMITED_ACCOUNT, LIMITED_ACCOUNT_KEY,
                      MIB, TESTER, WRITER, CisternFactory)
from s3util import Creds
from test_blob import AZ, _date, _negative_cases, _shared_key, blob_sas, blob_url, container_sas

KEY = "authmatrix/obj.bin"   # in moto's motob, read through motoi (immutable)
OTHER = "authmatrix/other.bin"
BLOB = "authmatrix/blob.bin"  # in Azurite's azdata
SIZE = MIB + MIB // 2         # 1.5 chunks at the test gateways' 1 MiB chunks
RANGE = (MIB - 100, MIB + 99)  # crosses the chunk boundary


def high_bytes(seed: str, n: int) -> bytes:
    """Pseudo-random bytes, every one ≥ 0x80: none can appear in an ASCII error document."""
    return bytes(b | 0x80 for b in s3util.det_bytes(seed, n))


DATA = high_bytes("auth-matrix", SIZE)
BLOB_DATA = high_bytes("auth-matrix-blob", SIZE)


def assert_no_content(name: str, status: int, headers: dict, body: bytes, etag: str | None):
    assert status >= 400, (name, status, body[:200])
    assert not any(b >= 0x80 for b in body), f"{name}: a failed response holds object bytes"
    assert len(body) < 4096, f"{name}: {len(body)} bytes in an error"
    h = {k.lower(): v for k, v in headers.items()}
    assert "content-range" not in h, (name, h)
    if etag:
        assert h.get("etag") != etag, f"{name}: a failed response names the object's ETag"


# ------------------------------------------------------------------------------------------ S3


def _sigv4_at(method: str, url: str, headers: dict, creds: Creds, when: dt.datetime | None = None,
              region: str = "us-east-1") -> dict:
    req = AWSRequest(method=method, url=url, headers=dict(headers))
    auth = S3SigV4Auth(Credentials(creds.access_key, creds.secret), "s3", region)
    if when is None:
        auth.add_auth(req)
    else:
        with um.patch("botocore.auth.get_current_datetime",
                      return_value=when.astimezone(dt.timezone.utc).replace(tzinfo=None)):
            auth.add_auth(req)
    return dict(req.headers.items())


def _presign(gw, method: str, key: str, creds: Creds, expires: int = 300,
             when: dt.datetime | None = None, bucket: str = "motoi") -> str:
    """A boto3 SigV4 presigned URL (path and query) for GET or HEAD of `key`."""
    s3 = gw.client(creds, signature_version="s3v4")
    op = "head_object" if method == "HEAD" else "get_object"
    kw = dict(Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
    if when is None:
        url = s3.generate_presigned_url(op, **kw)
    else:
        with um.patch("botocore.auth.get_current_datetime",
                      return_value=when.astimezone(dt.timezone.utc).replace(tzinfo=None)):
            url = s3.generate_presigned_url(op, **kw)
    return url.split(gw.endpoint, 1)[1]


def _flip(s: str, at: int = 0) -> str:
    return s[:at] + ("0" if s[at] != "0" else "1") + s[at + 1:]


def s3_cases(gw, method: str, rng: dict) -> list[tuple]:
    """(name, method, path, headers, status, code) for `method` of KEY with the headers `rng`
    (a Range, or none). HEAD errors have no body: their code is not checked."""
    path = s3util.obj_path("motoi", KEY)
    url = f"http://{gw.endpoint}{path}"
    now = dt.datetime.now(dt.timezone.utc)
    signed = _sigv4_at(method, url, rng, TESTER)
    sig = signed["Authorization"].rsplit("Signature=", 1)[1]
    pre = _presign(gw, method, KEY, TESTER)
    pre_sig = pre.rsplit("X-Amz-Signature=", 1)[1]
    other = "GET" if method == "HEAD" else "HEAD"
    cases = [
        ("anonymous", method, path, dict(rng), 403, "AccessDenied"),
        ("wrong secret", method, path,
         _sigv4_at(method, url, rng, Creds(TESTER.access_key, "not-the-secret")),
         403, "SignatureDoesNotMatch"),
        ("unknown access key", method, path, _sigv4_at(method, url, rng, Creds("nobody", "x")),
         403, "InvalidAccessKeyId"),
        ("tampered header signature", method, path,
         dict(signed, Authorization=signed["Authorization"].replace(sig, _flip(sig))),
         403, "SignatureDoesNotMatch"),
        ("signature replayed on another key", method, s3util.obj_path("motoi", OTHER), signed,
         403, "SignatureDoesNotMatch"),
        ("out-of-scope principal", method, path, _sigv4_at(method, url, rng, LIMITED),
         403, "AccessDenied"),
        ("x-amz-date 20 minutes old", method, path,
         _sigv4_at(method, url, rng, TESTER, now - dt.timedelta(minutes=20)),
         403, "RequestTimeTooSkewed"),
        ("x-amz-date 20 minutes ahead", method, path,
         _sigv4_at(method, url, rng, TESTER, now + dt.timedelta(minutes=20)),
         403, "RequestTimeTooSkewed"),
        ("scope of another region", method, path,
         _sigv4_at(method, url, rng, TESTER, region="eu-west-1"),
         400, "AuthorizationHeaderMalformed"),
        ("presigned, wrong secret", method,
         _presign(gw, method, KEY, Creds(TESTER.access_key, "not-the-secret")), dict(rng),
         403, "SignatureDoesNotMatch"),
        ("presigned, out-of-scope principal", method, _presign(gw, method, KEY, LIMITED),
         dict(rng), 403, "AccessDenied"),
        ("presigned, expired", method,
         _presign(gw, method, KEY, TESTER, expires=60, when=now - dt.timedelta(minutes=5)),
         dict(rng), 403, "AccessDenied"),
        ("presigned, not yet valid", method,
         _presign(gw, method, KEY, TESTER, when=now + dt.timedelta(minutes=30)),
         dict(rng), 403, "AccessDenied"),
        ("presigned, tampered signature", method, pre.replace(pre_sig, _flip(pre_sig)),
         dict(rng), 403, "SignatureDoesNotMatch"),
        ("presigned, expiry stretched", method,
         pre.replace("X-Amz-Expires=300", "X-Amz-Expires=604800"), dict(rng),
         403, "SignatureDoesNotMatch"),
        ("presigned, replayed on another key", method,
         pre.replace(quote(KEY, safe="/"), quote(OTHER, safe="/")), dict(rng),
         403, "SignatureDoesNotMatch"),
        ("presigned for another method", method, _presign(gw, other, KEY, TESTER), dict(rng),
         403, "SignatureDoesNotMatch"),
    ]
    if rng:
        # The range is signed: changing it after signing breaks the signature.
        hdr = _sigv4_at(method, url, {"Range": "bytes=0-0"}, TESTER)
        cases.append(("signed range changed", method, path, dict(hdr, **rng),
                      403, "SignatureDoesNotMatch"))
    return cases


@pytest.fixture(scope="module")
def s3_object(moto, moto_data):
    s3 = moto.client()
    s3.put_object(Bucket="motob", Key=KEY, Body=DATA)
    s3.put_object(Bucket="motob", Key=OTHER, Body=b"other object\n")
    yield s3.head_object(Bucket="motob", Key=KEY)["ETag"]
    # motob's listing is other modules' ground truth (moto_data): leave it as found.
    for k in (KEY, OTHER, "authmatrix/copy.bin"):
        s3.delete_object(Bucket="motob", Key=k)


@pytest.fixture(scope="module")
def gw_slow(request, cistern_bin, tmp_path_factory, fs_data, moto_data):
    """A gateway with the S3 fast path off: every request goes through s3s."""
    f = CisternFactory(cistern_bin, tmp_path_factory.mktemp("nofast"), request, fs_data)
    c = f.with_config("nofast", chunk_size="1MiB", extra="[s3]\nfast_path = false\n")
    yield c
    f.close()


def _warm_s3(gw, etag: str):
    """Reads KEY once through each kind of caller, then proves the next read is a RAM hit."""
    r = gw.get("motoi", KEY)
    assert r.status == 200 and r.body == DATA, r
    origin = gw.origin_requests()
    mem = gw.metric("cistern_served_bytes_total", tier="memory")
    for name, path, hdrs in [
        ("sigv4 header", s3util.obj_path("motoi", KEY), None),
        ("presigned", _presign(gw, "GET", KEY, TESTER), {}),
    ]:
        r = s3util.request(gw.endpoint, "GET", path, headers=hdrs,
                           creds=TESTER if hdrs is None else None)
        assert r.status == 200 and r.body == DATA, (name, r)
        assert r.h("x-cistern-cache") == "hit" and r.h("etag") == etag, (name, r.headers)
    lo, hi = RANGE
    r = s3util.request(gw.endpoint, "GET", s3util.obj_path("motoi", KEY),
                       headers={"Range": f"bytes={lo}-{hi}"}, creds=TESTER)
    assert r.status == 206 and r.body == DATA[lo:hi + 1] and r.h("x-cistern-cache") == "hit", r
    assert gw.origin_requests() == origin, "a warm read went to the origin"
    moved = gw.metric("cistern_served_bytes_total", tier="memory") - mem
    assert moved >= 2 * SIZE, f"RAM tier served {moved} bytes of three warm reads"


@pytest.mark.parametrize("front", ["fast_path", "s3s_path"])
def test_s3_negative_matrix_on_a_cached_object(request, front, s3_object, moto):
    gw = request.getfixturevalue("gw" if front == "fast_path" else "gw_slow")
    _warm_s3(gw, s3_object)
    origin = gw.origin_requests()
    lo, hi = RANGE
    failures, n = [], 0
    for method, rng in [("GET", {}), ("GET", {"Range": f"bytes={lo}-{hi}"}), ("HEAD", {}),
                        ("HEAD", {"Range": f"bytes={lo}-{hi}"})]:
        for name, m, path, hdrs, status, code in s3_cases(gw, method, rng):
            label = f"{m}{' ranged' if rng else ''}: {name}"
            r = s3util.request(gw.endpoint, m, path, headers=hdrs)
            n += 1
            assert_no_content(label, r.status, r.headers, r.body, s3_object)
            got = (r.status, r.error_code() if m != "HEAD" else code)
            print(f"s3 {front} | {label} | {r.status} {got[1] if m != 'HEAD' else '(no body)'}")
            if got != (status, code):
                failures.append((label, got, (status, code), r.body[:200]))
            if m == "HEAD":
                assert r.body == b"", label
            else:
                assert r.body.lstrip().startswith(b"<?xml"), (label, r.body[:200])
                assert r.h("x-amz-request-id") and r.h("x-amz-request-id").encode() in r.body, label
    assert n >= 60
    assert not failures, failures
    assert gw.origin_requests() == origin, "a refused request reached the origin"
    # Still cached, still served to the right caller.
    r = gw.get("motoi", KEY, headers={"Range": f"bytes={lo}-{hi}"})
    assert r.status == 206 and r.body == DATA[lo:hi + 1] and r.h("x-cistern-cache") == "hit", r


def _s3_write_cases(gw) -> list[tuple]:
    """(name, method, path, headers, creds, body, status, code): writes onto the cached object
    by callers who may not write it."""
    path = s3util.obj_path("motoi", KEY)
    src = {"x-amz-copy-source": f"/motoi/{KEY}"}
    url = f"http://{gw.endpoint}{s3util.obj_path('motoi', 'authmatrix/copy.bin')}"
    presigned_put = gw.client(TESTER, signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "motoi", "Key": KEY}, ExpiresIn=300)
    return [
        ("read-only principal PUT", "PUT", path, {}, TESTER, b"overwritten", 403, "AccessDenied"),
        ("read-only principal DELETE", "DELETE", path, {}, TESTER, b"", 403, "AccessDenied"),
        ("read-only principal copy onto it", "PUT", path,
         {"x-amz-copy-source": "/motoi/authmatrix/other.bin",
          "x-amz-metadata-directive": "REPLACE"}, TESTER, b"", 403, "AccessDenied"),
        ("read-only principal copies it", "PUT", s3util.obj_path("motoi", "authmatrix/copy.bin"),
         src, TESTER, b"", 403, "AccessDenied"),
        ("read-only principal multipart", "POST", path + "?uploads", {}, TESTER, b"", 403,
         "AccessDenied"),
        ("read-only principal, presigned PUT", "PUT", presigned_put.split(gw.endpoint, 1)[1],
         {}, None, b"overwritten", 403, "AccessDenied"),
        ("anonymous PUT", "PUT", path, {}, None, b"overwritten", 403, "AccessDenied"),
        ("anonymous DELETE", "DELETE", path, {}, None, b"", 403, "AccessDenied"),
        ("out-of-scope principal PUT", "PUT", path, {}, LIMITED, b"overwritten", 403,
         "AccessDenied"),
        ("writer, wrong secret", "PUT", path, {}, Creds(WRITER.access_key, "nope"),
         b"overwritten", 403, "SignatureDoesNotMatch"),
        ("writer, stale date", "PUT", path,
         _sigv4_at("PUT", f"http://{gw.endpoint}{path}",
                   {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, WRITER,
                   dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)),
         None, b"overwritten", 403, "RequestTimeTooSkewed"),
        ("out-of-scope principal copies it", "PUT", url.split(gw.endpoint, 1)[1], src, LIMITED,
         b"", 403, "AccessDenied"),
    ]


@pytest.mark.parametrize("front", ["fast_path", "s3s_path"])
def test_s3_refused_writes_leave_the_cached_object_alone(request, front, s3_object, moto):
    gw = request.getfixturevalue("gw" if front == "fast_path" else "gw_slow")
    _warm_s3(gw, s3_object)
    failures = []
    for name, m, path, hdrs, creds, body, status, code in _s3_write_cases(gw):
        r = s3util.request(gw.endpoint, m, path, headers=hdrs, creds=creds, body=body)
        print(f"s3 {front} | {name} | {r.status} {r.error_code()}")
        assert_no_content(name, r.status, r.headers, r.body, s3_object)
        if (r.status, r.error_code()) != (status, code):
            failures.append((name, (r.status, r.error_code()), (status, code), r.body[:200]))
    assert not failures, failures
    m = moto.client()
    assert m.head_object(Bucket="motob", Key=KEY)["ETag"] == s3_object
    with pytest.raises(Exception):
        m.head_object(Bucket="motob", Key="authmatrix/copy.bin")
    r = gw.get("motoi", KEY)
    assert r.status == 200 and r.body == DATA and r.h("x-cistern-cache") == "hit", r


# ---------------------------------------------------------------------------------------- Blob


@pytest.fixture(scope="module")
def az_blob(azurite, az_data):
    cc = azurite.service().get_container_client(AZ)
    cc.upload_blob(BLOB, BLOB_DATA, overwrite=True)
    return cc.get_blob_client(BLOB).get_blob_properties().etag


def _warm_blob(gw, etag: str):
    url = blob_url(gw.blob_url, AZ, BLOB)
    r = requests.get(url + "?" + blob_sas(AZ, BLOB), timeout=30)
    assert r.status_code == 200 and r.content == BLOB_DATA
    origin = gw.origin_requests()
    mem = gw.metric("cistern_served_bytes_total", tier="memory")
    hdrs = _shared_key("GET", url, {"x-ms-version": "2025-11-05", "x-ms-date": _date()},
                       DEV_ACCOUNT, DEV_ACCOUNT_KEY)
    r = requests.get(url, headers=hdrs, timeout=30)
    assert r.status_code == 200 and r.content == BLOB_DATA, r.status_code
    assert r.headers.get("x-cistern-cache") == "hit" and r.headers.get("etag") == etag, r.headers
    assert gw.origin_requests() == origin, "a warm read went to the origin"
    assert gw.metric("cistern_served_bytes_total", tier="memory") - mem >= SIZE


def blob_extra_cases(gw, method: str, extra: dict) -> list[tuple]:
    """Blob cases beyond test_blob's: resource types, IP ranges, signed fields, versions."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    base = blob_url(gw.blob_url, AZ, BLOB)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    ok = blob_sas(AZ, BLOB)

    def drop(sas: str, name: str) -> str:
        return "&".join(p for p in sas.split("&") if not p.startswith(name + "="))

    def swap(sas: str, name: str, value: str) -> str:
        return "&".join(f"{name}={value}" if p.startswith(name + "=") else p
                        for p in sas.split("&"))

    def account_sas(rt) -> str:
        return generate_account_sas(DEV_ACCOUNT, DEV_ACCOUNT_KEY, rt,
                                    AccountSasPermissions(read=True), later)

    ex = dict(extra)
    return [
        ("account SAS for the service only", method,
         base + "?" + account_sas(ResourceTypes(service=True)), ex, 403,
         "AuthorizationResourceTypeMismatch"),
        ("blob SAS relabelled as container SAS", method, base + "?" + swap(ok, "sr", "c"), ex,
         403, "AuthenticationFailed"),
        ("account SAS relabelled srt=sco", method,
         base + "?" + swap(account_sas(ResourceTypes(container=True)), "srt", "sco"), ex,
         403, "AuthenticationFailed"),
        ("SAS for an IP range without the caller", method,
         base + "?" + blob_sas(AZ, BLOB, ip="10.0.0.1-10.0.0.255"), ex, 403,
         "AuthorizationSourceIPMismatch"),
        ("SAS https only (account SAS)", method,
         base + "?" + generate_account_sas(DEV_ACCOUNT, DEV_ACCOUNT_KEY,
                                           ResourceTypes(object=True),
                                           AccountSasPermissions(read=True), later,
                                           protocol="https"), ex, 403,
         "AuthorizationProtocolMismatch"),
        ("SAS with its version changed", method, base + "?" + swap(ok, "sv", "2019-02-02"), ex,
         403, "AuthenticationFailed"),
        ("SAS of an unknown version", method, base + "?" + swap(ok, "sv", "2099-01-01"), ex,
         403, "AuthenticationFailed"),
        ("SAS without sp", method, base + "?" + drop(ok, "sp"), ex, 403,
         "AuthenticationFailed"),
        ("SAS without se", method, base + "?" + drop(ok, "se"), ex, 403,
         "AuthenticationFailed"),
        ("SAS without sr", method, base + "?" + drop(ok, "sr"), ex, 403,
         "AuthenticationFailed"),
        ("SAS with a malformed expiry", method, base + "?" + swap(ok, "se", "tomorrow"), ex,
         403, "AuthenticationFailed"),
        ("SAS signature not base64", method, base + "?" + swap(ok, "sig", "%%%%"), ex, 403,
         "AuthenticationFailed"),
        ("container SAS without read", method,
         base + "?" + container_sas(AZ, permission="l"), ex, 403,
         "AuthorizationPermissionMismatch"),
    ]


@pytest.mark.parametrize("variant", ["GET", "GET ranged", "HEAD", "HEAD ranged"])
def test_blob_negative_matrix_on_a_cached_blob(gw_az, az_blob, variant):
    _warm_blob(gw_az, az_blob)
    origin = gw_az.origin_requests(operation="get")
    method = variant.split()[0]
    lo, hi = RANGE
    extra = {"x-ms-range": f"bytes={lo}-{hi}"} if "ranged" in variant else {}
    cases = _negative_cases(gw_az, BLOB, method, extra) + blob_extra_cases(gw_az, method, extra)
    failures = []
    for name, m, url, headers, status, code in cases:
        r = requests.request(m, url, headers=headers, timeout=30)
        assert_no_content(f"{variant}: {name}", r.status_code, r.headers, r.content, az_blob)
        got = (r.status_code, r.headers.get("x-ms-error-code"))
        print(f"blob | {variant}: {name} | {got[0]} {got[1]}")
        if got != (status, code):
            failures.append((name, got, (status, code), r.text[:200]))
        if m == "GET":
            assert r.content.startswith(b"\xef\xbb\xbf<?xml") or r.content.startswith(b"<?xml"), \
                (name, r.content[:200])
            assert b"<Error><Code>" + code.encode() in r.content or got != (status, code), name
        else:
            assert r.content == b"", name
    assert len(cases) >= 35
    assert not failures, failures
    # Refusals never reach the origin's data (the bearer-token and stored-policy cases may ask
    # the origin for a decision, never for bytes).
    assert gw_az.origin_requests(operation="get") == origin
    hdrs = _shared_key(method, blob_url(gw_az.blob_url, AZ, BLOB),
                       {"x-ms-version": "2025-11-05", "x-ms-date": _date(), **extra},
                       DEV_ACCOUNT, DEV_ACCOUNT_KEY)
    r = requests.request(method, blob_url(gw_az.blob_url, AZ, BLOB), headers=hdrs, timeout=30)
    assert r.status_code in (200, 206) and r.headers.get("x-cistern-cache") == "hit", r.headers


def _blob_write_cases(gw) -> list[tuple]:
    """(name, method, url, headers, body, status, code): writes onto the cached blob by callers
    who may not write it. devstoreaccount1 is read/list only on gw_az: a Shared Key caller
    Cistern's policy refuses gets AuthorizationFailure (as out-of-scope accounts do in
    test_blob.py); a SAS without the permission AuthorizationPermissionMismatch, as Azure."""
    base = blob_url(gw.blob_url, AZ, BLOB)
    limited_base = blob_url(f"http://127.0.0.1:{gw.blob_port}/{LIMITED_ACCOUNT}", AZ, BLOB)
    hv = {"x-ms-version": "2025-11-05"}
    body = b"overwritten"
    put = {"x-ms-blob-type": "BlockBlob", "Content-Length": str(len(body))}
    copy = {"x-ms-copy-source": blob_url(gw.blob_url, AZ, "hello.txt"), "Content-Length": "0"}

    def sk(method, url, headers, account=DEV_ACCOUNT, key=DEV_ACCOUNT_KEY):
        return _shared_key(method, url, dict(hv, **headers, **{"x-ms-date": _date()}), account,
                           key)

    sas_r = blob_sas(AZ, BLOB, permission="r")
    sas_w = blob_sas(AZ, BLOB, permission="w")
    return [
        ("read-only account Put Blob", "PUT", base, sk("PUT", base, put), body, 403,
         "AuthorizationFailure"),
        ("read-only account Delete Blob", "DELETE", base, sk("DELETE", base, {}), b"", 403,
         "AuthorizationFailure"),
        ("read-only account Copy Blob onto it", "PUT", base, sk("PUT", base, copy), b"", 403,
         "AuthorizationFailure"),
        ("read-only account Set Blob Metadata", "PUT", base + "?comp=metadata",
         sk("PUT", base + "?comp=metadata", {"x-ms-meta-a": "b", "Content-Length": "0"}), b"",
         403, "AuthorizationFailure"),
        ("out-of-scope account Put Blob", "PUT", limited_base,
         sk("PUT", limited_base, put, LIMITED_ACCOUNT, LIMITED_ACCOUNT_KEY), body, 403,
         "AuthorizationFailure"),
        ("SAS r used to write", "PUT", base + "?" + sas_r, dict(hv, **put), body, 403,
         "AuthorizationPermissionMismatch"),
        ("SAS r used to delete", "DELETE", base + "?" + sas_r, dict(hv), b"", 403,
         "AuthorizationPermissionMismatch"),
        ("SAS w, expired", "PUT",
         base + "?" + blob_sas(AZ, BLOB, permission="w",
                               expiry=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)),
         dict(hv, **put), body, 403, "AuthenticationFailed"),
        ("SAS w, tampered", "PUT", base + "?" + sas_w.replace("sp=w", "sp=wd"), dict(hv, **put),
         body, 403, "AuthenticationFailed"),
        ("Shared Key, date 20 minutes old", "PUT", base,
         _shared_key("PUT", base, dict(hv, **put, **{"x-ms-date": _date(-20)}), "writeracct",
                     "d3JpdGVyLWFjY291bnQta2V5LTAxMjM0NTY3ODlhYmNkZWY="), body, 403,
         "AuthenticationFailed"),
        ("anonymous Put Blob", "PUT", base, dict(hv, **put), body, 404, "ResourceNotFound"),
        ("anonymous Delete Blob", "DELETE", base, dict(hv), b"", 404, "ResourceNotFound"),
    ]


def test_blob_refused_writes_leave_the_cached_blob_alone(gw_az, azurite, az_blob):
    _warm_blob(gw_az, az_blob)
    failures = []
    for name, m, url, headers, body, status, code in _blob_write_cases(gw_az):
        r = requests.request(m, url, headers=headers, data=body or None, timeout=30)
        assert_no_content(name, r.status_code, r.headers, r.content, az_blob)
        got = (r.status_code, r.headers.get("x-ms-error-code"))
        print(f"blob | {name} | {got[0]} {got[1]}")
        if got != (status, code):
            failures.append((name, got, (status, code), r.text[:200]))
    assert not failures, failures
    props = azurite.service().get_blob_client(AZ, BLOB).get_blob_properties()
    assert props.etag == az_blob and props.size == SIZE
    _warm_blob(gw_az, az_blob)
