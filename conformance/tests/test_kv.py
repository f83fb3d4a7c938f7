"""Cache-only buckets (`origin = "none"`, the inference KV tier): objects that live only in the
cache. One process first (every operation, quota, time to live, authorization), then a cluster of
three cache nodes in three zones and a front, where killing a node loses only what it alone kept.
"""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from botocore.exceptions import ClientError

import s3util
from conftest import DEV_ACCOUNT_KEY, MIB, TESTER, WRITER, free_port

KV = """
[s3]
virtual_host_domains = ["localhost"]

[buckets.kv]
origin = "none"

[buckets.kvq]
origin = "none"
quota = "4MiB"

[buckets.kvt]
origin = "none"
expire_after = "2s"

[[principals]]
access_key = "devstoreaccount1"
secret = { env = "KV_ACCOUNT_KEY" }
buckets = ["kv"]
permissions = ["read", "list", "write", "delete"]
"""


def code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


@pytest.fixture
def kv(cistern_factory):
    return cistern_factory.with_config("kv", with_moto=False, with_fs=False, extra=KV,
                                       env={"KV_ACCOUNT_KEY": DEV_ACCOUNT_KEY})


def test_put_get_ranges_head_list_delete(kv):
    c = kv.client(WRITER)
    big = s3util.det_bytes("big", 3 * MIB + 12345)  # spans four 1 MiB chunks
    c.put_object(Bucket="kv", Key="layer/0/big", Body=big, ContentType="application/x-kv",
                 Metadata={"model": "llama"})
    small = b"x" * 1000
    put = c.put_object(Bucket="kv", Key="layer/1/small", Body=small)
    got = c.get_object(Bucket="kv", Key="layer/0/big")
    assert got["Body"].read() == big
    assert got["ContentType"] == "application/x-kv"
    assert got["Metadata"] == {"model": "llama"}
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-cistern-cache"] == "hit"
    for lo, hi in [(0, 0), (MIB - 3, MIB + 3), (2 * MIB, 3 * MIB + 12344), (5, 3 * MIB)]:
        r = c.get_object(Bucket="kv", Key="layer/0/big", Range=f"bytes={lo}-{hi}")
        assert r["Body"].read() == big[lo:hi + 1], (lo, hi)
        assert r["ContentRange"] == f"bytes {lo}-{hi}/{len(big)}"
    r = c.get_object(Bucket="kv", Key="layer/0/big", Range="bytes=-100")
    assert r["Body"].read() == big[-100:]
    h = c.head_object(Bucket="kv", Key="layer/1/small")
    assert h["ContentLength"] == 1000 and h["ETag"] == put["ETag"]
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="kv", Key="layer/1/small", IfNoneMatch=put["ETag"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="kv", Key="layer/1/small", Range="bytes=5000-6000")
    assert code(e.value) == "InvalidRange"
    # An overwrite is a new version.
    again = c.put_object(Bucket="kv", Key="layer/1/small", Body=b"y" * 10)
    assert again["ETag"] != put["ETag"]
    assert c.get_object(Bucket="kv", Key="layer/1/small")["Body"].read() == b"y" * 10

    listed = c.list_objects_v2(Bucket="kv", Prefix="layer/")
    assert [o["Key"] for o in listed["Contents"]] == ["layer/0/big", "layer/1/small"]
    assert [o["Size"] for o in listed["Contents"]] == [len(big), 10]
    rolled = c.list_objects_v2(Bucket="kv", Prefix="layer/", Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["layer/0/", "layer/1/"]
    for i in range(5):
        c.put_object(Bucket="kv", Key=f"page/{i}", Body=b"p")
    keys, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        p = c.list_objects_v2(Bucket="kv", Prefix="page/", MaxKeys=2, **kw)
        keys += [o["Key"] for o in p.get("Contents", [])]
        if not p["IsTruncated"]:
            break
        token = p["NextContinuationToken"]
    assert keys == [f"page/{i}" for i in range(5)]
    v1 = c.list_objects(Bucket="kv", Prefix="page/", Marker="page/2")
    assert [o["Key"] for o in v1["Contents"]] == ["page/3", "page/4"]

    c.delete_object(Bucket="kv", Key="layer/0/big")
    c.delete_object(Bucket="kv", Key="never/written")  # like S3: no error
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="kv", Key="layer/0/big")
    assert code(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket="kv", Key="layer/0/big")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    gone = c.delete_objects(Bucket="kv", Delete={"Objects": [{"Key": f"page/{i}"} for i in range(5)]})
    assert len(gone["Deleted"]) == 5
    assert "Contents" not in c.list_objects_v2(Bucket="kv", Prefix="page/")


def test_uploads_in_parts_from_any_order_complete_into_one_object(kv):
    from boto3.s3.transfer import TransferConfig
    import io
    c = kv.client(WRITER)
    data = s3util.det_bytes("parts", 13 * MIB + 17)
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=3)
    c.upload_fileobj(io.BytesIO(data), "kv", "ckpt/layer.kv", Config=cfg,
                     ExtraArgs={"ContentType": "application/x-kv", "Metadata": {"tokens": "256"}})
    got = c.get_object(Bucket="kv", Key="ckpt/layer.kv")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"').endswith("-3")
    assert got["ContentType"] == "application/x-kv" and got["Metadata"] == {"tokens": "256"}
    r = c.get_object(Bucket="kv", Key="ckpt/layer.kv", Range=f"bytes={5 * MIB - 2}-{10 * MIB + 1}")
    assert r["Body"].read() == data[5 * MIB - 2:10 * MIB + 2]
    # Parts sent out of order, completed in order; the staged parts are not objects.
    up = c.create_multipart_upload(Bucket="kv", Key="ooo")["UploadId"]
    p2 = c.upload_part(Bucket="kv", Key="ooo", UploadId=up, PartNumber=2, Body=b"B" * 100)
    p1 = c.upload_part(Bucket="kv", Key="ooo", UploadId=up, PartNumber=1, Body=b"A" * (5 * MIB))
    assert [o["Key"] for o in c.list_objects_v2(Bucket="kv")["Contents"]] == ["ckpt/layer.kv"]
    with pytest.raises(ClientError) as e:
        c.complete_multipart_upload(Bucket="kv", Key="ooo", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": '"nope"'}]})
    assert code(e.value) == "InvalidPart"
    c.complete_multipart_upload(Bucket="kv", Key="ooo", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert c.get_object(Bucket="kv", Key="ooo")["Body"].read() == b"A" * (5 * MIB) + b"B" * 100
    with pytest.raises(ClientError) as e:  # completed: the upload is gone
        c.upload_part(Bucket="kv", Key="ooo", UploadId=up, PartNumber=3, Body=b"C")
    assert code(e.value) == "NoSuchUpload"
    # An aborted upload leaves nothing.
    up = c.create_multipart_upload(Bucket="kv", Key="gone")["UploadId"]
    c.upload_part(Bucket="kv", Key="gone", UploadId=up, PartNumber=1, Body=b"x" * 10)
    c.abort_multipart_upload(Bucket="kv", Key="gone", UploadId=up)
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket="kv", Key="gone")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        c.upload_part(Bucket="kv", Key="other-key", UploadId=up, PartNumber=1, Body=b"x")
    assert code(e.value) == "NoSuchUpload"


def vhost(kv, method, key, body=b"", headers=None):
    """A request to bucket `kv` addressed virtual-host style (`Host: kv.localhost:PORT`, the
    path naming only the key), as LMCache's S3 connector sends it; sent to 127.0.0.1."""
    import http.client
    host = f"kv.localhost:{kv.s3_port}"
    path = "/" + s3util.enc_key(key)
    hdrs = s3util.sign_headers(method, f"http://{host}{path}", headers, WRITER, body)
    conn = http.client.HTTPConnection("127.0.0.1", kv.s3_port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def test_lmcache_call_pattern_virtual_hosted(kv):
    # LMCache keys chunks `model@world@worker@hash@dtype`, '/' made '_', one object per chunk;
    # it HEADs before every get and reads in 8 MiB ranges, accepting 200 or 206.
    key = "meta-llama_Llama-3.1-8B@1@0@1234abcd0000@bfloat16"
    chunk = s3util.det_bytes("lmcache", 4 * MIB)
    assert vhost(kv, "HEAD", key)[0] == 404
    status, _, _ = vhost(kv, "PUT", key, chunk)
    assert status == 200
    status, h, _ = vhost(kv, "HEAD", key)
    assert status == 200 and int(h["content-length"]) == len(chunk)
    status, h, got = vhost(kv, "GET", key, headers={"Range": "bytes=0-8388607"})
    assert status == 206 and got == chunk
    assert h["content-range"] == f"bytes 0-{len(chunk) - 1}/{len(chunk)}"
    listed = kv.client(WRITER).list_objects_v2(Bucket="kv")
    assert [o["Key"] for o in listed["Contents"]] == [key]


def test_bad_digest_and_conditional_create_leave_nothing_behind(kv):
    c = kv.client(WRITER)
    body = b"kv block" * 100
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="kv", Key="digest", Body=body, ContentMD5=wrong)
    assert code(e.value) == "BadDigest"
    with pytest.raises(ClientError):
        c.head_object(Bucket="kv", Key="digest")
    right = base64.b64encode(hashlib.md5(body).digest()).decode()
    c.put_object(Bucket="kv", Key="digest", Body=body, ContentMD5=right)
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="kv", Key="digest", Body=b"new", IfNoneMatch="*")
    assert code(e.value) == "PreconditionFailed"
    assert c.get_object(Bucket="kv", Key="digest")["Body"].read() == body


def test_authorization_applies_to_cache_only_buckets(kv):
    WRITER_C = kv.client(WRITER)
    WRITER_C.put_object(Bucket="kv", Key="secret", Body=b"s")
    reader = kv.client(TESTER)  # read and list only
    assert reader.get_object(Bucket="kv", Key="secret")["Body"].read() == b"s"
    with pytest.raises(ClientError) as e:
        reader.put_object(Bucket="kv", Key="secret", Body=b"overwritten")
    assert code(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        reader.delete_object(Bucket="kv", Key="secret")
    assert code(e.value) == "AccessDenied"
    anon = s3util.request(kv.endpoint, "GET", "/kv/secret")
    assert anon.status == 403
    assert WRITER_C.get_object(Bucket="kv", Key="secret")["Body"].read() == b"s"


def test_quota_evicts_the_least_recently_used_and_writes_never_fail(kv):
    c = kv.client(WRITER)
    for i in range(4):
        c.put_object(Bucket="kvq", Key=f"b{i}", Body=bytes([i]) * MIB)
    c.head_object(Bucket="kvq", Key="b0")  # b1 is now the least recently used
    c.put_object(Bucket="kvq", Key="b4", Body=b"4" * MIB)
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="kvq")["Contents"]]
    assert keys == ["b0", "b2", "b3", "b4"]
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="kvq", Key="b1")
    assert code(e.value) == "NoSuchKey"
    assert kv.metric("cistern_kv_bytes", bucket="kvq") == 4 * MIB
    assert kv.metric("cistern_kv_objects", bucket="kvq") == 4
    assert kv.metric("cistern_kv_dropped_total", bucket="kvq", reason="quota") == 1
    # Larger than the whole quota: refused outright, and nothing is evicted for it.
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="kvq", Key="huge", Body=b"h" * (4 * MIB + 1))
    assert code(e.value) == "InvalidArgument"
    assert kv.metric("cistern_kv_objects", bucket="kvq") == 4


def test_objects_expire_after_their_time_to_live(kv):
    c = kv.client(WRITER)
    c.put_object(Bucket="kvt", Key="short", Body=b"lived")
    assert c.get_object(Bucket="kvt", Key="short")["Body"].read() == b"lived"
    time.sleep(2.5)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="kvt", Key="short")
    assert code(e.value) == "NoSuchKey"
    assert "Contents" not in c.list_objects_v2(Bucket="kvt")
    assert kv.metric("cistern_kv_dropped_total", bucket="kvt", reason="expired") == 1


def test_blob_clients_read_and_write_the_same_namespace(kv):
    from azure.storage.blob import BlobServiceClient
    kv.client(WRITER).put_object(Bucket="kv", Key="shared/block", Body=b"b" * 5000)
    svc = BlobServiceClient.from_connection_string(kv.connection_string(), retry_total=0)
    blob = svc.get_blob_client("kv", "shared/block")
    assert blob.download_blob().readall() == b"b" * 5000
    assert blob.download_blob(offset=10, length=20).readall() == b"b" * 20
    svc.get_blob_client("kv", "from/blob").upload_blob(b"z" * 3000)
    got = kv.client(WRITER).get_object(Bucket="kv", Key="from/blob")["Body"].read()
    assert got == b"z" * 3000
    names = [b.name for b in svc.get_container_client("kv").list_blobs(name_starts_with="from/")]
    assert names == ["from/blob"]
    # Large blobs go up as blocks (Put Block, Put Block List), as azcopy sends them.
    blocky = BlobServiceClient.from_connection_string(
        kv.connection_string(), retry_total=0, max_single_put_size=MIB, max_block_size=MIB)
    data = s3util.det_bytes("blocks", 3 * MIB + 10)
    blocky.get_blob_client("kv", "from/blocks").upload_blob(data, content_settings=None)
    assert kv.client(WRITER).get_object(Bucket="kv", Key="from/blocks")["Body"].read() == data
    names = [b.name for b in svc.get_container_client("kv").list_blobs(name_starts_with="from/")]
    assert names == ["from/blob", "from/blocks"], "staged blocks are not objects"


# --------------------------------------------------------------------------- cluster

CLUSTER_SECRET = "cluster-secret-for-kv-tests-51b2"


class KvCluster:
    """Three cache nodes in zones a, b, c and one front, all with cache-only buckets kv1
    (one replica) and kv2 (two replicas)."""

    def __init__(self, factory, tmp_path):
        secret = tmp_path / "cluster.secret"
        secret.write_text(CLUSTER_SECRET + "\n")
        writer_secret = tmp_path / "writer.secret"
        writer_secret.write_text(WRITER.secret + "\n")
        cfg = tmp_path / "kv.toml"
        cfg.write_text('[buckets.kv1]\norigin = "none"\n\n'
                       '[buckets.kv2]\norigin = "none"\nreplicas = 2\n\n'
                       f'[[principals]]\naccess_key = "{WRITER.access_key}"\n'
                       f'secret = {{ file = "{writer_secret}" }}\nbuckets = ["*"]\n'
                       'permissions = ["read", "list", "write", "delete"]\n')
        ports = [free_port() for _ in range(3)]
        peers = ",".join(f"127.0.0.1:{p}" for p in ports)
        common = ["--config", str(cfg), "--peers", peers,
                  "--cluster-secret-file", str(secret), "--chunk-size", "1MiB",
                  "--memory-cache", "64MiB", "--disk-cache", "64MiB"]
        self.caches = [
            factory.with_flags(f"kvcache{i}", start=False,
                               args=common + ["--role", "cache", "--peer-listen",
                                              f"127.0.0.1:{p}", "--zone", "abc"[i]])
            for i, p in enumerate(ports)
        ]
        self.front = factory.with_flags("kvfront", start=False, args=common + ["--role", "front"])
        for n in self.caches + [self.front]:
            n.start(wait=False)
        for n in self.caches + [self.front]:
            n.wait_ready()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.front.metric("cistern_cluster_members", state="alive") == 3:
                break
            time.sleep(0.05)

    def client(self):
        return self.front.client(WRITER)


def test_cluster_replicas_survive_a_killed_node_and_single_copies_cost_only_its_share(
        cistern_factory, tmp_path):
    cl = KvCluster(cistern_factory, tmp_path)
    c = cl.client()
    n = 60
    blocks = {f"blk/{i:03d}": s3util.det_bytes(f"blk{i}", 64 * 1024 + i) for i in range(n)}
    for bucket in ("kv1", "kv2"):
        for k, v in blocks.items():
            c.put_object(Bucket=bucket, Key=k, Body=v)
    # Each object is kept once (kv1) or twice (kv2) across the nodes, spread over all of them.
    held1 = [x.metric("cistern_kv_objects", bucket="kv1") for x in cl.caches]
    held2 = [x.metric("cistern_kv_objects", bucket="kv2") for x in cl.caches]
    assert sum(held1) == n and all(h > 0 for h in held1), held1
    assert sum(held2) == 2 * n, held2
    listed = c.list_objects_v2(Bucket="kv2", Prefix="blk/")
    assert [o["Key"] for o in listed["Contents"]] == sorted(blocks)

    victim = cl.caches[1]
    victim_only = held1[1]
    victim.stop()
    lost = {"kv1": 0, "kv2": 0}
    for bucket in ("kv1", "kv2"):
        for k, v in blocks.items():
            try:
                assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == v
            except ClientError as e:
                assert code(e) == "NoSuchKey", e
                lost[bucket] += 1
    assert lost["kv2"] == 0, "a replicated block was lost with one node"
    assert lost["kv1"] == victim_only, (lost, held1)
    # Writes go on with a node down, and read back.
    c.put_object(Bucket="kv2", Key="after", Body=b"a" * 100)
    assert c.get_object(Bucket="kv2", Key="after")["Body"].read() == b"a" * 100
    listed = c.list_objects_v2(Bucket="kv2", Prefix="blk/")
    assert len(listed["Contents"]) == n
