"""S3 wire shapes, differential against moto: what a client sees in listings (owners, V1's
unencoded Prefix), ListParts, reads of delete markers and error documents is what moto shows
for the same calls on a twin bucket; SigV4 timed by a signed `Date` header works as it does
at AWS; anonymous callers learn what S3 tells them.

Each differential case runs the same calls through Cistern (bucket `<name>`, served from moto)
and directly at moto (`<name>-d`) and compares what boto3 or raw HTTP saw. Where moto does not
behave as S3 does (it takes any Content-MD5 that is not a mismatch; its anonymous and skewed
requests), the test asserts S3's documented answer through Cistern alone and says so.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid

import pytest
from botocore.exceptions import ClientError

import s3util
from conftest import CisternFactory, Creds

OWNER = Creds("shapes", "shapes-secret-4c1e8a7d92b03f65")
TWINS = ["shpl", "shpv"]  # listings and uploads; versioned


@pytest.fixture(scope="module")
def shapes(request, cistern_bin, tmp_path_factory, fs_data):
    """A gateway exposing moto buckets shpl and shpv (their twins `-d` used directly), every
    other moto bucket through an auto-exposing origin (not public), and the fs buckets fsb
    (private) and pub (public_read)."""
    base = tmp_path_factory.mktemp("shapes")
    f = CisternFactory(cistern_bin, base, request, fs_data)
    moto = f.moto
    m = moto.client()
    for name in TWINS:
        for b in (name, f"{name}-d"):
            m.create_bucket(Bucket=b)
            if name == "shpv":
                m.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    m.create_bucket(Bucket="shp-unlisted")
    (base / "shapes.secret").write_text(OWNER.secret + "\n")
    extra = "".join(f'\n[buckets.{n}]\norigin = "moto"\n' for n in TWINS)
    extra += f"""
[origins.motoauto]
kind = "s3"
endpoint = "{moto.url}"
region = "us-east-1"
access_key_id = "{moto.creds.access_key}"
secret_access_key = {{ env = "MOTO_SECRET" }}
path_style = true
expose_buckets = true

[[principals]]
access_key = "{OWNER.access_key}"
secret = {{ file = "{base / 'shapes.secret'}" }}
buckets = ["*"]
permissions = ["read", "list", "write", "delete"]
"""
    c = f.with_config("shapes", extra=extra)
    yield c, moto
    f.close()


def pair(shapes, name):
    """[(who, client, bucket, endpoint, creds)] through Cistern and directly at moto."""
    c, moto = shapes
    return [("cistern", c.client(OWNER), name, c.endpoint, OWNER),
            ("moto", moto.client(), f"{name}-d", moto.endpoint, moto.creds)]


def same(results: dict):
    (a, ra), (b, rb) = results.items()
    assert ra == rb, f"{a}:\n{ra}\n{b}:\n{rb}"


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}/"


# ------------------------------------------------------------------------------ listings


def test_listings_carry_the_origins_owners(shapes):
    """V1 always has each object's Owner, V2 only with fetch-owner=true; both are the origin's
    owner (the one GetObjectAcl names), as moto shows them."""
    p = fresh("own")
    seen = {}
    for who, s3, b, _, _ in pair(shapes, "shpl"):
        for k in ("a", "b/c", "d e"):
            s3.put_object(Bucket=b, Key=p + k, Body=b"x")
        acl_owner = s3.get_object_acl(Bucket=b, Key=p + "a")["Owner"]
        v1 = s3.list_objects(Bucket=b, Prefix=p)["Contents"]
        v2 = s3.list_objects_v2(Bucket=b, Prefix=p)["Contents"]
        v2o = s3.list_objects_v2(Bucket=b, Prefix=p, FetchOwner=True)["Contents"]
        seen[who] = {
            "v1": [(o["Key"], o.get("Owner")) for o in v1],
            "v1 owner is the ACL's": all(o.get("Owner") == acl_owner for o in v1),
            "v2 without fetch-owner": [("Owner" in o) for o in v2],
            "v2 fetch-owner": [(o["Key"], o.get("Owner")) for o in v2o],
        }
    assert seen["cistern"]["v1 owner is the ACL's"], seen["cistern"]
    same(seen)



def test_version_listings_name_each_versions_and_markers_owner(shapes):
    """ListObjectVersions names the owner of every version and delete marker, as moto does
    (s3-tests' test_bucket_list_return_data_versioning reads it); a directory's versions name
    Cistern's stable owner."""
    p = fresh("vown")
    seen = {}
    for who, s3, b, _, _ in pair(shapes, "shpv"):
        s3.put_object(Bucket=b, Key=p + "a", Body=b"1")
        s3.put_object(Bucket=b, Key=p + "a", Body=b"2")
        s3.delete_object(Bucket=b, Key=p + "a")
        acl_owner = s3.get_bucket_acl(Bucket=b)["Owner"]
        lv = s3.list_object_versions(Bucket=b, Prefix=p)
        seen[who] = {
            "versions": [(v["Key"], v.get("Owner") == acl_owner) for v in lv["Versions"]],
            "markers": [(m["Key"], m.get("Owner") == acl_owner) for m in lv["DeleteMarkers"]],
        }
    assert seen["cistern"]["versions"] == [(p + "a", True)] * 2, seen
    same(seen)
    c, _ = shapes
    s3 = c.client(OWNER)
    owner = s3.list_buckets()["Owner"]
    fs = s3.list_object_versions(Bucket="fsb")["Versions"]
    assert fs and all(v["Owner"] == owner for v in fs), fs[:2]

def test_v1_prefix_is_not_url_encoded_but_v2s_is(shapes):
    """S3 encodes V1's Key, Marker, NextMarker, Delimiter and CommonPrefixes under
    encoding-type=url, but not its top-level Prefix (botocore does not decode it); V2 encodes
    its Prefix too."""
    from urllib.parse import quote, unquote
    p = fresh("enc")
    seen = {}
    for who, s3, b, ep, creds in pair(shapes, "shpl"):
        s3.put_object(Bucket=b, Key=p + "a\tb", Body=b"x")
        raw = {}
        for label, q in (("v1", f"prefix={quote(p, safe='')}a%09&encoding-type=url"),
                         ("v2", f"list-type=2&prefix={quote(p, safe='')}a%09&encoding-type=url"),
                         ("v1 newline", "prefix=%0A&encoding-type=url")):
            r = s3util.request(ep, "GET", f"/{b}?{q}", creds=creds)
            assert r.status == 200, r
            root = s3util.xml_root(r.body)
            raw[label] = ((root.findtext("Prefix") or "").replace(quote(p, safe=""), "P/")
                          .replace(p, "P/"),
                          [unquote(c.findtext("Key")).replace(p, "P/")
                           for c in root.findall("Contents")])
        seen[who] = {
            "raw": raw,
            "boto3 v1": s3.list_objects(Bucket=b, Prefix=p + "a\t")["Prefix"] == p + "a\t",
            "boto3 v1 newline": s3.list_objects(Bucket=b, Prefix="\n")["Prefix"],
            "boto3 v2": s3.list_objects_v2(Bucket=b, Prefix=p + "a\t")["Prefix"] == p + "a\t",
        }
    assert seen["cistern"]["raw"]["v1"] == ("P/a\t", ["P/a\tb"]), seen["cistern"]
    assert seen["cistern"]["raw"]["v2"][0] == "P/a%09", seen["cistern"]
    assert seen["cistern"]["boto3 v1 newline"] == "\n", seen["cistern"]
    same(seen)


def test_list_parts_names_initiator_owner_and_storage_class(shapes):
    seen = {}
    for who, s3, b, _, _ in pair(shapes, "shpl"):
        key = fresh("mpu") + "obj"
        up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        try:
            s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=1, Body=b"p" * 100)
            r = s3.list_parts(Bucket=b, Key=key, UploadId=up)
            seen[who] = {k: r.get(k) for k in ("Initiator", "Owner", "StorageClass")}
            seen[who]["parts"] = [(x["PartNumber"], x["Size"]) for x in r["Parts"]]
        finally:
            s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=up)
    assert seen["cistern"]["Owner"] and seen["cistern"]["Initiator"], seen
    same(seen)


def test_fs_listings_name_the_owner_list_buckets_names(shapes):
    """A directory has no owners: Cistern names the same stable owner in listings, ListParts
    and ListBuckets."""
    c, _ = shapes
    s3 = c.client(OWNER)
    owner = s3.list_buckets()["Owner"]
    v1 = s3.list_objects(Bucket="fsb")["Contents"]
    assert v1 and all(o["Owner"] == owner for o in v1), (owner, v1[:2])
    v2 = s3.list_objects_v2(Bucket="fsb", FetchOwner=True)["Contents"]
    assert all(o["Owner"] == owner for o in v2)
    assert all("Owner" not in o for o in s3.list_objects_v2(Bucket="fsb")["Contents"])


# ------------------------------------------------------------------------------ delete markers


def test_reads_of_a_delete_marker_answer_as_the_origin_does(shapes):
    c, moto = shapes
    seen = {}
    for who, s3, b, ep, creds in pair(shapes, "shpv"):
        key = fresh("dm") + "obj"
        s3.put_object(Bucket=b, Key=key, Body=b"one")
        s3.get_object(Bucket=b, Key=key)["Body"].read()  # cached through Cistern
        marker = s3.delete_object(Bucket=b, Key=key)["VersionId"]
        out = []
        for method, q in (("HEAD", ""), ("GET", ""), ("HEAD", ""),
                          ("HEAD", f"versionId={marker}"), ("GET", f"versionId={marker}")):
            r = s3util.get(ep, b, key, creds, query=q, method=method)
            out.append((method, bool(q), r.status, r.error_code(),
                        r.h("x-amz-delete-marker"),
                        r.h("x-amz-version-id") == marker if r.h("x-amz-version-id") else None))
        e = None
        try:
            s3.head_object(Bucket=b, Key=key)
        except ClientError as err:
            e = err.response["ResponseMetadata"]["HTTPHeaders"]
        out.append(("boto3 head", e.get("x-amz-delete-marker"), e.get("x-amz-version-id") == marker))
        # Written again behind Cistern's back (at moto directly): the marker was not cached
        # as a miss, so the new version is read at once.
        moto.client().put_object(Bucket=b, Key=key, Body=b"two")
        out.append(s3.get_object(Bucket=b, Key=key)["Body"].read())
        seen[who] = out
    assert ("HEAD", False, 404, None, "true", True) in seen["cistern"], seen["cistern"]
    same(seen)


# ------------------------------------------------------------------------------ error documents


def error_doc(fn):
    """The ClientError `fn` raises."""
    try:
        fn()
    except ClientError as e:
        return e
    raise AssertionError("no error")


def test_error_documents_name_the_request_and_what_was_missing(shapes):
    seen = {}
    for who, s3, b, ep, creds in pair(shapes, "shpl"):
        out = []
        for key in ("missing", "a b/ü&<x>"):
            r = s3util.get(ep, b, key, creds)
            root = s3util.xml_root(r.body)
            rid = r.h("x-amz-request-id") or r.h("x-amzn-requestid")
            out.append((r.status, root.findtext("Code"), root.findtext("Key"),
                        root.findtext("RequestId") == rid))
        nob = "shp-nosuch-" + uuid.uuid4().hex[:6]
        for path in (f"/{nob}/k", f"/{nob}?list-type=2"):
            r = s3util.request(ep, "GET", path, creds=creds)
            root = s3util.xml_root(r.body)
            rid = r.h("x-amz-request-id") or r.h("x-amzn-requestid")
            out.append((r.status, root.findtext("Code"), root.findtext("BucketName") == nob,
                        root.findtext("RequestId") == rid))
        # What s3-tests' test_object_requestid_matches_header_on_error checks, with boto3.
        bodies = {}
        s3.meta.events.register("after-call.s3.GetObject",
                                lambda http_response, **kw: bodies.update(b=http_response.content))
        e = error_doc(lambda: s3.get_object(Bucket=b, Key="bar"))
        body_rid = s3util.xml_root(bodies["b"]).findtext("RequestId")
        out.append(("boto3", e.response["Error"]["Code"], e.response["Error"].get("Key"),
                    body_rid is not None and body_rid == e.response["ResponseMetadata"]["RequestId"]))
        seen[who] = out
    assert all(x[-1] is True for x in seen["cistern"]), seen["cistern"]
    same(seen)


def test_a_relayed_error_document_names_cisterns_request(shapes):
    """A relayed request's error is the origin's document, with Cistern's request id."""
    seen = {}
    for who, _, b, ep, creds in pair(shapes, "shpv"):
        r = s3util.get(ep, b, "nope", creds, query="versionId=nosuchversion")
        root = s3util.xml_root(r.body)
        rid = r.h("x-amz-request-id") or r.h("x-amzn-requestid")
        seen[who] = (r.status, root.findtext("Code"), root.findtext("RequestId") == rid)
    assert seen["cistern"][2], seen
    same(seen)


# ------------------------------------------------------------------------------ Content-MD5


def test_a_malformed_content_md5_is_invalid_digest(shapes):
    """S3 refuses a Content-MD5 that is not 16 bytes of base64 with 400 InvalidDigest, and a
    well-formed one that does not match with BadDigest. Asserted against S3's documented
    answers: moto checks neither."""
    c, _ = shapes
    for md5 in ("YWJyYWNhZGFicmE=", "", "AWS HAHAHA"):
        r = s3util.request(c.endpoint, "PUT", "/shpl/md5-short", headers={"Content-MD5": md5},
                           creds=OWNER, body=b"bar")
        assert (r.status, r.error_code()) == (400, "InvalidDigest"), (md5, r)
    r = s3util.request(c.endpoint, "PUT", "/shpl/md5-bad",
                       headers={"Content-MD5": "rL0Y20xC+Fzt72VPzMSk2A=="}, creds=OWNER, body=b"bar")
    assert (r.status, r.error_code()) == (400, "BadDigest"), r


# ------------------------------------------------------------------------------ SigV4 with Date


def with_date_header(s3):
    """As s3-tests does: a Date header on every call, so botocore signs `date` (with the
    current time) and sends no x-amz-date."""
    def add(params, **kw):
        params["headers"]["Date"] = "set by botocore"
    s3.meta.events.register("before-call.s3.*", add)
    return s3


def test_sigv4_timed_by_a_signed_date_header(shapes):
    """Through Cistern the client signs with Date; directly at moto it signs with x-amz-date,
    as moto 5.2 with SigV4 checking on fails Date-signed requests with a 500 (KeyError
    'X-Amz-Date' in its verifier; AWS accepts them)."""
    seen = {}
    key = fresh("date") + "obj"
    for who, s3, b, _, _ in pair(shapes, "shpl"):
        d = with_date_header(s3) if who == "cistern" else s3
        d.put_object(Bucket=b, Key=key, Body=b"bar")
        seen[who] = (d.get_object(Bucket=b, Key=key)["Body"].read(),
                     d.head_object(Bucket=b, Key=key)["ContentLength"],
                     [o["Key"] == key for o in d.list_objects_v2(Bucket=b, Prefix=key)["Contents"]])
    same(seen)


def date_signed_get(endpoint, path, creds, at=None, send_date=None):
    """A raw GET signed as botocore signs one that carries Date (at time `at`, default now);
    `send_date` replaces the Date value sent."""
    from unittest import mock
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    at = at or dt.datetime.now(dt.timezone.utc)

    class Then(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return at if tz else at.replace(tzinfo=None)

        @classmethod
        def utcnow(cls):
            return at.replace(tzinfo=None)

    req = AWSRequest(method="GET", url=f"http://{endpoint}{path}", headers={"Date": "x"})
    with mock.patch("botocore.auth.datetime.datetime", Then):
        S3SigV4Auth(Credentials(creds.access_key, creds.secret), "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    assert "X-Amz-Date" not in headers and "date;host" in headers["Authorization"], headers
    assert headers["Date"] == email.utils.formatdate(int(at.timestamp())), headers
    if send_date is not None:
        headers["Date"] = send_date
    return s3util.request(endpoint, "GET", path, headers=headers)


def test_a_bad_or_skewed_date_is_refused_as_s3_refuses_it(shapes):
    """Asserted against S3's documented answers (moto does not check request times)."""
    c, _ = shapes
    c.client(OWNER).put_object(Bucket="shpl", Key="dated", Body=b"x")
    ok = date_signed_get(c.endpoint, "/shpl/dated", OWNER)
    assert (ok.status, ok.body) == (200, b"x"), ok
    bad = date_signed_get(c.endpoint, "/shpl/dated", OWNER, send_date="Bad Date")
    assert (bad.status, bad.error_code()) == (403, "AccessDenied"), bad
    assert b"requires a valid Date or x-amz-date header" in bad.body
    # Signed 20 minutes ago: a Date is held to the same 15-minute window as x-amz-date.
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)
    r = date_signed_get(c.endpoint, "/shpl/dated", OWNER, at=old)
    assert (r.status, r.error_code()) == (403, "RequestTimeTooSkewed"), r
    # Another time than the one signed.
    later = email.utils.formatdate(int(dt.datetime.now(dt.timezone.utc).timestamp()) + 2)
    r = date_signed_get(c.endpoint, "/shpl/dated", OWNER, send_date=later)
    assert (r.status, r.error_code()) == (403, "SignatureDoesNotMatch"), r


# ------------------------------------------------------------------------------ anonymous


def test_anonymous_callers_learn_what_s3_tells_them(shapes):
    """S3 tells anyone whether a bucket exists (404 NoSuchBucket vs 403), and a public bucket's
    missing key is 404 NoSuchKey; a private bucket's keys stay 403, asked of no origin when the
    bucket is configured."""
    c, _ = shapes
    before = c.origin_requests(origin="moto")
    cases = [
        ("GET", "/shpl/anything", 403, "AccessDenied"),
        ("HEAD", "/shpl/anything", 403, None),
        ("GET", "/shpl?list-type=2", 403, "AccessDenied"),
        ("GET", "/fsb/hello.txt", 403, "AccessDenied"),
        ("GET", "/shp-unlisted/k", 403, "AccessDenied"),  # exists at the auto-exposed origin
        ("GET", f"/shp-nosuch-{uuid.uuid4().hex[:6]}/k", 404, "NoSuchBucket"),
        ("HEAD", f"/shp-nosuch-{uuid.uuid4().hex[:6]}/k", 404, None),
        ("GET", f"/shp-nosuch-{uuid.uuid4().hex[:6]}?list-type=2", 404, "NoSuchBucket"),
        ("GET", "/pub/open.txt", 200, None),
        ("GET", "/pub/missing.txt", 404, "NoSuchKey"),
        ("HEAD", "/pub/missing.txt", 404, None),
    ]
    for method, path, status, code in cases:
        r = s3util.request(c.endpoint, method, path)
        assert (r.status, r.error_code()) == (status, code), (method, path, r)
    assert c.origin_requests(origin="moto") == before, "configured private buckets ask no origin"
