"""Writes through Cistern (S3 PutObject / DeleteObject) onto every origin kind: read-your-writes,
bad digests leave the origin unchanged, and writes need the write permission."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

import s3util
from conftest import MIB, TESTER, WRITER


@pytest.fixture
def gw_w(cistern_factory, tmp_path):
    """A fresh gateway with a writable bucket on each origin kind: fsw (a directory), motow
    (moto) and azw (Azurite)."""
    moto = cistern_factory.moto
    moto.client().create_bucket(Bucket="motow")
    moto.client().create_bucket(Bucket="motov")
    moto.client().put_bucket_versioning(Bucket="motov",
                                        VersioningConfiguration={"Status": "Enabled"})
    az = cistern_factory.request.getfixturevalue("azurite")
    svc = az.service()
    if not svc.get_container_client("azw").exists():
        svc.create_container("azw")
    root = tmp_path / "wroot"
    (root / "fsw").mkdir(parents=True)
    extra = f"""
[origins.wfs]
kind = "fs"
root = "{root}"

[buckets.fsw]
origin = "wfs"

[buckets.motow]
origin = "moto"

[buckets.azw]
origin = "azurite"

[buckets.motov]
origin = "moto"

[buckets.motop]
origin = "moto"
origin_bucket = "motow"
populate_on_write = true

[buckets.azp]
origin = "azurite"
origin_bucket = "azw"
populate_on_write = true
"""
    c = cistern_factory.with_azurite("writes", extra=extra)
    return c, {"fsw": root / "fsw", "motow": moto, "azw": az}


BUCKETS = ["fsw", "motow", "azw"]


def origin_bytes(origins, bucket, key):
    """The object as the origin itself holds it (None when absent)."""
    if bucket == "fsw":
        p = origins["fsw"] / key
        return p.read_bytes() if p.exists() else None
    if bucket == "motow":
        try:
            return origins["motow"].client().get_object(Bucket="motow", Key=key)["Body"].read()
        except ClientError:
            return None
    bc = origins["azw"].service().get_blob_client("azw", key)
    return bc.download_blob().readall() if bc.exists() else None


@pytest.mark.parametrize("bucket", BUCKETS)
def test_overwrite_then_read_then_delete(gw_w, bucket):
    c, origins = gw_w
    s3 = c.client(WRITER)
    key = "ckpt/step-1.bin"
    v1 = s3util.det_bytes(f"{bucket}-v1", 3 * MIB + 11)
    v2 = s3util.det_bytes(f"{bucket}-v2", 2 * MIB + 5)
    s3.put_object(Bucket=bucket, Key=key, Body=v1)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == v1
    # Cached now; an overwrite through Cistern is visible at once, never the old bytes.
    assert s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-99")["Body"].read() == v1[:100]
    s3.put_object(Bucket=bucket, Key=key, Body=v2)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == v2
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(v2)
    assert origin_bytes(origins, bucket, key) == v2
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key=key)
    assert ei.value.response["Error"]["Code"] == "NoSuchKey"
    assert origin_bytes(origins, bucket, key) is None
    # Deleting what is not there succeeds, as S3 does.
    s3.delete_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize("bucket", BUCKETS)
def test_wrong_content_md5_is_refused_and_the_origin_unchanged(gw_w, bucket):
    c, origins = gw_w
    s3 = c.client(WRITER)
    key = "digest.bin"
    good = s3util.det_bytes("digest-good", MIB + 3)
    s3.put_object(Bucket=bucket, Key=key, Body=good)
    bad_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key=key, Body=s3util.det_bytes("digest-new", MIB),
                      ContentMD5=bad_md5)
    assert ei.value.response["Error"]["Code"] == "BadDigest", ei.value.response
    assert origin_bytes(origins, bucket, key) == good
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == good
    # The right MD5 goes through.
    new = s3util.det_bytes("digest-new", MIB)
    s3.put_object(Bucket=bucket, Key=key, Body=new,
                  ContentMD5=base64.b64encode(hashlib.md5(new).digest()).decode())
    assert origin_bytes(origins, bucket, key) == new


@pytest.mark.parametrize("bucket", BUCKETS)
def test_wrong_checksum_is_refused(gw_w, bucket):
    c, origins = gw_w
    key = "checksum.bin"
    body = b"checksummed body\n" * 1000
    r = s3util.request(c.endpoint, "PUT", f"/{bucket}/{key}", creds=WRITER, body=body,
                       headers={"x-amz-checksum-crc32": "AAAAAA=="})
    assert r.status == 400 and r.error_code() == "BadDigest", r
    assert origin_bytes(origins, bucket, key) is None
    s3 = c.client(WRITER)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="CRC32")
    assert origin_bytes(origins, bucket, key) == body


@pytest.mark.parametrize("bucket", BUCKETS)
def test_signed_streaming_uploads_and_bad_chunk_signatures(gw_w, bucket):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signed. A wrong signature on any chunk
    — the first, a middle one, or the empty final one — fails the PUT and leaves the origin
    as it was."""
    c, origins = gw_w
    key = "streamed/obj.bin"
    data = s3util.det_bytes(f"stream-{bucket}", 300 * 1024 + 17)  # 5 chunks of 64 KiB + final
    r = s3util.streaming_put(c.endpoint, f"/{bucket}/{key}", WRITER, data)
    assert r.status == 200, r
    assert origin_bytes(origins, bucket, key) == data
    assert c.client(WRITER).get_object(Bucket=bucket, Key=key)["Body"].read() == data
    for bad in (0, 2, 5):
        new = s3util.det_bytes(f"stream-bad-{bad}", len(data))
        r = s3util.streaming_put(c.endpoint, f"/{bucket}/{key}", WRITER, new, bad_chunk=bad)
        assert r.status == 403 and r.error_code() == "SignatureDoesNotMatch", (bad, r)
        assert origin_bytes(origins, bucket, key) == data, f"bad chunk {bad} reached the origin"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_unsigned_streaming_upload_with_a_checksum_trailer(gw_w, bucket):
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER with `x-amz-checksum-crc32` in the trailer (what the
    SDKs send over HTTPS): the right CRC stores the object, a wrong one stores nothing."""
    c, origins = gw_w
    key = "trailer/obj.bin"
    data = s3util.det_bytes(f"trailer-{bucket}", 200 * 1024 + 3)
    r = s3util.unsigned_trailer_put(c.endpoint, f"/{bucket}/{key}", WRITER, data)
    assert r.status == 200, r
    assert origin_bytes(origins, bucket, key) == data
    other = s3util.det_bytes("trailer-other", len(data))
    r = s3util.unsigned_trailer_put(c.endpoint, f"/{bucket}/{key}", WRITER, other, crc="AAAAAA==")
    assert r.status == 400 and r.error_code() == "BadDigest", r
    assert origin_bytes(origins, bucket, key) == data


def test_object_tagging_is_passed_to_an_s3_origin(gw_w):
    c, origins = gw_w
    s3 = c.client(WRITER)
    s3.put_object(Bucket="motow", Key="tags/obj", Body=b"tagged")
    tags = [{"Key": "team", "Value": "ml co+1"}, {"Key": "tier", "Value": "hot"}]
    s3.put_object_tagging(Bucket="motow", Key="tags/obj", Tagging={"TagSet": tags})
    got = c.client(TESTER).get_object_tagging(Bucket="motow", Key="tags/obj")["TagSet"]
    direct = origins["motow"].client().get_object_tagging(Bucket="motow", Key="tags/obj")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == \
        sorted((t["Key"], t["Value"]) for t in direct) == [("team", "ml co+1"), ("tier", "hot")]
    with pytest.raises(ClientError) as ei:
        c.client(TESTER).put_object_tagging(Bucket="motow", Key="tags/obj",
                                            Tagging={"TagSet": []})
    assert ei.value.response["Error"]["Code"] == "AccessDenied"
    s3.delete_object_tagging(Bucket="motow", Key="tags/obj")
    assert s3.get_object_tagging(Bucket="motow", Key="tags/obj")["TagSet"] == []
    for bucket in ("fsw", "azw"):
        s3.put_object(Bucket=bucket, Key="tags/obj", Body=b"x")
        with pytest.raises(ClientError) as ei:
            s3.get_object_tagging(Bucket=bucket, Key="tags/obj")
        assert ei.value.response["Error"]["Code"] == "NotImplemented", bucket


def test_list_object_versions_differential_and_on_a_directory(gw_w):
    c, origins = gw_w
    s3 = c.client(WRITER)
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket="motov", Key="ver/obj", Body=body)
    s3.put_object(Bucket="motov", Key="ver/other", Body=b"o")
    s3.delete_object(Bucket="motov", Key="ver/other")

    def shape(r):
        return ([(v["Key"], v["VersionId"], v["IsLatest"], v["ETag"], v["Size"])
                 for v in r.get("Versions", [])],
                [(d["Key"], d["VersionId"], d["IsLatest"]) for d in r.get("DeleteMarkers", [])])

    through = s3.list_object_versions(Bucket="motov", Prefix="ver/")
    direct = origins["motow"].client().list_object_versions(Bucket="motov", Prefix="ver/")
    assert shape(through) == shape(direct)
    assert len(through["Versions"]) == 3 and len(through["DeleteMarkers"]) == 1
    page = s3.list_object_versions(Bucket="motov", Prefix="ver/", MaxKeys=1)
    assert page["IsTruncated"] and page["NextKeyMarker"]
    # A directory keeps no versions: each object is its one `null` version.
    s3.put_object(Bucket="fsw", Key="ver/a", Body=b"a")
    s3.put_object(Bucket="fsw", Key="ver/b", Body=b"bb")
    fs = s3.list_object_versions(Bucket="fsw", Prefix="ver/")
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in fs["Versions"]] == \
        [("ver/a", "null", True, 1), ("ver/b", "null", True, 2)]


def test_writes_need_the_write_permission(gw_w):
    c, origins = gw_w
    with pytest.raises(ClientError) as ei:
        c.client(TESTER).put_object(Bucket="fsw", Key="nope.txt", Body=b"x")
    assert ei.value.response["Error"]["Code"] == "AccessDenied"
    assert origin_bytes(origins, "fsw", "nope.txt") is None
    with pytest.raises(ClientError) as ei:
        c.client(TESTER).delete_object(Bucket="fsw", Key="x")
    assert ei.value.response["Error"]["Code"] == "AccessDenied"


def test_upload_file_and_aws_cli_cp(gw_w, tmp_path, aws_env):
    from test_clients import aws
    c, origins = gw_w
    data = s3util.det_bytes("cli-upload", 4 * MIB + 1)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    env = dict(aws_env, AWS_ACCESS_KEY_ID=WRITER.access_key,
               AWS_SECRET_ACCESS_KEY=WRITER.secret)
    aws(env, c.url, "s3", "cp", str(src), "s3://fsw/cli/up.bin")
    assert origin_bytes(origins, "fsw", "cli/up.bin") == data
    p = aws(env, c.url, "s3", "rm", "s3://fsw/cli/up.bin")
    assert origin_bytes(origins, "fsw", "cli/up.bin") is None, p


# ------------------------------------------------------------------ the Blob dialect


def blob_writer(c):
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob import service
    return service(c.connection_string(WRITER_ACCOUNT, WRITER_ACCOUNT_KEY))


@pytest.mark.parametrize("bucket", BUCKETS)
def test_blob_upload_overwrite_read_back_through_s3_and_delete(gw_w, bucket):
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContentSettings
    c, origins = gw_w
    bc = blob_writer(c).get_blob_client(bucket, "blob/ckpt.bin")
    v1 = s3util.det_bytes(f"blob-{bucket}-v1", 2 * MIB + 3)
    v2 = s3util.det_bytes(f"blob-{bucket}-v2", 3 * MIB + 1)
    bc.upload_blob(v1, overwrite=True,
                   content_settings=ContentSettings(content_type="application/x-ckpt"))
    assert bc.download_blob().readall() == v1
    bc.upload_blob(v2, overwrite=True)
    assert bc.download_blob(max_concurrency=4).readall() == v2
    s3 = c.client(WRITER)
    assert s3.get_object(Bucket=bucket, Key="blob/ckpt.bin")["Body"].read() == v2
    assert origin_bytes(origins, bucket, "blob/ckpt.bin") == v2
    bc.delete_blob()
    with pytest.raises(ResourceNotFoundError) as ei:
        bc.download_blob()
    assert ei.value.error_code == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError) as ei:
        bc.delete_blob()
    assert ei.value.error_code == "BlobNotFound"
    assert origin_bytes(origins, bucket, "blob/ckpt.bin") is None


@pytest.mark.parametrize("bucket", BUCKETS)
def test_blob_put_with_wrong_md5_leaves_the_origin_unchanged(gw_w, bucket):
    import requests
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob import _date, _shared_key
    c, origins = gw_w
    bc = blob_writer(c).get_blob_client(bucket, "md5.bin")
    good = s3util.det_bytes("blob-md5-good", MIB)
    bc.upload_blob(good, overwrite=True)
    url = f"http://127.0.0.1:{c.blob_port}/{WRITER_ACCOUNT}/{bucket}/md5.bin"
    body = s3util.det_bytes("blob-md5-new", MIB)
    wrong = base64.b64encode(hashlib.md5(b"not it").digest()).decode()
    headers = {"x-ms-version": "2025-11-05", "x-ms-date": _date(), "x-ms-blob-type": "BlockBlob",
               "Content-Length": str(len(body)), "Content-MD5": wrong}
    signed = _shared_key("PUT", url, headers, WRITER_ACCOUNT, WRITER_ACCOUNT_KEY)
    r = requests.put(url, data=body, headers=signed, timeout=60)
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (400, "Md5Mismatch"), r.text
    assert origin_bytes(origins, bucket, "md5.bin") == good
    assert bc.download_blob().readall() == good


@pytest.mark.parametrize("src,dst", [("azw", "fsw"), ("fsw", "azw"), ("motow", "azw")])
def test_copy_blob_within_the_account_across_origins(gw_w, src, dst):
    from datetime import datetime, timedelta, timezone

    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.storage.blob import (BlobClient, BlobSasPermissions, ContentSettings,
                                    generate_blob_sas)
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    c, origins = gw_w
    svc = blob_writer(c)
    data = s3util.det_bytes(f"copyblob-{src}", 3 * MIB + 7)
    sc = svc.get_blob_client(src, "copy/src.bin")
    sc.upload_blob(data, overwrite=True, metadata={"origin": src},
                   content_settings=ContentSettings(content_type="application/x-src"))
    dc = svc.get_blob_client(dst, "copy/dst.bin")
    out = dc.start_copy_from_url(sc.url)
    assert out["copy_status"] == "success" and out["copy_id"], out
    assert origin_bytes(origins, dst, "copy/dst.bin") == data
    assert dc.download_blob().readall() == data
    if "fsw" not in (src, dst):  # a directory keeps bytes only
        props = dc.get_blob_properties()
        assert props.content_settings.content_type == "application/x-src"
        assert props.metadata == {"origin": src}
        dc.start_copy_from_url(sc.url, metadata={"new": "1"})
        assert dc.get_blob_properties().metadata == {"new": "1"}
    # Source conditions, a missing source.
    with pytest.raises(HttpResponseError) as ei:
        dc.start_copy_from_url(sc.url, source_etag='"not-it"',
                               source_match_condition=MatchConditions.IfNotModified)
    assert (ei.value.status_code, ei.value.error_code) == (412, "SourceConditionNotMet")
    with pytest.raises(ResourceNotFoundError) as ei:
        dc.start_copy_from_url(svc.get_blob_client(src, "copy/none.bin").url)
    assert ei.value.error_code == "CannotVerifyCopySource"
    # Put Blob From URL: the request's own properties; create-only refuses an existing blob.
    fc = svc.get_blob_client(dst, "copy/from-url.bin")
    fc.upload_blob_from_url(sc.url, overwrite=True,
                            content_settings=ContentSettings(content_type="text/x-own"))
    assert fc.download_blob().readall() == data
    if dst != "fsw":
        assert fc.get_blob_properties().content_settings.content_type == "text/x-own"
    with pytest.raises(HttpResponseError) as ei:
        fc.upload_blob_from_url(sc.url, overwrite=False)
    assert ei.value.error_code == "BlobAlreadyExists"
    # A caller whose SAS may only write the destination cannot read the source with it; the
    # source URL's own SAS can.
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    write_only = generate_blob_sas(WRITER_ACCOUNT, dst, "copy/sas.bin", account_key=WRITER_ACCOUNT_KEY,
                                   permission=BlobSasPermissions(write=True), expiry=expiry)
    sas_dst = BlobClient.from_blob_url(f"{svc.url}{dst}/copy/sas.bin?{write_only}",
                                       retry_total=0)
    with pytest.raises(HttpResponseError) as ei:
        sas_dst.start_copy_from_url(sc.url)
    assert (ei.value.status_code, ei.value.error_code) == (403, "CannotVerifyCopySource")
    read_src = generate_blob_sas(WRITER_ACCOUNT, src, "copy/src.bin", account_key=WRITER_ACCOUNT_KEY,
                                 permission=BlobSasPermissions(read=True), expiry=expiry)
    assert sas_dst.start_copy_from_url(f"{sc.url}?{read_src}")["copy_status"] == "success"
    assert origin_bytes(origins, dst, "copy/sas.bin") == data


@pytest.mark.parametrize("bucket", ["motop", "azp"])
def test_populate_on_write_serves_a_checkpoint_read_right_back(gw_w, bucket):
    c, origins = gw_w
    s3 = c.client(WRITER)
    data = s3util.det_bytes(f"populate-{bucket}", 6 * MIB + 77)
    gets = c.origin_requests(operation="get")
    s3.put_object(Bucket=bucket, Key="ckpt/populated.bin", Body=data)
    r = c.get(bucket, "ckpt/populated.bin", creds=WRITER)
    assert r.status == 200 and r.body == data, r
    assert r.h("x-cistern-cache") == "hit", r.headers
    assert c.origin_requests(operation="get") == gets, "the written object was read back"
    assert c.metric("cistern_populated_bytes_total") >= len(data)
    # The same through the Blob dialect's Put Blob, read through S3.
    bc = blob_writer(c).get_blob_client(bucket, "ckpt/blob-populated.bin")
    bc.upload_blob(data, overwrite=True)
    r = c.get(bucket, "ckpt/blob-populated.bin", creds=WRITER, headers={"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == data[:100], r
    assert r.h("x-cistern-cache") == "hit", r.headers
    assert c.origin_requests(operation="get") == gets


@pytest.mark.parametrize("bucket", ["azw", "motow"])
def test_set_blob_metadata_and_properties(gw_w, bucket):
    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContentSettings
    c, origins = gw_w
    bc = blob_writer(c).get_blob_client(bucket, "props/obj.bin")
    data = s3util.det_bytes(f"props-{bucket}", MIB + 1)
    bc.upload_blob(data, overwrite=True, metadata={"a": "1"},
                   content_settings=ContentSettings(content_type="application/x-first"))
    assert bc.get_blob_properties().metadata == {"a": "1"}  # cached now
    bc.set_blob_metadata({"step": "200", "b": "two"})
    p = bc.get_blob_properties()
    assert p.metadata == {"step": "200", "b": "two"}
    assert p.content_settings.content_type == "application/x-first"
    bc.set_http_headers(ContentSettings(content_type="text/x-second", cache_control="no-cache"))
    p = bc.get_blob_properties()
    assert p.content_settings.content_type == "text/x-second"
    assert p.content_settings.cache_control == "no-cache"
    assert p.metadata == {"step": "200", "b": "two"}
    # Through S3 as well, and the bytes are untouched.
    h = c.client(WRITER).head_object(Bucket=bucket, Key="props/obj.bin")
    assert h["ContentType"] == "text/x-second" and h["Metadata"] == {"step": "200", "b": "two"}
    assert origin_bytes(origins, bucket, "props/obj.bin") == data
    with pytest.raises(HttpResponseError) as ei:
        bc.set_blob_metadata({"x": "y"}, etag='"not-it"', match_condition=MatchConditions.IfNotModified)
    assert (ei.value.status_code, ei.value.error_code) == (412, "ConditionNotMet")


def test_set_blob_metadata_on_a_directory_is_not_implemented(gw_w):
    from azure.core.exceptions import HttpResponseError
    c, _ = gw_w
    bc = blob_writer(c).get_blob_client("fsw", "props/plain.bin")
    bc.upload_blob(b"bytes only", overwrite=True)
    with pytest.raises(HttpResponseError) as ei:
        bc.set_blob_metadata({"a": "1"})
    assert (ei.value.status_code, ei.value.error_code) == (501, "NotImplemented")


@pytest.mark.parametrize("bucket", ["azw", "fsw"])
def test_append_blob_grows_all_or_nothing(gw_w, bucket):
    import requests
    from azure.core.exceptions import HttpResponseError
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob import _date, _shared_key
    c, origins = gw_w
    bc = blob_writer(c).get_blob_client(bucket, "logs/app.log")
    bc.create_append_blob()
    first = bc.append_block(b"line one\n")
    assert int(first["blob_append_offset"]) == 0
    assert bc.download_blob().readall() == b"line one\n"  # cached now
    second = bc.append_block(b"line two\n")
    assert int(second["blob_append_offset"]) == 9
    assert bc.download_blob().readall() == b"line one\nline two\n"  # never the cached one
    if bucket == "azw":
        assert bc.get_blob_properties().blob_type == "AppendBlob"
    for kw in ({"appendpos_condition": 3}, {"maxsize_condition": 20}):
        with pytest.raises(HttpResponseError) as ei:
            bc.append_block(b"x" * 10, **kw)
        assert ei.value.status_code == 412, kw
    url = f"http://127.0.0.1:{c.blob_port}/{WRITER_ACCOUNT}/{bucket}/logs/app.log?comp=appendblock"
    body = b"never appended\n"
    headers = {"x-ms-version": "2025-11-05", "x-ms-date": _date(),
               "Content-Length": str(len(body)),
               "Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}
    r = requests.put(url, data=body,
                     headers=_shared_key("PUT", url, headers, WRITER_ACCOUNT, WRITER_ACCOUNT_KEY),
                     timeout=60)
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (400, "Md5Mismatch"), r.text
    assert origin_bytes(origins, bucket, "logs/app.log") == b"line one\nline two\n"
    assert c.client(WRITER).get_object(Bucket=bucket, Key="logs/app.log")["Body"].read() == \
        b"line one\nline two\n"


# ------------------------------------------------------------------ multipart


@pytest.mark.parametrize("bucket", BUCKETS)
def test_multipart_upload_file_read_back_through_both_dialects(gw_w, bucket, tmp_path):
    from boto3.s3.transfer import TransferConfig
    c, origins = gw_w
    data = s3util.det_bytes(f"mpu-{bucket}", 40 * MIB + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    s3 = c.client(WRITER)
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                         max_concurrency=4)
    s3.upload_file(str(src), bucket, "mpu/big.bin", Config=cfg,
                   ExtraArgs={"ContentType": "application/x-ckpt",
                              "Metadata": {"step": "100"}})
    assert origin_bytes(origins, bucket, "mpu/big.bin") == data
    got = s3.get_object(Bucket=bucket, Key="mpu/big.bin")
    assert got["Body"].read() == data
    if bucket != "fsw":  # a directory keeps bytes only
        assert got["ContentType"] == "application/x-ckpt"
        assert got["Metadata"] == {"step": "100"}
    blob = blob_writer(c).get_blob_client(bucket, "mpu/big.bin")
    assert hashlib.sha256(blob.download_blob(max_concurrency=4).readall()).digest() == \
        hashlib.sha256(data).digest()


@pytest.mark.parametrize("bucket", BUCKETS)
def test_aborted_multipart_leaves_nothing(gw_w, bucket):
    c, origins = gw_w
    s3 = c.client(WRITER)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mpu/aborted.bin")["UploadId"]
    part = s3util.det_bytes("abort-part", 5 * MIB)
    etag = s3.upload_part(Bucket=bucket, Key="mpu/aborted.bin", UploadId=up, PartNumber=1,
                          Body=part)["ETag"]
    assert etag.strip('"') == hashlib.md5(part).hexdigest()
    s3.abort_multipart_upload(Bucket=bucket, Key="mpu/aborted.bin", UploadId=up)
    assert origin_bytes(origins, bucket, "mpu/aborted.bin") is None
    # Only the directory origin can be asked here: Azure keeps no upload state to refuse a
    # completion with, and moto answers 500 where S3 answers 404 NoSuchUpload.
    if bucket == "fsw":
        with pytest.raises(ClientError) as ei:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="mpu/aborted.bin", UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        assert ei.value.response["Error"]["Code"] == "NoSuchUpload"
    if bucket != "motow":  # moto answers 500 for an unknown upload id
        with pytest.raises(ClientError) as ei:
            s3.upload_part(Bucket=bucket, Key="mpu/aborted.bin", UploadId="not-an-upload",
                           PartNumber=1, Body=b"x")
        assert ei.value.response["Error"]["Code"] == "NoSuchUpload"


@pytest.mark.parametrize("bucket", ["fsw", "motow"])
def test_list_parts_and_multipart_uploads(gw_w, bucket):
    c, origins = gw_w
    s3 = c.client(WRITER)
    ids = {k: s3.create_multipart_upload(Bucket=bucket, Key=f"lmu/{k}")["UploadId"]
           for k in ("a.bin", "b.bin", "dir/c.bin")}
    p1 = s3util.det_bytes("lmu-1", 5 * MIB)
    p2 = s3util.det_bytes("lmu-2", 1024)
    e1 = s3.upload_part(Bucket=bucket, Key="lmu/a.bin", UploadId=ids["a.bin"], PartNumber=1,
                        Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="lmu/a.bin", UploadId=ids["a.bin"], PartNumber=2,
                        Body=p2)["ETag"]
    lp = s3.list_parts(Bucket=bucket, Key="lmu/a.bin", UploadId=ids["a.bin"])
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in lp["Parts"]] == \
        [(1, e1, len(p1)), (2, e2, len(p2))]
    first = s3.list_parts(Bucket=bucket, Key="lmu/a.bin", UploadId=ids["a.bin"], MaxParts=1)
    assert first["IsTruncated"] and [p["PartNumber"] for p in first["Parts"]] == [1]
    rest = s3.list_parts(Bucket=bucket, Key="lmu/a.bin", UploadId=ids["a.bin"],
                         PartNumberMarker=first["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [2] and not rest["IsTruncated"]
    lu = s3.list_multipart_uploads(Bucket=bucket, Prefix="lmu/")
    assert sorted((u["Key"], u["UploadId"]) for u in lu["Uploads"]) == \
        sorted((f"lmu/{k}", v) for k, v in ids.items())
    grouped = s3.list_multipart_uploads(Bucket=bucket, Prefix="lmu/", Delimiter="/")
    assert [u["Key"] for u in grouped["Uploads"]] == ["lmu/a.bin", "lmu/b.bin"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["lmu/dir/"]
    page = s3.list_multipart_uploads(Bucket=bucket, Prefix="lmu/", MaxUploads=1)
    assert page["IsTruncated"] and [u["Key"] for u in page["Uploads"]] == ["lmu/a.bin"]
    nxt = s3.list_multipart_uploads(Bucket=bucket, Prefix="lmu/", MaxUploads=5,
                                    KeyMarker=page["NextKeyMarker"],
                                    UploadIdMarker=page["NextUploadIdMarker"])
    assert [u["Key"] for u in nxt["Uploads"]] == ["lmu/b.bin", "lmu/dir/c.bin"]
    with pytest.raises(ClientError) as ei:
        c.client(TESTER).list_parts(Bucket=bucket, Key="lmu/a.bin", UploadId=ids["a.bin"])
    assert ei.value.response["Error"]["Code"] == "AccessDenied"
    for k, v in ids.items():
        s3.abort_multipart_upload(Bucket=bucket, Key=f"lmu/{k}", UploadId=v)
    assert not s3.list_multipart_uploads(Bucket=bucket, Prefix="lmu/").get("Uploads")


def test_list_parts_onto_azure_is_not_implemented(gw_w):
    c, _ = gw_w
    s3 = c.client(WRITER)
    up = s3.create_multipart_upload(Bucket="azw", Key="lmu/x.bin")["UploadId"]
    with pytest.raises(ClientError) as ei:
        s3.list_parts(Bucket="azw", Key="lmu/x.bin", UploadId=up)
    assert ei.value.response["Error"]["Code"] == "NotImplemented"
    with pytest.raises(ClientError) as ei:
        s3.list_multipart_uploads(Bucket="azw")
    assert ei.value.response["Error"]["Code"] == "NotImplemented"


@pytest.mark.parametrize("bucket", ["fsw", "azw"])
def test_blob_uploaded_in_blocks_read_back_through_s3(gw_w, bucket):
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob import service
    c, origins = gw_w
    svc = service(c.connection_string(WRITER_ACCOUNT, WRITER_ACCOUNT_KEY),
                  max_single_put_size=MIB, max_block_size=MIB)
    data = s3util.det_bytes(f"blocks-{bucket}", 5 * MIB + 777)
    bc = svc.get_blob_client(bucket, "blocks/model.pt")
    bc.upload_blob(data, overwrite=True, max_concurrency=4)
    assert origin_bytes(origins, bucket, "blocks/model.pt") == data
    s3 = c.client(WRITER)
    assert s3.get_object(Bucket=bucket, Key="blocks/model.pt")["Body"].read() == data
    # Overwritten in blocks again: the new bytes at once.
    new = s3util.det_bytes(f"blocks-{bucket}-2", 3 * MIB)
    bc.upload_blob(new, overwrite=True, max_concurrency=4)
    assert s3.get_object(Bucket=bucket, Key="blocks/model.pt")["Body"].read() == new


@pytest.mark.parametrize("dst", ["fsw", "azw"])
def test_put_block_from_url_assembles_a_blob(gw_w, dst):
    from azure.storage.blob import BlobBlock
    c, origins = gw_w
    svc = blob_writer(c)
    data = s3util.det_bytes("pbfu-src", 3 * MIB + 3)
    c.client(WRITER).put_object(Bucket="motow", Key="pbfu/src.bin", Body=data)
    src_url = svc.get_blob_client("motow", "pbfu/src.bin").url
    bc = svc.get_blob_client(dst, "pbfu/assembled.bin")
    ids = [base64.b64encode(f"blk-{i:04d}".encode()).decode() for i in range(3)]
    bc.stage_block_from_url(ids[0], src_url, source_offset=2 * MIB, source_length=MIB + 3)
    bc.stage_block(ids[1], b"-own bytes-")
    bc.stage_block_from_url(ids[2], src_url, source_offset=0, source_length=2 * MIB)
    bc.commit_block_list([BlobBlock(block_id=i) for i in ids])
    want = data[2 * MIB:] + b"-own bytes-" + data[:2 * MIB]
    assert origin_bytes(origins, dst, "pbfu/assembled.bin") == want
    assert c.client(WRITER).get_object(Bucket=dst, Key="pbfu/assembled.bin")["Body"].read() == want


def test_blob_blocks_onto_an_s3_origin_become_a_multipart_upload(gw_w):
    """Blocks of any size onto S3, whose parts must be at least 5 MiB: staged as objects,
    grouped into parts at commit (a lone big block copied at the origin), staging removed."""
    from azure.storage.blob import BlobBlock
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob import service
    c, origins = gw_w
    svc = service(c.connection_string(WRITER_ACCOUNT, WRITER_ACCOUNT_KEY),
                  max_single_put_size=MIB, max_block_size=MIB)
    small = s3util.det_bytes("blocks-small", 12 * MIB + 5)
    svc.get_blob_client("motow", "blocks/sdk.bin").upload_blob(small, overwrite=True,
                                                                max_concurrency=4)
    assert origin_bytes(origins, "motow", "blocks/sdk.bin") == small
    # By hand: a big block (copied at the origin), a tiny one and a big one (streamed
    # together as one part), and a staged block left out of the list.
    bc = blob_writer(c).get_blob_client("motow", "blocks/mixed.bin")
    pieces = [s3util.det_bytes(f"blk-{i}", n) for i, n in enumerate((6 * MIB, 1024, 7 * MIB))]
    ids = [base64.b64encode(f"block-{i:03d}".encode()).decode() for i in range(4)]
    for i, p in zip(ids, pieces + [b"left out"]):
        bc.stage_block(i, p)
    listed = c.client(WRITER).list_objects_v2(Bucket="motow")
    assert not any(o["Key"].startswith(".cistern-blocks/") for o in listed.get("Contents", []))
    assert not any(p["Prefix"].startswith(".cistern")
                   for p in c.client(WRITER).list_objects_v2(
                       Bucket="motow", Delimiter="/").get("CommonPrefixes", []))
    staged = origins["motow"].client().list_objects_v2(Bucket="motow",
                                                       Prefix=".cistern-blocks/")["Contents"]
    assert len(staged) == 4
    # The staging area is Cistern's own: clients neither read nor write it.
    r = c.get("motow", staged[0]["Key"], creds=WRITER)
    assert r.status == 404, r
    with pytest.raises(ClientError) as ei:
        c.client(WRITER).put_object(Bucket="motow", Key=staged[0]["Key"], Body=b"overwrite")
    assert ei.value.response["Error"]["Code"] == "InvalidArgument"
    bc.commit_block_list([BlobBlock(block_id=i) for i in ids[:3]])
    want = b"".join(pieces)
    assert origin_bytes(origins, "motow", "blocks/mixed.bin") == want
    assert bc.download_blob().readall() == want
    direct = origins["motow"].client().list_objects_v2(Bucket="motow", Prefix=".cistern-blocks/")
    assert direct["KeyCount"] == 0, "staged blocks were left at the origin"


# ------------------------------------------------------------------ copies and batch deletes


@pytest.mark.parametrize("src,dst", [("motow", "azw"), ("azw", "fsw"), ("fsw", "motow")])
def test_copy_object_across_origins(gw_w, src, dst):
    c, origins = gw_w
    s3 = c.client(WRITER)
    data = s3util.det_bytes(f"copy-{src}", 2 * MIB + 9)
    s3.put_object(Bucket=src, Key="copy/src.bin", Body=data, ContentType="application/x-src",
                  Metadata={"origin": src})
    out = s3.copy_object(Bucket=dst, Key="copy/dst.bin",
                         CopySource={"Bucket": src, "Key": "copy/src.bin"})
    assert out["CopyObjectResult"]["ETag"]
    assert origin_bytes(origins, dst, "copy/dst.bin") == data
    got = s3.get_object(Bucket=dst, Key="copy/dst.bin")
    assert got["Body"].read() == data
    if "fsw" not in (src, dst):  # a directory keeps bytes only
        assert got["ContentType"] == "application/x-src"
        assert got["Metadata"] == {"origin": src}
    if dst != "fsw":
        s3.copy_object(Bucket=dst, Key="copy/dst.bin", CopySource={"Bucket": dst, "Key": "copy/dst.bin"},
                       MetadataDirective="REPLACE", ContentType="text/x-replaced",
                       Metadata={"new": "1"})
        h = s3.head_object(Bucket=dst, Key="copy/dst.bin")
        assert h["ContentType"] == "text/x-replaced" and h["Metadata"] == {"new": "1"}
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=dst, Key="copy/dst.bin",
                       CopySource={"Bucket": dst, "Key": "copy/dst.bin"})
    assert ei.value.response["Error"]["Code"] == "InvalidRequest"
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=dst, Key="copy/x.bin", CopySource={"Bucket": src, "Key": "copy/src.bin"},
                       CopySourceIfMatch='"not-the-etag"')
    assert ei.value.response["Error"]["Code"] == "PreconditionFailed"


@pytest.mark.parametrize("src,dst", [("motow", "azw"), ("azw", "fsw"), ("fsw", "motow")])
def test_upload_part_copy_across_origins(gw_w, src, dst):
    c, origins = gw_w
    s3 = c.client(WRITER)
    data = s3util.det_bytes(f"upc-{src}", 11 * MIB + 5)
    s3.put_object(Bucket=src, Key="upc/src.bin", Body=data)
    own = s3util.det_bytes("upc-own", 5 * MIB)
    key = "upc/assembled.bin"
    up = s3.create_multipart_upload(Bucket=dst, Key=key)["UploadId"]
    p1 = s3.upload_part_copy(Bucket=dst, Key=key, UploadId=up, PartNumber=1,
                             CopySource={"Bucket": src, "Key": "upc/src.bin"},
                             CopySourceRange=f"bytes=0-{5 * MIB - 1}")
    p2 = s3.upload_part(Bucket=dst, Key=key, UploadId=up, PartNumber=2, Body=own)
    p3 = s3.upload_part_copy(Bucket=dst, Key=key, UploadId=up, PartNumber=3,
                             CopySource={"Bucket": src, "Key": "upc/src.bin"},
                             CopySourceRange=f"bytes={5 * MIB}-{len(data) - 1}")
    for bad in ("bytes=5-", "bytes=9-2", "items=0-1"):
        with pytest.raises(ClientError) as ei:
            s3.upload_part_copy(Bucket=dst, Key=key, UploadId=up, PartNumber=4,
                                CopySource={"Bucket": src, "Key": "upc/src.bin"},
                                CopySourceRange=bad)
        assert ei.value.response["Error"]["Code"] == "InvalidArgument", bad
    with pytest.raises(ClientError) as ei:
        s3.upload_part_copy(Bucket=dst, Key=key, UploadId=up, PartNumber=4,
                            CopySource={"Bucket": src, "Key": "upc/src.bin"},
                            CopySourceIfMatch='"not-the-etag"')
    assert ei.value.response["Error"]["Code"] == "PreconditionFailed"
    parts = [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
             {"PartNumber": 2, "ETag": p2["ETag"]},
             {"PartNumber": 3, "ETag": p3["CopyPartResult"]["ETag"]}]
    s3.complete_multipart_upload(Bucket=dst, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": parts})
    want = data[:5 * MIB] + own + data[5 * MIB:]
    assert origin_bytes(origins, dst, key) == want
    assert s3.get_object(Bucket=dst, Key=key)["Body"].read() == want


def test_aws_cli_copies_a_large_object_between_buckets(gw_w, aws_env):
    """`aws s3 cp s3://… s3://…` copies objects over its multipart threshold with
    UploadPartCopy."""
    from test_clients import aws
    c, origins = gw_w
    s3 = c.client(WRITER)
    data = s3util.det_bytes("cli-copy", 20 * MIB + 3)
    s3.put_object(Bucket="motow", Key="cli/big.bin", Body=data)
    env = dict(aws_env, AWS_ACCESS_KEY_ID=WRITER.access_key, AWS_SECRET_ACCESS_KEY=WRITER.secret)
    aws(env, c.url, "s3", "cp", "s3://motow/cli/big.bin", "s3://azw/cli/big.bin")
    assert origin_bytes(origins, "azw", "cli/big.bin") == data
    assert c.metric("cistern_requests_total", operation="UploadPartCopy") >= 3


def test_upload_file_of_a_hundred_mib_onto_azure_blocks(gw_w, tmp_path):
    """boto3's upload_file at 112 MiB (14 parts of 8 MiB) onto Azure blocks, compared with
    the origin directly and read back through Cistern."""
    from boto3.s3.transfer import TransferConfig
    c, origins = gw_w
    src = tmp_path / "ckpt.bin"
    sha = s3util.write_det_file(src, "hundred", 112 * MIB + 17)
    s3 = c.client(WRITER)
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                         max_concurrency=8)
    s3.upload_file(str(src), "azw", "ckpt/big.bin", Config=cfg)
    direct = origins["azw"].service().get_blob_client("azw", "ckpt/big.bin")
    h = hashlib.sha256()
    for piece in direct.download_blob(max_concurrency=4).chunks():
        h.update(piece)
    assert h.hexdigest() == sha
    out = tmp_path / "back.bin"
    s3.download_file("azw", "ckpt/big.bin", str(out), Config=cfg)
    assert s3util.sha256_file(out) == sha


def test_delete_objects_and_recursive_cli_rm(gw_w, aws_env):
    from test_clients import aws
    c, origins = gw_w
    s3 = c.client(WRITER)
    keys = [f"many/{i:03d}.txt" for i in range(12)]
    for k in keys:
        s3.put_object(Bucket="fsw", Key=k, Body=k.encode())
    out = s3.delete_objects(Bucket="fsw", Delete={"Objects": [{"Key": k} for k in keys[:5]]})
    assert sorted(d["Key"] for d in out["Deleted"]) == keys[:5]
    assert all(origin_bytes(origins, "fsw", k) is None for k in keys[:5])
    env = dict(aws_env, AWS_ACCESS_KEY_ID=WRITER.access_key, AWS_SECRET_ACCESS_KEY=WRITER.secret)
    aws(env, c.url, "s3", "rm", "--recursive", "s3://fsw/many/")
    assert all(origin_bytes(origins, "fsw", k) is None for k in keys)
    assert s3.list_objects_v2(Bucket="fsw", Prefix="many/")["KeyCount"] == 0


# ------------------------------------------------------------------ clients writing


def test_aws_cli_sync_up_and_delete(gw_w, aws_env, tmp_path):
    from test_clients import aws
    c, origins = gw_w
    src = tmp_path / "tree"
    files = {"a.txt": b"a\n", "d/b.bin": s3util.det_bytes("sync-b", MIB + 1), "d/e/c.txt": b"c"}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    env = dict(aws_env, AWS_ACCESS_KEY_ID=WRITER.access_key, AWS_SECRET_ACCESS_KEY=WRITER.secret)
    aws(env, c.url, "s3", "sync", str(src), "s3://azw/tree/")
    for rel, data in files.items():
        assert origin_bytes(origins, "azw", f"tree/{rel}") == data, rel
    (src / "a.txt").unlink()
    aws(env, c.url, "s3", "sync", "--delete", str(src), "s3://azw/tree/")
    assert origin_bytes(origins, "azw", "tree/a.txt") is None


def test_s3fs_writes(gw_w):
    import s3fs
    c, origins = gw_w
    fs = s3fs.S3FileSystem(key=WRITER.access_key, secret=WRITER.secret,
                           client_kwargs={"endpoint_url": c.url, "region_name": "us-east-1"})
    data = s3util.det_bytes("s3fs-write", 12 * MIB + 5)
    with fs.open("motow/s3fs/out.bin", "wb", block_size=5 * MIB) as f:
        f.write(data)
    assert origin_bytes(origins, "motow", "s3fs/out.bin") == data
    fs.pipe("fsw/s3fs/small.txt", b"small\n")
    assert origin_bytes(origins, "fsw", "s3fs/small.txt") == b"small\n"
    fs.rm("fsw/s3fs/small.txt")
    assert origin_bytes(origins, "fsw", "s3fs/small.txt") is None


def test_adlfs_writes(gw_w):
    import adlfs
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    c, origins = gw_w
    fs = adlfs.AzureBlobFileSystem(
        connection_string=c.connection_string(WRITER_ACCOUNT, WRITER_ACCOUNT_KEY))
    data = s3util.det_bytes("adlfs-write", 3 * MIB + 3)
    with fs.open("azw/adlfs/out.bin", "wb") as f:
        f.write(data)
    assert origin_bytes(origins, "azw", "adlfs/out.bin") == data
    fs.pipe("fsw/adlfs/small.txt", b"small\n")
    assert origin_bytes(origins, "fsw", "adlfs/small.txt") == b"small\n"
    fs.rm("fsw/adlfs/small.txt")
    assert origin_bytes(origins, "fsw", "adlfs/small.txt") is None


def test_azcopy_upload(gw_w, tmp_path):
    import datetime as dt
    from azure.storage.blob import generate_container_sas
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob_clients import azcopy
    c, origins = gw_w
    src = tmp_path / "up"
    files = {"x.bin": s3util.det_bytes("azcopy-up", 9 * MIB + 7), "sub/y.txt": b"y\n"}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    for bucket in ("azw", "fsw"):
        sas = generate_container_sas(WRITER_ACCOUNT, bucket, account_key=WRITER_ACCOUNT_KEY,
                                     permission="racwdl",
                                     expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
        url = f"http://127.0.0.1:{c.blob_port}/{WRITER_ACCOUNT}/{bucket}/azcopy?{sas}"
        azcopy(["copy", f"{src}/*", url, "--recursive", "--from-to", "LocalBlob",
                "--block-size-mb", "4"], tmp_path)
        for rel, data in files.items():
            assert origin_bytes(origins, bucket, f"azcopy/{rel}") == data, (bucket, rel)


# ------------------------------------------------------------------ buckets and containers


def test_buckets_and_containers_on_the_embedded_default(cistern_factory, tmp_path):
    from conftest import DEV
    from test_blob import via
    home = tmp_path / "laptop"
    (home / "data").mkdir(parents=True)
    c = cistern_factory.with_flags("buckets", args=[], cwd=home)
    s3 = c.client(DEV)
    s3.create_bucket(Bucket="newb")
    assert (home / "data" / "newb").is_dir()
    s3.put_object(Bucket="newb", Key="x.txt", Body=b"x")
    assert s3.get_object(Bucket="newb", Key="x.txt")["Body"].read() == b"x"
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket="newb")
    assert ei.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket="newb")
    assert ei.value.response["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket="newb", Key="x.txt")
    s3.delete_bucket(Bucket="newb")
    assert not (home / "data" / "newb").exists()
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket="newb")
    assert ei.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
    svc = via(c)
    svc.create_container("newc")
    assert (home / "data" / "newc").is_dir()
    svc.get_blob_client("newc", "b.txt").upload_blob(b"blob")
    assert svc.get_blob_client("newc", "b.txt").download_blob().readall() == b"blob"
    svc.get_blob_client("newc", "b.txt").delete_blob()
    svc.delete_container("newc")
    assert not (home / "data" / "newc").exists()


def test_creating_an_existing_origin_bucket(gw_w):
    c, _ = gw_w
    with pytest.raises(ClientError) as ei:
        c.client(WRITER).create_bucket(Bucket="azw")
    assert ei.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_create_only_writes(gw_w, bucket):
    from azure.core.exceptions import ResourceExistsError
    c, origins = gw_w
    s3 = c.client(WRITER)
    s3.put_object(Bucket=bucket, Key="once.txt", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key="once.txt", Body=b"second", IfNoneMatch="*")
    assert ei.value.response["Error"]["Code"] == "PreconditionFailed"
    bc = blob_writer(c).get_blob_client(bucket, "once.txt")
    with pytest.raises(ResourceExistsError) as ei:
        bc.upload_blob(b"third")  # the SDK sends If-None-Match: * without overwrite
    assert ei.value.error_code == "BlobAlreadyExists"
    assert origin_bytes(origins, bucket, "once.txt") == b"first"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_racing_create_only_writes_have_one_winner(gw_w, bucket):
    """Eight clients create the same new key with `If-None-Match: *` at once: the origin
    decides (a hard link, Azure's and S3's own conditional writes), so exactly one wins."""
    from conftest import run_threads
    c, origins = gw_w
    key = f"race/{bucket}.bin"

    def one(i):
        body = f"writer {i} ".encode() * 50_000
        try:
            c.client(WRITER).put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            return body
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed", e.response
            return None

    won = [b for b in run_threads(8, one) if b is not None]
    assert len(won) == 1, f"{len(won)} create-only writes succeeded"
    assert origin_bytes(origins, bucket, key) == won[0]


def test_an_upload_cut_off_by_the_client_leaves_nothing(gw_w):
    """A client that disconnects mid-body: no object, and no temporary file left behind (the
    body's read error removes it; a request future dropped outright is covered by a guard)."""
    import socket
    import time
    from conftest import WRITER_ACCOUNT, WRITER_ACCOUNT_KEY
    from test_blob import _date, _shared_key
    c, origins = gw_w
    url = f"http://127.0.0.1:{c.blob_port}/{WRITER_ACCOUNT}/fsw/cut.bin"
    headers = {"x-ms-version": "2025-11-05", "x-ms-date": _date(), "x-ms-blob-type": "BlockBlob",
               "Content-Length": str(10 * MIB)}
    signed = _shared_key("PUT", url, headers, WRITER_ACCOUNT, WRITER_ACCOUNT_KEY)
    s = socket.create_connection(("127.0.0.1", c.blob_port))
    head = f"PUT /{WRITER_ACCOUNT}/fsw/cut.bin HTTP/1.1\r\nHost: 127.0.0.1:{c.blob_port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n"
    s.sendall(head.encode() + b"x" * MIB)
    time.sleep(0.5)
    s.close()
    uploads = origins["fsw"].parent / ".cistern-uploads"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
        if not left:
            break
        time.sleep(0.2)
    assert not left, left
    assert origin_bytes(origins, "fsw", "cut.bin") is None
