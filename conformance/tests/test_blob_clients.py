"""Blob clients as a new user meets them: the development connection string against the embedded
default (azure-storage-blob, azcopy, adlfs, curl with a SAS URL), and a 1 GiB download through
Cistern in front of Azurite."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess

import pytest
import requests

import s3util
from conftest import DEV_ACCOUNT, DEV_ACCOUNT_KEY, MIB, azure_peer
from test_blob import AZ, blob_url, container_sas, via


@pytest.fixture
def embedded(cistern_factory, tmp_path):
    home = tmp_path / "laptop"
    files = {
        "datasets/train/shard-000.bin": s3util.det_bytes("shard0", 5 * MIB + 17),
        "datasets/train/shard-001.bin": s3util.det_bytes("shard1", 3 * MIB),
        "datasets/README.txt": b"hello, blob\n",
        "ckpt/step 100/model.pt": s3util.det_bytes("ckpt", 2 * MIB + 1),
    }
    for rel, data in files.items():
        p = home / "data" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    c = cistern_factory.with_flags("embedded-blob", args=[], cwd=home)
    return c, files


def test_dev_connection_string_lists_and_downloads(embedded):
    c, files = embedded
    # Exactly the string Cistern prints at start-up.
    printed = c.log.read_text()
    assert c.connection_string() in printed, printed[-2000:]
    svc = via(c)
    assert sorted(x.name for x in svc.list_containers()) == ["ckpt", "datasets"]
    cc = svc.get_container_client("datasets")
    assert sorted(b.name for b in cc.list_blobs()) == sorted(
        k.split("/", 1)[1] for k in files if k.startswith("datasets/"))
    assert sorted(b.name for b in cc.walk_blobs()) == ["README.txt", "train/"]
    for rel, data in files.items():
        container, name = rel.split("/", 1)
        got = svc.get_blob_client(container, name).download_blob(max_concurrency=4).readall()
        assert got == data, rel
    # The key is checked, not just accepted.
    wrong = c.connection_string(key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMDA=")
    with pytest.raises(Exception) as ei:
        list(via_cs(wrong).list_containers())
    assert "AuthenticationFailed" in str(ei.value)


def via_cs(cs):
    from azure.storage.blob import BlobServiceClient
    return BlobServiceClient.from_connection_string(cs, retry_total=0)


def azcopy(args, tmp_path, check=True):
    # azcopy writes ~/.azcopy whatever else is set: keep it in the test's directory.
    (tmp_path / "azcopy-home").mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(tmp_path / "azcopy-home"),
               AZCOPY_LOG_LOCATION=str(tmp_path / "azcopy-logs"),
               AZCOPY_JOB_PLAN_LOCATION=str(tmp_path / "azcopy-plans"),
               AZCOPY_DISABLE_SYSLOG="true")
    p = subprocess.run([azure_peer("AZCOPY")] + args, capture_output=True, env=env, timeout=300)
    if check:
        assert p.returncode == 0, (p.stdout.decode()[-3000:], p.stderr.decode()[-2000:])
    return p


def test_azcopy_downloads_a_container_and_a_blob(embedded, tmp_path):
    c, files = embedded
    sas = container_sas("datasets")
    out = tmp_path / "out"
    out.mkdir()
    azcopy(["copy", f"{c.blob_url}/datasets?{sas}", str(out), "--recursive",
            "--from-to", "BlobLocal"], tmp_path)
    for rel, data in files.items():
        if rel.startswith("datasets/"):
            assert (out / rel).read_bytes() == data, rel
    ck = container_sas("ckpt")
    dst = tmp_path / "model.pt"
    azcopy(["copy", blob_url(c.blob_url, "ckpt", "step 100/model.pt") + "?" + ck, str(dst),
            "--from-to", "BlobLocal"], tmp_path)
    assert dst.read_bytes() == files["ckpt/step 100/model.pt"]
    # A SAS for another container does not open this one.
    p = azcopy(["copy", f"{c.blob_url}/ckpt?{sas}", str(tmp_path / "nope"), "--recursive",
                "--from-to", "BlobLocal"], tmp_path, check=False)
    assert p.returncode != 0 and not (tmp_path / "nope" / "ckpt" / "step 100").exists()


def test_curl_with_a_sas_url(embedded):
    c, files = embedded
    url = blob_url(c.blob_url, "datasets", "train/shard-000.bin") + "?" + container_sas("datasets")
    p = subprocess.run(["curl", "-sS", "-f", url], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == files["datasets/train/shard-000.bin"]
    p = subprocess.run(["curl", "-sS", "-f", "-r", "100-199", url], capture_output=True,
                       timeout=60)
    assert p.stdout == files["datasets/train/shard-000.bin"][100:200]


def test_adlfs_reads(embedded):
    import adlfs
    c, files = embedded
    fs = adlfs.AzureBlobFileSystem(connection_string=c.connection_string())
    assert sorted(fs.ls("datasets", detail=False)) == ["datasets/README.txt", "datasets/train"]
    assert fs.cat("datasets/README.txt") == b"hello, blob\n"
    data = files["datasets/train/shard-000.bin"]
    assert fs.size("datasets/train/shard-000.bin") == len(data)
    with fs.open("datasets/train/shard-000.bin", "rb", block_size=MIB) as f:
        f.seek(3 * MIB)
        assert f.read(2 * MIB) == data[3 * MIB:5 * MIB]
    assert sorted(fs.find("datasets")) == ["datasets/README.txt", "datasets/train/shard-000.bin",
                                          "datasets/train/shard-001.bin"]


def test_one_port_for_both_dialects(cistern_factory, tmp_path):
    """--dual-listen: boto3 and azure-storage-blob against the same address."""
    from conftest import DEV, free_port
    home = tmp_path / "dual"
    (home / "data" / "shared").mkdir(parents=True)
    data = s3util.det_bytes("dual", 2 * MIB + 9)
    (home / "data" / "shared" / "x.bin").write_bytes(data)
    port = free_port()
    c = cistern_factory.with_flags("dual", args=["--dual-listen", f"127.0.0.1:{port}"], cwd=home)
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id=DEV.access_key, aws_secret_access_key=DEV.secret,
                      config=Config(s3={"addressing_style": "path"}))
    assert s3.get_object(Bucket="shared", Key="x.bin")["Body"].read() == data
    cs = (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
          f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")
    bc = via_cs(cs).get_blob_client("shared", "x.bin")
    r = bc.download_blob()
    assert r.readall() == data
    # Anonymous and unsigned: S3's answer (403 AccessDenied XML), not a Blob one.
    plain = requests.get(f"http://127.0.0.1:{port}/shared/x.bin", timeout=30)
    assert plain.status_code == 403 and b"AccessDenied" in plain.content


@pytest.mark.slow
def test_one_gib_blob_from_azurite(cistern_factory, azurite, az_data, tmp_path):
    """1 GiB uploaded to Azurite, downloaded through Cistern with max_concurrency=8: sha256
    matches; the second download is all hits with zero origin requests."""
    from azure.storage.blob import BlobBlock
    name = "big/one-gib.bin"
    size = 1 << 30
    piece = s3util.det_bytes("gib-piece", 8 * MIB)
    want = hashlib.sha256()
    bc = azurite.service().get_blob_client(AZ, name)
    blocks = []
    for i in range(size // len(piece)):
        # Each 8 MiB block differs (its index is stamped in), so misplaced ranges show.
        block = i.to_bytes(8, "big") + piece[8:]
        want.update(block)
        bid = f"{i:08d}"
        bc.stage_block(bid, block)
        blocks.append(BlobBlock(block_id=bid))
    bc.commit_block_list(blocks)
    # A dataset: metadata is never revalidated, so a warm read is the pure direct-read path.
    immutable = '[buckets.azimm]\norigin = "azurite"\norigin_bucket = "azdata"\n' \
                'consistency = "immutable"\n'
    c = cistern_factory.with_azurite("one-gib", chunk_size="4MiB", memory="256MiB", disk="2GiB",
                                     extra=immutable)
    svc = via(c, max_single_get_size=4 * MIB, max_chunk_get_size=4 * MIB)
    for attempt in ("cold", "warm"):
        before = c.origin_requests(origin="azurite")
        h = hashlib.sha256()
        stream = svc.get_blob_client("azimm", name).download_blob(max_concurrency=8)
        for chunk in stream.chunks():
            h.update(chunk)
        assert h.hexdigest() == want.hexdigest(), attempt
        fetched = c.origin_requests(origin="azurite") - before
        if attempt == "cold":
            assert fetched >= size // (4 * MIB), fetched
        else:
            assert fetched == 0, fetched
    bc.delete_blob()
