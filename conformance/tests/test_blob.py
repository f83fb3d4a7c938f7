"""The Azure Blob front: the official SDK, raw HTTP and a differential against Azurite.

Cistern (fixture gw_az) exposes Azurite's container `azdata` under the same name, so the same
request can go to Azurite directly and through Cistern and must agree (DESIGN.md §7, inv. 6).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    BlobServiceClient,
    generate_blob_sas,
    generate_container_sas,
)

from conftest import DEV_ACCOUNT, DEV_ACCOUNT_KEY, MIB

AZ = "azdata"


def service(cs: str, **kw) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(cs, retry_total=0, **kw)


def via(gw, **kw) -> BlobServiceClient:
    return service(gw.connection_string(), **kw)


def blob_sas(container: str, blob: str, **kw) -> str:
    kw.setdefault("permission", "r")
    kw.setdefault("expiry", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    return generate_blob_sas(DEV_ACCOUNT, container, blob, account_key=DEV_ACCOUNT_KEY, **kw)


def container_sas(container: str, **kw) -> str:
    kw.setdefault("permission", "rl")
    kw.setdefault("expiry", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    return generate_container_sas(DEV_ACCOUNT, container, account_key=DEV_ACCOUNT_KEY, **kw)


def blob_url(base: str, container: str, blob: str) -> str:
    from urllib.parse import quote
    return f"{base}/{container}/{quote(blob, safe='/')}"


# ------------------------------------------------------------------ SDK reads, compared to Azurite


def test_listing_matches_azurite(gw_az, azurite, az_data):
    mine = via(gw_az).get_container_client(AZ)
    theirs = azurite.service().get_container_client(AZ)
    def rows(cc, **kw):
        return [(b.name, b.size, b.etag, b.blob_type) for b in cc.list_blobs(**kw)]
    assert rows(mine) == rows(theirs)
    assert rows(mine, name_starts_with="dir/") == rows(theirs, name_starts_with="dir/")
    assert [b.name for b in mine.walk_blobs()] == [b.name for b in theirs.walk_blobs()]
    assert [b.name for b in mine.walk_blobs(name_starts_with="dir/")] == \
        [b.name for b in theirs.walk_blobs(name_starts_with="dir/")]
    def md(cc):
        return {b.name: b.metadata for b in cc.list_blobs(include=["metadata"])}
    # Over an Azure origin the listing is Azure's own: metadata names keep their case.
    assert md(mine) == md(theirs)
    assert md(mine)["meta.html"] == {"color": "blue", "Mixed_Case": "1"}
    # Paging with a small page size visits every blob once, in order.
    pages = mine.list_blobs(results_per_page=2).by_page()
    names = [b.name for page in pages for b in page]
    assert names == [r[0] for r in rows(theirs)]


def test_list_containers(gw_az, az_data):
    names = [c.name for c in via(gw_az).list_containers()]
    assert AZ in names and "fsb" in names and "motob" in names
    assert [c.name for c in via(gw_az).list_containers(name_starts_with="az")] == [AZ]


def test_properties_match_azurite(gw_az, azurite, az_data):
    mine = via(gw_az).get_container_client(AZ)
    theirs = azurite.service().get_container_client(AZ)
    for name in az_data.blobs:
        a = theirs.get_blob_client(name).get_blob_properties()
        b = mine.get_blob_client(name).get_blob_properties()
        for field in ("size", "etag", "last_modified", "creation_time", "blob_type"):
            assert getattr(b, field) == getattr(a, field), (name, field)
        assert b.metadata == {k.lower(): v for k, v in a.metadata.items()}, name
        for field in ("content_type", "content_md5", "cache_control", "content_language"):
            assert getattr(b.content_settings, field) == getattr(a.content_settings, field), \
                (name, field)


@pytest.mark.parametrize("offset,length", [(0, None), (0, 1), (100, 1000), (MIB - 10, 20),
                                           (3 * MIB, None), (2 * MIB + 7, 3 * MIB)])
def test_ranged_downloads_match(gw_az, az_data, offset, length):
    data = az_data.blobs["chunky.bin"]
    bc = via(gw_az).get_blob_client(AZ, "chunky.bin")
    got = bc.download_blob(offset=offset, length=length).readall()
    end = len(data) if length is None else offset + length
    assert got == data[offset:end]


def test_parallel_download_and_content_md5(gw_az, az_data):
    data = az_data.blobs["chunky.bin"]
    svc = via(gw_az, max_single_get_size=MIB, max_chunk_get_size=512 * 1024)
    bc = svc.get_blob_client(AZ, "chunky.bin")
    assert bc.download_blob(max_concurrency=4).readall() == data
    # validate_content asks x-ms-range-get-content-md5 per range and checks it.
    got = bc.download_blob(max_concurrency=4, validate_content=True).readall()
    assert got == data


def test_errors_match_azurite(gw_az, azurite, az_data):
    mine = via(gw_az)
    theirs = azurite.service()
    def code(fn):
        with pytest.raises(HttpResponseError) as ei:
            fn()
        return ei.value.status_code, ei.value.error_code
    cases = [
        lambda s: s.get_blob_client(AZ, "nope").download_blob().readall(),
        lambda s: s.get_blob_client(AZ, "nope").get_blob_properties(),
        lambda s: s.get_blob_client("no-such-container", "x").download_blob().readall(),
        lambda s: s.get_container_client("no-such-container").get_container_properties(),
        lambda s: s.get_blob_client(AZ, "hello.txt").download_blob(offset=10_000, length=5),
        lambda s: s.get_blob_client(AZ, "hello.txt").download_blob(
            etag='"0x1"', match_condition=_if_match()).readall(),
    ]
    for case in cases:
        assert code(lambda: case(mine)) == code(lambda: case(theirs))


def _if_match():
    from azure.core import MatchConditions
    return MatchConditions.IfNotModified


def test_not_modified(gw_az, azurite, az_data):
    from azure.core import MatchConditions
    raised = []
    for svc in (via(gw_az), azurite.service()):
        bc = svc.get_blob_client(AZ, "hello.txt")
        etag = bc.get_blob_properties().etag
        with pytest.raises(HttpResponseError) as ei:
            bc.download_blob(etag=etag, match_condition=MatchConditions.IfModified).readall()
        raised.append((type(ei.value).__name__, ei.value.status_code, ei.value.error_code))
        assert bc.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified) \
            .readall() == az_data.blobs["hello.txt"]
    assert raised[0] == raised[1]
    assert raised[0][1] == 304


# ------------------------------------------------------------------ raw HTTP differential


RAW_HEADERS = ("etag", "content-length", "content-range", "content-type", "last-modified",
               "x-ms-blob-type", "accept-ranges", "content-md5", "x-ms-blob-content-md5",
               "x-ms-creation-time", "x-ms-error-code", "x-ms-meta-color", "x-ms-meta-mixed_case")

RAW_CASES = [
    ("GET", "hello.txt", {}, ""),
    ("HEAD", "hello.txt", {}, ""),
    ("GET", "meta.html", {}, ""),
    ("GET", "meta.html", {}, "comp=metadata"),
    ("GET", "chunky.bin", {"x-ms-range": "bytes=1000-2000"}, ""),
    ("GET", "chunky.bin", {"Range": "bytes=1048570-1048600"}, ""),
    ("GET", "chunky.bin", {"x-ms-range": "bytes=3000000-"}, ""),
    ("GET", "chunky.bin", {"x-ms-range": "bytes=0-99", "x-ms-range-get-content-md5": "true"}, ""),
    ("GET", "chunky.bin", {"x-ms-range": "bytes=99999999-"}, ""),
    ("GET", "empty", {}, ""),
    ("GET", "sp ace+plus%.txt", {}, ""),
    ("GET", "unicodé/日本.txt", {}, ""),
    ("GET", "missing.txt", {}, ""),
    ("HEAD", "missing.txt", {}, ""),
    ("GET", "hello.txt", {"If-Match": '"0x0"'}, ""),
]


@pytest.mark.parametrize("method,blob,headers,query", RAW_CASES)
def test_raw_requests_match_azurite(gw_az, azurite, az_data, method, blob, headers, query):
    sas = container_sas(AZ)
    q = (query + "&" if query else "") + sas
    a = requests.request(method, blob_url(azurite.account_url, AZ, blob) + "?" + q,
                         headers=headers, timeout=30)
    b = requests.request(method, blob_url(gw_az.blob_url, AZ, blob) + "?" + q,
                         headers=headers, timeout=30)
    assert b.status_code == a.status_code, b.text[:500]
    for h in RAW_HEADERS:
        if h == "content-length" and a.status_code >= 400:
            continue  # error bodies differ in wording
        if "comp=metadata" in query and h not in ("etag", "last-modified") \
                and not h.startswith("x-ms-meta-"):
            continue  # Get Blob Metadata: Azure sends ETag, Last-Modified and metadata only
            # (Azurite adds every property)
        if h.startswith("x-ms-meta-"):
            # Names arrive lower-cased through Cistern (documented): compare by value.
            mine = {k.lower(): v for k, v in b.headers.items() if k.lower() == h}
            theirs = {k.lower(): v for k, v in a.headers.items() if k.lower() == h}
            assert mine == theirs, h
            continue
        assert b.headers.get(h) == a.headers.get(h), h
    if a.status_code < 300 and "comp=metadata" not in query:
        assert b.content == a.content
    assert b.headers.get("x-ms-request-id")
    assert b.headers.get("x-ms-version")


# ------------------------------------------------------------------ cross-dialect


def test_s3_client_reads_azure_origin_and_blob_client_hits(gw_az, az_data):
    name = "cache/cross.bin"
    data = az_data.blobs[name]
    before = gw_az.origin_requests(origin="azurite")
    s3 = gw_az.client()
    obj = s3.get_object(Bucket=AZ, Key=name)
    assert obj["Body"].read() == data
    fetched = gw_az.origin_requests(origin="azurite") - before
    assert fetched >= 1
    # The same chunks serve the Blob dialect: no origin request, reported as a hit.
    r = requests.get(blob_url(gw_az.blob_url, AZ, name) + "?" + blob_sas(AZ, name), timeout=30)
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-cistern-cache"] == "hit"
    assert gw_az.origin_requests(origin="azurite") - before == fetched
    # ETags are the origin's in both dialects (S3 quotes it too).
    assert obj["ETag"] == r.headers["etag"]
    listed = s3.list_objects_v2(Bucket=AZ, Prefix="dir/")["Contents"]
    assert [o["Key"] for o in listed] == ["dir/a.txt", "dir/sub/b.txt"]


def test_blob_client_reads_s3_origin_and_s3_client_hits(gw_az, moto_data):
    key = "cache/co8.bin"
    data = moto_data.objects[key]
    before = gw_az.origin_requests(origin="moto")
    bc = via(gw_az).get_blob_client("motob", key)
    assert bc.download_blob(max_concurrency=4).readall() == data
    props = bc.get_blob_properties()
    assert props.size == len(data) and props.blob_type == "BlockBlob"
    fetched = gw_az.origin_requests(origin="moto") - before
    r = gw_az.get("motob", key)
    assert r.status == 200 and r.body == data
    assert r.headers.get("x-cistern-cache") == "hit"
    assert gw_az.origin_requests(origin="moto") - before == fetched


def test_blob_client_reads_fs_origin(gw_az, fs_data):
    cc = via(gw_az).get_container_client("fsb")
    for rel, data in fs_data.files.items():
        bucket, key = rel.split("/", 1)
        if bucket != "fsb":
            continue
        assert cc.get_blob_client(key).download_blob().readall() == data, key
    names = {b.name for b in cc.list_blobs()}
    assert {"hello.txt", "dir/sub/deep.txt", "with space+plus.txt"} <= names


# ------------------------------------------------------------------ authentication


def _warm(gw, blob):
    r = requests.get(blob_url(gw.blob_url, AZ, blob) + "?" + blob_sas(AZ, blob), timeout=30)
    assert r.status_code == 200
    return r.content


def _shared_key(method, url, headers, account, key):
    """Signs with the SDK's own Shared Key policy (azure-storage-blob)."""
    from azure.core.pipeline import PipelineRequest, PipelineContext
    from azure.core.rest import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
    req = HttpRequest(method, url, headers=dict(headers))
    SharedKeyCredentialPolicy(account, key).on_request(PipelineRequest(req, PipelineContext(None)))
    return dict(req.headers)


def _date(delta_minutes=0):
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=delta_minutes)
    return t.strftime("%a, %d %b %Y %H:%M:%S GMT")


NOW = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731


def _negative_cases(gw, blob, method="GET", extra=None):
    """(name, method, url, headers, expected status, expected x-ms-error-code): each one a
    `method` of `blob` carrying the `extra` headers (signed with it where signed), e.g. a
    `x-ms-range` (test_auth_matrix.py runs them as HEAD and ranged GET too)."""
    m = method
    ex = dict(extra or {})
    from azure.storage.blob import generate_account_sas, ResourceTypes, AccountSasPermissions
    base = blob_url(gw.blob_url, AZ, blob)
    other = blob_url(gw.blob_url, AZ, "hello.txt")
    hv = {"x-ms-version": "2025-11-05", **ex}
    ok = _shared_key(m, base, dict(hv, **{"x-ms-date": _date()}), DEV_ACCOUNT, DEV_ACCOUNT_KEY)
    sig = ok["Authorization"].split(":", 1)[1]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMDA="
    later = NOW() + dt.timedelta(hours=1)
    acct_sas = lambda **kw: generate_account_sas(  # noqa: E731
        DEV_ACCOUNT, DEV_ACCOUNT_KEY, kw.pop("rt", ResourceTypes(object=True)),
        kw.pop("perm", AccountSasPermissions(read=True)), kw.pop("expiry", later), **kw)
    cases = [
        ("wrong key", m, base,
         _shared_key(m, base, dict(hv, **{"x-ms-date": _date()}), DEV_ACCOUNT, wrong_key),
         403, "AuthenticationFailed"),
        ("tampered signature", m, base,
         dict(ok, Authorization=f"SharedKey {DEV_ACCOUNT}:{flipped}"), 403, "AuthenticationFailed"),
        ("replayed on another blob", m, other, ok, 403, "AuthenticationFailed"),
        ("date 20 minutes old", m, base,
         _shared_key(m, base, dict(hv, **{"x-ms-date": _date(-20)}), DEV_ACCOUNT,
                     DEV_ACCOUNT_KEY), 403, "AuthenticationFailed"),
        ("date 20 minutes ahead", m, base,
         _shared_key(m, base, dict(hv, **{"x-ms-date": _date(20)}), DEV_ACCOUNT,
                     DEV_ACCOUNT_KEY), 403, "AuthenticationFailed"),
        ("no date", m, base,
         {k: v for k, v in ok.items() if k.lower() != "x-ms-date"}, 403, "AuthenticationFailed"),
        ("other account in header", m, base,
         dict(ok, Authorization=f"SharedKey limitedacct:{sig}"), 403, "AuthenticationFailed"),
        # Credentials only the origin can judge: Azurite (no OAuth over HTTP, no such policy,
        # no user delegation) refuses them, and so does Cistern.
        ("bearer token, origin refuses", m, base,
         dict(hv, Authorization="Bearer eyJhbGciOi.x.y"), 403, "AuthorizationFailure"),
        ("bearer token on an origin that cannot judge", m,
         f"{gw.blob_url}/fsb/hello.txt", dict(hv, Authorization="Bearer eyJhbGciOi.x.y"), 403,
         "AuthenticationFailed"),
        ("SAS expired", m, base + "?" + blob_sas(AZ, blob, expiry=NOW() - dt.timedelta(minutes=1)),
         ex, 403, "AuthenticationFailed"),
        ("SAS not yet valid", m,
         base + "?" + blob_sas(AZ, blob, start=NOW() + dt.timedelta(minutes=30)), ex, 403,
         "AuthenticationFailed"),
        ("SAS tampered", m, base + "?" + blob_sas(AZ, blob).replace("sp=r", "sp=rw"), ex,
         403, "AuthenticationFailed"),
        ("SAS for another blob", m, base + "?" + blob_sas(AZ, "hello.txt"), ex, 403,
         "AuthenticationFailed"),
        ("container SAS for another container", m,
         base + "?" + container_sas("azother"), ex, 403, "AuthenticationFailed"),
        ("SAS without read", m, base + "?" + blob_sas(AZ, blob, permission="w"), ex, 403,
         "AuthorizationPermissionMismatch"),
        ("SAS for another IP", m, base + "?" + blob_sas(AZ, blob, ip="10.9.8.7"), ex, 403,
         "AuthorizationSourceIPMismatch"),
        ("SAS https only", m, base + "?" + blob_sas(AZ, blob, protocol="https"), ex, 403,
         "AuthorizationProtocolMismatch"),
        ("account SAS without blob service", m,
         base + "?" + acct_sas(services="q"), ex, 403, "AuthorizationServiceMismatch"),
        ("account SAS for containers only", m,
         base + "?" + acct_sas(rt=ResourceTypes(container=True)), ex, 403,
         "AuthorizationResourceTypeMismatch"),
        ("unknown stored access policy", m,
         base + "?" + blob_sas(AZ, blob, policy_id="nopol", permission=None, expiry=None), ex,
         403, "AuthorizationFailure"),
        ("user delegation SAS the origin refuses", m,
         base + "?" + blob_sas(AZ, blob) + "&skoid=00000000-0000-0000-0000-000000000000", ex,
         403, "AuthorizationFailure"),
        ("stored-policy SAS from another IP", m,
         base + "?" + blob_sas(AZ, blob, policy_id="readpol", permission=None, expiry=None,
                               ip="10.9.8.7"), ex, 403, "AuthorizationSourceIPMismatch"),
        ("duplicate SAS parameter", m,
         base + "?" + blob_sas(AZ, blob) + "&sp=rwdl", ex, 403, "AuthorizationFailure"),
        ("user delegation SAS from another IP", m,
         base + "?" + blob_sas(AZ, blob, ip="10.9.8.7")
         + "&skoid=00000000-0000-0000-0000-000000000000", ex, 403,
         "AuthorizationSourceIPMismatch"),
        ("account outside its scope", m,
         blob_url(f"http://127.0.0.1:{gw.blob_port}/limitedacct", AZ, blob),
         _shared_key(m, blob_url(f"http://127.0.0.1:{gw.blob_port}/limitedacct", AZ, blob),
                     dict(hv, **{"x-ms-date": _date()}), "limitedacct",
                     "bGltaXRlZC1hY2NvdW50LWtleS0wMTIzNDU2Nzg5YWJjZGVm"),
         403, "AuthorizationFailure"),
        ("anonymous on a private container", m, base, ex, 404, "ResourceNotFound"),
    ]
    return cases


def test_negative_authentication_on_a_cached_blob(gw_az, az_data):
    blob = "cache/auth.bin"
    assert _warm(gw_az, blob) == az_data.blobs[blob]
    cases = _negative_cases(gw_az, blob)
    assert len(cases) >= 15
    failures = []
    for name, method, url, headers, status, code in cases:
        r = requests.request(method, url, headers=headers, timeout=30)
        got = (r.status_code, r.headers.get("x-ms-error-code"))
        if got != (status, code):
            failures.append((name, got, (status, code), r.text[:300]))
        if r.status_code >= 400 and r.content:
            assert b"<Error><Code>" in r.content, name
        assert az_data.blobs[blob][:1000] not in r.content, name
    assert not failures, failures
    # The positive control: the same blob with the right key works.
    ok = _shared_key("GET", blob_url(gw_az.blob_url, AZ, blob),
                     {"x-ms-version": "2025-11-05", "x-ms-date": _date()}, DEV_ACCOUNT,
                     DEV_ACCOUNT_KEY)
    r = requests.get(blob_url(gw_az.blob_url, AZ, blob), headers=ok, timeout=30)
    assert r.status_code == 200 and r.content == az_data.blobs[blob]


def test_stored_access_policy_is_read_from_the_origin(gw_az, azurite, az_data):
    """A SAS bound to a stored access policy and signed with the account's key is verified by
    Cistern; its window and permissions come from the container's policy, asked of the origin
    once and reused (Azure lets a policy change take 30 s)."""
    from azure.storage.blob import AccessPolicy, ContainerSasPermissions
    theirs = azurite.service().get_container_client(AZ)
    theirs.set_container_access_policy(signed_identifiers={
        "readpol": AccessPolicy(permission=ContainerSasPermissions(read=True, list=True),
                                expiry=NOW() + dt.timedelta(hours=1))})
    blob = "chunky.bin"
    sas = blob_sas(AZ, blob, policy_id="readpol", permission=None, expiry=None)
    # The origin itself accepts it.
    r = requests.get(blob_url(azurite.account_url, AZ, blob) + "?" + sas, timeout=30)
    assert r.status_code == 200
    judged = gw_az.origin_requests(origin="azurite", operation="judge")
    asked = gw_az.origin_requests(origin="azurite", operation="passthrough")
    for _ in range(3):
        r = requests.get(blob_url(gw_az.blob_url, AZ, blob) + "?" + sas,
                         headers={"x-ms-range": "bytes=0-99"}, timeout=30)
        assert r.status_code == 206, r.text
        assert r.content == az_data.blobs[blob][:100]
    assert gw_az.origin_requests(origin="azurite", operation="judge") == judged
    assert gw_az.origin_requests(origin="azurite", operation="passthrough") - asked == 1
    # Listing with a container SAS bound to the same policy.
    lsas = container_sas(AZ, policy_id="readpol", permission=None, expiry=None)
    r = requests.get(f"{gw_az.blob_url}/{AZ}?restype=container&comp=list&{lsas}", timeout=30)
    assert r.status_code == 200 and b"<Name>chunky.bin</Name>" in r.content
    # The same SAS does not open a blob outside its scope... it is a blob SAS for chunky.bin,
    # so the origin refuses it for hello.txt.
    r = requests.get(blob_url(gw_az.blob_url, AZ, "hello.txt") + "?" + sas, timeout=30)
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (403, "AuthorizationFailure")


def test_snapshots_and_block_lists_pass_through(gw_az, azurite, az_data):
    """Snapshot reads and an Azure origin's block lists bypass the cache and match Azurite."""
    from azure.storage.blob import BlobBlock
    theirs = azurite.service().get_container_client(AZ)
    bc = theirs.get_blob_client("snap/s.txt")
    bc.upload_blob(b"version one\n", overwrite=True)
    snap = bc.create_snapshot()["snapshot"]
    bc.upload_blob(b"version two, longer\n", overwrite=True)
    mine = via(gw_az).get_container_client(AZ)
    assert mine.get_blob_client("snap/s.txt").download_blob().readall() == b"version two, longer\n"
    old = mine.get_blob_client("snap/s.txt", snapshot=snap)
    assert old.download_blob().readall() == b"version one\n"
    assert old.download_blob(offset=8, length=3).readall() == b"one"
    assert old.get_blob_properties().size == len(b"version one\n")
    r = requests.get(blob_url(gw_az.blob_url, AZ, "snap/s.txt") + f"?snapshot={snap}&"
                     + container_sas(AZ), timeout=30)
    assert r.status_code == 200 and r.headers["x-cistern-cache"] == "bypass"
    # Block lists come from the origin when it has blocks.
    blocks = theirs.get_blob_client("blocks/b.bin")
    blocks.stage_block("YmxvY2stMQ==", b"a" * 100)
    blocks.stage_block("YmxvY2stMg==", b"b" * 50)
    blocks.commit_block_list([BlobBlock("YmxvY2stMQ=="), BlobBlock("YmxvY2stMg==")])
    want = blocks.get_block_list("committed")
    got = mine.get_blob_client("blocks/b.bin").get_block_list("committed")
    assert [(b.id, b.size) for b in got[0]] == [(b.id, b.size) for b in want[0]]
    assert [(b.id, b.size) for b in got[0]] == [("YmxvY2stMQ==", 100), ("YmxvY2stMg==", 50)]


def test_sas_response_overrides(gw_az, az_data):
    """rsct/rscd in a SAS set the response headers (they are signed by the issuer)."""
    sas = blob_sas(AZ, "hello.txt", content_type="text/x-cistern",
                   content_disposition="attachment; filename=h.txt")
    r = requests.get(blob_url(gw_az.blob_url, AZ, "hello.txt") + "?" + sas, timeout=30)
    assert r.status_code == 200 and r.content == az_data.blobs["hello.txt"]
    assert r.headers["content-type"] == "text/x-cistern"
    assert r.headers["content-disposition"] == "attachment; filename=h.txt"


def test_shared_key_with_metadata_collation(gw_az):
    """Header names with '-' and '_' sort differently in Azure's collation and byte order."""
    url = gw_az.blob_url + "?comp=list"
    headers = {"x-ms-version": "2025-11-05", "x-ms-date": _date(),
               "x-ms-meta-a_b": "1", "x-ms-meta-a1": "2", "x-ms-meta-ab": "3",
               "x-ms-meta-a-b": "4", "x-ms-client-request-id": "collation"}
    signed = _shared_key("GET", url, headers, DEV_ACCOUNT, DEV_ACCOUNT_KEY)
    r = requests.get(url, headers=signed, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-ms-client-request-id"] == "collation"


def test_anonymous_public_container(gw_az, fs_data):
    r = requests.get(f"{gw_az.blob_url}/pub/open.txt", timeout=30)
    assert r.status_code == 200 and r.content == fs_data.files["pub/open.txt"]
    r = requests.get(f"{gw_az.blob_url}/pub?restype=container&comp=list", timeout=30)
    assert r.status_code == 200 and b"<Name>open.txt</Name>" in r.content
    r = requests.get(f"{gw_az.blob_url}/fsb/hello.txt", timeout=30)
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (404, "ResourceNotFound")


# ------------------------------------------------------------------ what is not implemented


def test_unimplemented_operations_say_so(gw_az):
    svc = via(gw_az)
    # Over an Azure origin tags are relayed (test_fidelity); a directory has none.
    with pytest.raises(HttpResponseError) as ei:
        svc.get_blob_client("fsb", "hello.txt").get_blob_tags()
    assert (ei.value.status_code, ei.value.error_code) == (501, "NotImplemented")
    # Writes this account may not make are refused before anything reaches the origin.
    with pytest.raises(HttpResponseError) as ei:
        svc.get_blob_client(AZ, "hello.txt").set_blob_metadata({"a": "b"})
    assert (ei.value.status_code, ei.value.error_code) == (403, "AuthorizationFailure")
    with pytest.raises(HttpResponseError) as ei:
        svc.get_container_client(AZ).upload_blob("new.txt", b"x")
    assert (ei.value.status_code, ei.value.error_code) == (403, "AuthorizationFailure")
    with pytest.raises(HttpResponseError) as ei:
        svc.create_container("newcontainer")
    assert (ei.value.status_code, ei.value.error_code) == (403, "AuthorizationFailure")
    url = gw_az.blob_url + "?restype=service&comp=bogus&" + container_sas(AZ)
    r = requests.get(url, timeout=30)
    assert r.status_code in (400, 403)
    with pytest.raises(ResourceNotFoundError):
        svc.get_blob_client(AZ, "never-there").get_blob_properties()


def test_sha256_of_a_parallel_download(gw_az, az_data):
    data = az_data.blobs["chunky.bin"]
    bc = via(gw_az, max_single_get_size=MIB, max_chunk_get_size=MIB).get_blob_client(AZ, "chunky.bin")
    got = bc.download_blob(max_concurrency=8).readall()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
