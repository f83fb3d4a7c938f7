"""Blob Batch and CORS through Cistern, compared with Azurite.

Like test_fidelity.py: a Cistern in front of Azurite exposes the twin containers `bxa` and `bxo`;
the same story runs through Cistern (account `owneracct`) and directly at Azurite on `bxad` /
`bxod` (account `devstoreaccount1`), and what the client saw must agree. Batches are sent by
azure-storage-blob (`ContainerClient.delete_blobs`, `set_standard_blob_tier_blobs`, with Shared
Key and with a SAS) and raw (account-scoped batches, which the Python SDK does not make, and
malformed ones). CORS rules are the Blob service properties of Azurite, set through Cistern.
"""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import quote

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ContainerClient,
    CorsRule,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)

from conftest import DEV_ACCOUNT, DEV_ACCOUNT_KEY, CisternFactory

OWNER_ACCOUNT = "owneracct"
OWNER_KEY = base64.b64encode(b"owner-account-key-0123456789abcdef").decode()
TWINS = ["bxa", "bxo"]


@pytest.fixture(scope="module")
def bx(request, cistern_bin, tmp_path_factory, fs_data):
    """(cistern, azurite): Cistern exposes Azurite's bxa and bxo; bxad and bxod are used
    directly. `devstoreaccount1` is a read-only principal through Cistern (conftest)."""
    base = tmp_path_factory.mktemp("batchcors")
    f = CisternFactory(cistern_bin, base, request, fs_data)
    az = request.getfixturevalue("azurite")
    svc = az.service()
    for name in TWINS:
        for c in (name, f"{name}d"):
            if not svc.get_container_client(c).exists():
                svc.create_container(c)
    (base / "owneracct.secret").write_text(OWNER_KEY + "\n")
    extra = "".join(f'\n[buckets.{n}]\norigin = "azurite"\n' for n in TWINS)
    extra += f"""
[[principals]]
access_key = "{OWNER_ACCOUNT}"
secret = {{ file = "{base / 'owneracct.secret'}" }}
buckets = ["*"]
permissions = ["read", "list", "write", "delete", "admin"]
"""
    c = f.with_azurite("batchcors", extra=extra)
    yield c, az
    f.close()


class Side:
    """One side of the comparison: an endpoint, an account and its key, container names."""

    def __init__(self, who, root, account, key, suffix):
        self.who, self.root, self.account, self.key, self.suffix = who, root, account, key, suffix

    @property
    def account_url(self):
        return f"{self.root}/{self.account}"

    def name(self, container):
        return container + self.suffix

    def service(self, **kw) -> BlobServiceClient:
        cs = (f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
              f"BlobEndpoint={self.account_url};")
        return BlobServiceClient.from_connection_string(cs, retry_total=0, **kw)

    def container(self, container) -> ContainerClient:
        return self.service().get_container_client(self.name(container))

    def container_sas(self, container, permission):
        return generate_container_sas(
            self.account, self.name(container), account_key=self.key, permission=permission,
            expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))

    def account_sas(self, **perm):
        return generate_account_sas(
            self.account, self.key, ResourceTypes(object=True), AccountSasPermissions(**perm),
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))


def sides(bx):
    c, az = bx
    return [Side("cistern", f"http://127.0.0.1:{c.blob_port}", OWNER_ACCOUNT, OWNER_KEY, ""),
            Side("azurite", f"http://127.0.0.1:{az.port}", DEV_ACCOUNT, DEV_ACCOUNT_KEY, "d")]


def same(results: dict):
    (a, ra), (b, rb) = results.items()
    assert ra == rb, f"{a}:\n{ra}\n{b}:\n{rb}"


def outcome(fn):
    try:
        return fn()
    except HttpResponseError as e:
        return ("error", e.status_code, e.error_code)


def seed(cc: ContainerClient, names, data=b"batch"):
    for n in names:
        cc.upload_blob(n, data, overwrite=True)


def part_status(parts):
    """(status, error code) of each sub-response the SDK parsed."""
    return [(p.status_code, p.headers.get("x-ms-error-code")) for p in parts]


def remaining(cc: ContainerClient, prefix):
    return sorted(b.name for b in cc.list_blobs(name_starts_with=prefix))


# ------------------------------------------------------------------------ raw batch helpers


def date():
    return dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def signed(method, url, headers, account, key):
    """Signs with the SDK's own Shared Key policy (azure-storage-blob)."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.rest import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
    req = HttpRequest(method, url, headers=dict(headers))
    SharedKeyCredentialPolicy(account, key).on_request(PipelineRequest(req, PipelineContext(None)))
    return dict(req.headers)


def sub_request(side: Side, method, path, cid, extra=None, sign=True):
    """One `application/http` part; `path` starts with the account (path-style)."""
    h = {"x-ms-date": date(), "x-ms-version": "2025-11-05", **(extra or {})}
    if sign:
        h = signed(method, side.root + path, h, side.account, side.key)
    lines = ["Content-Type: application/http", f"Content-ID: {cid}",
             "Content-Transfer-Encoding: binary", "", f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in h.items()] + ["Content-Length: 0", ""]
    return "\r\n".join(lines) + "\r\n"


def raw_batch(side: Side, path_query, parts, *, boundary="batch_7e1c9a", content_type=None,
              body=None, sas=None):
    """POSTs a batch; Shared Key signed unless `sas` (appended to the URL) is given."""
    if body is None:
        body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    body = body.encode() if isinstance(body, str) else body
    url = side.root + path_query + (f"&{sas}" if sas else "")
    h = {"x-ms-date": date(), "x-ms-version": "2025-11-05", "Content-Length": str(len(body))}
    if content_type is not False:
        h["Content-Type"] = content_type or f"multipart/mixed; boundary={boundary}"
    if sas is None:
        h = signed("POST", url, h, side.account, side.key)
    return requests.post(url, data=body, headers=h, timeout=60)


def parts_of(resp):
    """The batch answer's parts: (has Content-ID, status, x-ms-error-code)."""
    ct = resp.headers.get("content-type", "")
    assert ct.startswith("multipart/mixed; boundary=batchresponse_"), (resp.status_code, ct,
                                                                        resp.text[:500])
    b = ct.split("boundary=", 1)[1]
    out = []
    for chunk in resp.content.decode().split(f"--{b}")[1:]:
        if chunk.startswith("--"):
            break
        mime, _, rest = chunk.lstrip("\r\n").partition("\r\n\r\n")
        cid = any(line.lower().startswith("content-id:") for line in mime.split("\r\n"))
        status_line, _, more = rest.partition("\r\n")
        headers = {}
        for line in more.split("\r\n"):
            if not line:
                break
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        out.append((cid, int(status_line.split(" ")[1]), headers.get("x-ms-error-code")))
    return out


def top(resp):
    """A batch refused outright: status and error code."""
    return (resp.status_code, resp.headers.get("x-ms-error-code"))


# ------------------------------------------------------------------- SDK batches, Shared Key


def test_delete_blobs_with_shared_key_and_no_stale_hit(bx):
    results = {}
    for s in sides(bx):
        cc = s.container("bxa")
        seed(cc, ["del/a", "del/b c", "del/keep"])
        if s.who == "cistern":
            for _ in range(2):  # the second read is a hit
                assert cc.download_blob("del/a").readall() == b"batch"
        parts = list(cc.delete_blobs("del/a", "del/b c", "del/missing", raise_on_any_failure=False))
        results[s.who] = [part_status(parts), remaining(cc, "del/"),
                          outcome(lambda: cc.download_blob("del/a").readall())]
        with pytest.raises(HttpResponseError) as ei:  # raise_on_any_failure (the default)
            cc.delete_blobs("del/keep", "del/missing")
        results[s.who].append((type(ei.value).__name__, remaining(cc, "del/")))
    same(results)
    assert results["cistern"][0] == [(202, None), (202, None), (404, "BlobNotFound")]
    assert results["cistern"][2] == ("error", 404, "BlobNotFound")


def test_cached_blob_deleted_by_batch_reads_as_gone(bx):
    c, _ = bx
    s = sides(bx)[0]
    cc = s.container("bxa")
    seed(cc, ["stale/x"], b"cached bytes")
    bc = cc.get_blob_client("stale/x")
    assert bc.download_blob().readall() == b"cached bytes"
    r = bc.download_blob()
    assert r.readall() == b"cached bytes"
    hits = c.metric("cistern_cache_results_total", result="hit")
    assert hits >= 1
    assert [p.status_code for p in cc.delete_blobs("stale/x")] == [202]
    with pytest.raises(ResourceNotFoundError):
        bc.download_blob().readall()
    with pytest.raises(ResourceNotFoundError):
        bc.get_blob_properties()


def test_set_standard_blob_tier_blobs_with_shared_key(bx):
    results = {}
    for s in sides(bx):
        cc = s.container("bxa")
        seed(cc, ["tier/a", "tier/b"])
        cc.get_blob_client("tier/a").get_blob_properties()  # cached before the change
        parts = list(cc.set_standard_blob_tier_blobs("Cool", "tier/a", "tier/b", "tier/missing",
                                                     raise_on_any_failure=False))
        tiers = [cc.get_blob_client(n).get_blob_properties().blob_tier for n in ("tier/a", "tier/b")]
        results[s.who] = [part_status(parts), tiers]
    same(results)
    assert results["cistern"] == [[(200, None), (200, None), (404, "BlobNotFound")],
                                  ["Cool", "Cool"]]


# ------------------------------------------------------------------------- SDK batches, SAS


def test_delete_and_tier_with_a_container_sas(bx):
    results = {}
    for s in sides(bx):
        seed(s.container("bxa"), ["sas/a", "sas/b", "sas/t"])
        url = f"{s.account_url}/{s.name('bxa')}"
        deleter = ContainerClient.from_container_url(f"{url}?{s.container_sas('bxa', 'rd')}")
        writer = ContainerClient.from_container_url(f"{url}?{s.container_sas('bxa', 'rw')}")
        out = [part_status(deleter.delete_blobs("sas/a", "sas/b", raise_on_any_failure=False)),
               part_status(writer.set_standard_blob_tier_blobs("Cool", "sas/t",
                                                               raise_on_any_failure=False)),
               remaining(s.container("bxa"), "sas/"),
               s.container("bxa").get_blob_client("sas/t").get_blob_properties().blob_tier]
        results[s.who] = out
    same(results)
    assert results["cistern"][:2] == [[(202, None), (202, None)], [(200, None)]]


def test_a_sub_request_the_caller_may_not_make_is_refused_inside_the_batch(bx):
    """A read-only SAS: 403 for each sub-request, compared with Azurite; nothing deleted."""
    results = {}
    for s in sides(bx):
        cc = s.container("bxa")
        seed(cc, ["ro/a", "ro/b"])
        url = f"{s.account_url}/{s.name('bxa')}?{s.container_sas('bxa', 'r')}"
        reader = ContainerClient.from_container_url(url)
        results[s.who] = [part_status(reader.delete_blobs("ro/a", "ro/b",
                                                          raise_on_any_failure=False)),
                          part_status(reader.set_standard_blob_tier_blobs(
                              "Cool", "ro/a", raise_on_any_failure=False)),
                          remaining(cc, "ro/")]
    same(results)
    assert results["cistern"][0][0][0] == 403
    assert results["cistern"][2] == ["ro/a", "ro/b"]


def test_a_read_only_principal_cannot_delete_through_a_batch(bx):
    """devstoreaccount1 may only read and list through this Cistern (its own Shared Key)."""
    c, _ = bx
    owner = sides(bx)[0].container("bxa")
    seed(owner, ["rop/a"])
    reader = sides(bx)[0]
    reader = Side("cistern", reader.root, DEV_ACCOUNT, DEV_ACCOUNT_KEY, "").container("bxa")
    assert reader.download_blob("rop/a").readall() == b"batch"  # a hit it may read
    parts = list(reader.delete_blobs("rop/a", raise_on_any_failure=False))
    assert part_status(parts) == [(403, "AuthorizationFailure")]
    parts = list(reader.set_standard_blob_tier_blobs("Cool", "rop/a", raise_on_any_failure=False))
    assert part_status(parts) == [(403, "AuthorizationFailure")]
    assert owner.download_blob("rop/a").readall() == b"batch"
    assert remaining(owner, "rop/") == ["rop/a"]


# ------------------------------------------------------------------------------ raw batches


def test_account_scoped_batches_with_shared_key_and_an_account_sas(bx):
    results = {}
    for s in sides(bx):
        a, o = s.name("bxa"), s.name("bxo")
        seed(s.container("bxa"), ["acct/a", "acct/s"])
        seed(s.container("bxo"), ["acct/b"])
        r = raw_batch(s, f"/{s.account}?comp=batch", [
            sub_request(s, "DELETE", f"/{s.account}/{a}/acct/a", 0),
            sub_request(s, "DELETE", f"/{s.account}/{o}/acct/b", 1),
            sub_request(s, "DELETE", f"/{s.account}/{o}/acct/nope", 2)])
        out = [r.status_code, parts_of(r)]
        sas = s.account_sas(delete=True)
        r = raw_batch(s, f"/{s.account}?comp=batch", [
            sub_request(s, "DELETE", f"/{s.account}/{a}/acct/s?{sas}", 0, sign=False)], sas=sas)
        out += [r.status_code, parts_of(r), remaining(s.container("bxa"), "acct/"),
                remaining(s.container("bxo"), "acct/")]
        results[s.who] = out
    same(results)
    assert results["cistern"][:4] == [202, [(True, 202, None), (True, 202, None),
                                            (True, 404, "BlobNotFound")],
                                      202, [(True, 202, None)]]


def test_boundaries_as_azurite_tests_write_them(bx):
    """A boundary with `=`, the parameter named in another case, whitespace before its value."""
    results = {}
    for s in sides(bx):
        a = s.name("bxa")
        seed(s.container("bxa"), ["bnd/1", "bnd/2", "bnd/3"])
        out = []
        for i, (boundary, ct) in enumerate([
                ("batch_x==", "multipart/mixed; boundary=batch_x=="),
                ("batch_y", "multipart/mixed; Boundary=batch_y"),
                ("batch_z", "multipart/mixed; boundary= batch_z")]):
            r = raw_batch(s, f"/{s.account}/{a}?restype=container&comp=batch",
                          [sub_request(s, "DELETE", f"/{s.account}/{a}/bnd/{i + 1}", 0)],
                          boundary=boundary, content_type=ct)
            out.append((r.status_code, parts_of(r)))
        out.append(remaining(s.container("bxa"), "bnd/"))
        results[s.who] = out
    same(results)
    assert results["cistern"][-1] == []


def test_malformed_batches_answer_as_azurite_does(bx):
    results = {}
    for s in sides(bx):
        a, o = s.name("bxa"), s.name("bxo")
        seed(s.container("bxa"), ["bad/a", "bad/b"])
        cont = f"/{s.account}/{a}?restype=container&comp=batch"
        acct = f"/{s.account}?comp=batch"
        dele = sub_request(s, "DELETE", f"/{s.account}/{a}/bad/a", 0)
        out = []
        # Refused outright: no Content-Type (Azurite answers an empty 400).
        r = raw_batch(s, cont, [dele], content_type=False)
        out.append(r.status_code)
        # Answered in one part without a Content-ID.
        for ct in ("multipart/mixed", "multipart/mixed; boundary=",
                   "multipart/mixed; boundary=a; boundary=b"):
            out.append((ct, parts_of(raw_batch(s, cont, [dele], content_type=ct))))
        for name, path, parts, body in [
            ("garbage part", acct, None, "--batch_7e1c9a\r\nhello\r\n--batch_7e1c9a--\r\n"),
            ("no parts", acct, None, "--batch_7e1c9a--\r\n"),
            ("not a batch operation", acct,
             [sub_request(s, "GET", f"/{s.account}/{a}/bad/a", 0)], None),
            ("mixed operations", acct,
             [dele, sub_request(s, "PUT", f"/{s.account}/{a}/bad/b?comp=tier", 1,
                                {"x-ms-access-tier": "Cool"})], None),
            ("other container", cont,
             [sub_request(s, "DELETE", f"/{s.account}/{o}/bad/a", 0)], None),
            ("too many", acct,
             [sub_request(s, "DELETE", f"/{s.account}/{a}/bad/n{i}", i, sign=False)
              for i in range(257)], None),
        ]:
            r = raw_batch(s, path, parts, body=body)
            out.append((name, r.status_code, parts_of(r)))
        out.append(remaining(s.container("bxa"), "bad/"))
        results[s.who] = out
    same(results)
    got = dict((x[0], x[2]) for x in results["cistern"][4:-1])
    assert got["mixed operations"] == [(False, 400, "AllBatchSubRequestsShouldBeSameApi")]
    assert got["too many"] == [(False, 400, "ExceedsMaxBatchRequestCount")]
    assert results["cistern"][0] == 400
    assert results["cistern"][-1] == ["bad/a", "bad/b"]


def test_cistern_refuses_what_it_cannot_read_with_azure_errors(bx):
    """Cistern's own answers (Azurite gives these no Blob error): a missing Content-Type, a
    body over 4 MiB."""
    s = sides(bx)[0]
    path = f"/{s.account}/bxa?restype=container&comp=batch"
    r = raw_batch(s, path, [sub_request(s, "DELETE", f"/{s.account}/bxa/x", 0)],
                  content_type=False)
    assert top(r) == (400, "MissingRequiredHeader"), r.text
    big = "--batch_7e1c9a\r\n" + "x" * (4 << 20) + "\r\n--batch_7e1c9a--\r\n"
    r = raw_batch(s, path, None, body=big)
    assert top(r) == (413, "RequestBodyTooLarge"), r.text


def test_batches_over_directory_and_s3_origins(bx):
    """Delete works over every origin; Set Blob Tier has no meaning there: 501 per sub-request."""
    c, _ = bx
    svc = sides(bx)[0].service()
    for container in ("fsb", "motob"):
        cc = svc.get_container_client(container)
        seed(cc, ["batch/x", "batch/y"])
        assert cc.download_blob("batch/x").readall() == b"batch"
        tier = list(cc.set_standard_blob_tier_blobs("Cool", "batch/x", raise_on_any_failure=False))
        assert part_status(tier) == [(501, "NotImplemented")], container
        parts = list(cc.delete_blobs("batch/x", "batch/y", "batch/none", raise_on_any_failure=False))
        assert part_status(parts) == [(202, None), (202, None), (404, "BlobNotFound")], container
        with pytest.raises(ResourceNotFoundError):
            cc.download_blob("batch/x").readall()
        assert remaining(cc, "batch/") == [], container


# ------------------------------------------------------------------------------------- CORS


@pytest.fixture
def cors_rules(bx):
    """Sets Azurite's CORS rules through Cistern (relayed; Cistern drops its cached rules);
    cleared afterwards."""
    owner = sides(bx)[0].service()

    def apply(rules):
        owner.set_service_properties(cors=rules)

    yield apply
    owner.set_service_properties(cors=[])


CORS_KEYS = ("access-control-allow-origin", "access-control-allow-methods",
             "access-control-allow-headers", "access-control-max-age",
             "access-control-allow-credentials", "vary")


def cors_view(r):
    h = {k.lower(): v for k, v in r.headers.items()}
    exposed = h.get("access-control-expose-headers")
    return (r.status_code, h.get("x-ms-error-code"), {k: h[k] for k in CORS_KEYS if k in h},
            None if exposed is None else sorted(exposed.split(",")))


def preflight(s: Side, path, origin=None, method=None, headers=None):
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return cors_view(requests.options(s.root + path, headers=h, timeout=30))


PREFLIGHTS = [
    ("http://app.example", "GET", None),
    ("http://APP.example", "put", "x-ms-meta-color,Content-Type"),
    ("http://app.example", "PUT", "x-ms-blob-type"),
    ("http://app.example", "DELETE", None),
    ("http://foo.contoso.com", "GET", None),
    ("http://foo.bar.contoso.com", "GET", "x-ms-meta-a"),
    ("http://contoso.com", "GET", None),
    ("http://evil.example", "GET", None),
    ("http://evil.example", "HEAD", "anything"),
    (None, "GET", None),
    ("http://app.example", None, None),
]


def test_preflights_match_azurite(bx, cors_rules):
    cors_rules([
        CorsRule(["http://app.example", "http://*.contoso.com"], ["GET", "PUT"],
                 allowed_headers=["x-ms-meta-*", "content-type"],
                 exposed_headers=["x-ms-meta-*", "x-ms-request-id"], max_age_in_seconds=60),
        CorsRule(["*"], ["HEAD"], max_age_in_seconds=5),
    ])
    results = {}
    for s in sides(bx):
        a = s.name("bxa")
        results[s.who] = [
            preflight(s, path, *case)
            for path in (f"/{s.account}/{a}/some/blob?comp=tier",
                         f"/{s.account}/?restype=service&comp=properties",
                         f"/{s.account}/{a}?restype=container&comp=list")
            for case in PREFLIGHTS]
    same(results)
    got = results["cistern"]
    assert got[0][:3] == (200, None, {
        "access-control-allow-origin": "http://app.example",
        "access-control-allow-methods": "GET", "access-control-max-age": "60",
        "access-control-allow-credentials": "true"})
    assert got[2][:2] == (403, "CorsPreflightFailure")
    assert got[9][:2] == (400, "InvalidHeaderValue")
    assert got[10][:2] == (400, "InvalidHeaderValue")


def test_rule_changes_through_cistern_apply_at_once(bx, cors_rules):
    s = sides(bx)[0]
    path = f"/{s.account}/bxa/x"
    cors_rules([CorsRule(["http://one.example"], ["GET"])])
    assert preflight(s, path, "http://one.example", "GET")[0] == 200
    cors_rules([CorsRule(["http://two.example"], ["GET"])])
    assert preflight(s, path, "http://one.example", "GET")[:2] == (403, "CorsPreflightFailure")
    assert preflight(s, path, "http://two.example", "GET")[0] == 200
    cors_rules([])
    assert preflight(s, path, "http://two.example", "GET")[:2] == (403, "CorsPreflightFailure")


def test_cors_headers_on_cached_reads_and_errors(bx, cors_rules):
    cors_rules([
        CorsRule(["http://app.example"], ["GET", "HEAD"],
                 exposed_headers=["x-ms-meta-*", "x-ms-request-id", "x-ms-absent"]),
        CorsRule(["*"], ["DELETE"]),
    ])
    results = {}
    for s in sides(bx):
        cc = s.container("bxa")
        cc.upload_blob("cors/x", b"cors", overwrite=True, metadata={"color": "blue"})
        out = []
        for origin, method, path in [
                ("http://app.example", "GET", f"/{s.name('bxa')}/cors/x"),  # a miss
                ("http://app.example", "GET", f"/{s.name('bxa')}/cors/x"),  # a hit
                ("http://app.example", "HEAD", f"/{s.name('bxa')}/cors/x"),
                ("http://other.example", "GET", f"/{s.name('bxa')}/cors/x"),  # Vary only
                (None, "GET", f"/{s.name('bxa')}/cors/x"),
                ("http://app.example", "GET", f"/{s.name('bxa')}/cors/missing"),  # 404
                ("http://app.example", "GET", "/nocontainerhere?restype=container"),  # 404
                ("http://anywhere.example", "DELETE", f"/{s.name('bxa')}/cors/missing")]:
            url = s.account_url + path
            h = {"x-ms-date": date(), "x-ms-version": "2025-11-05"}
            if origin:
                h["Origin"] = origin
            h = signed(method, url, h, s.account, s.key)
            r = requests.request(method, url, headers=h, timeout=30)
            out.append(cors_view(r))
            if s.who == "cistern" and len(out) == 2:
                assert r.headers.get("x-cistern-cache") == "hit"
        results[s.who] = out
    same(results)
    got = results["cistern"]
    assert got[1][2] == {"access-control-allow-origin": "http://app.example",
                         "access-control-allow-credentials": "true", "vary": "Origin"}
    assert got[1][3] == ["x-ms-absent", "x-ms-meta-color", "x-ms-request-id"]
    assert got[3][2] == {"vary": "Origin"}
    assert got[4][2] == {} and got[4][3] is None
    assert got[5][:2] == (404, "BlobNotFound") and got[5][2]["access-control-allow-origin"]
    assert got[7][2] == {"access-control-allow-origin": "*"}


def test_no_azure_origin_means_no_cors_rules(gw_fs_only):
    url = f"http://127.0.0.1:{gw_fs_only.blob_port}/devstoreaccount1/fsb/hello.txt"
    r = requests.options(url, headers={"Origin": "http://app.example",
                                       "Access-Control-Request-Method": "GET"}, timeout=30)
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (403, "CorsPreflightFailure")
    assert not any(k.lower().startswith("access-control-") for k in r.headers)


def test_a_recursive_delete_in_a_batch_is_still_delete_blob(bx):
    """A sub-request shaped like a Data Lake recursive delete (`DELETE …?recursive=true`) is a
    Delete Blob inside a batch, on both sides: it deletes no directory."""
    results = {}
    for s in sides(bx):
        seed(s.container("bxa"), ["rdir/a", "rdir/b"])
        r = raw_batch(s, f"/{s.account}?comp=batch", [
            sub_request(s, "DELETE", f"/{s.account}/{s.name('bxa')}/rdir?recursive=true", 0)])
        results[s.who] = [r.status_code, parts_of(r), remaining(s.container("bxa"), "rdir/")]
    same(results)
    assert results["cistern"] == [202, [(True, 404, "BlobNotFound")], ["rdir/a", "rdir/b"]]
