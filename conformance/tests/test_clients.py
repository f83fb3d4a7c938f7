"""Real clients through Cistern: boto3 transfer manager, s3fs, AWS CLI v1; a 1 GiB object."""

from __future__ import annotations

import hashlib
import random
import subprocess

import pytest
from boto3.s3.transfer import TransferConfig

import s3util
from conftest import TESTER, venv_bin

MIB = 1 << 20


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_boto3_download_file_parallel_ranges(gw, moto_data, tmp_path):
    data = moto_data.objects["big40.bin"]
    out = tmp_path / "big40.bin"
    cfg = TransferConfig(multipart_threshold=4 * MIB, multipart_chunksize=3 * MIB, max_concurrency=8)
    before = gw.metric("cistern_requests_total", dialect="s3")
    gw.client().download_file("motob", "big40.bin", str(out), Config=cfg)
    assert s3util.sha256_file(out) == sha(data)
    # it really was many ranged GETs (plus a HEAD)
    assert gw.metric("cistern_requests_total", dialect="s3") - before >= 14
    out.unlink()
    gw.client().download_file("motob", "big40.bin", str(out), Config=cfg)  # warm
    assert s3util.sha256_file(out) == sha(data)


def test_boto3_get_object_fields(gw, moto, moto_data):
    direct = moto.client().get_object(Bucket="motob", Key="meta.html")
    via = gw.client().get_object(Bucket="motob", Key="meta.html")
    assert via["Body"].read() == direct["Body"].read()
    for f in ("ETag", "ContentLength", "ContentType", "CacheControl", "ContentDisposition",
              "ContentLanguage", "Metadata", "LastModified"):
        assert via.get(f) == direct.get(f), f
    h = gw.client().head_object(Bucket="motob", Key="meta.html")
    assert h["Metadata"] == {"color": "blue", "x-y": "z"}


def _s3fs(gw):
    import s3fs
    return s3fs.S3FileSystem(
        key=TESTER.access_key, secret=TESTER.secret, use_listings_cache=False,
        client_kwargs={"endpoint_url": gw.url, "region_name": "us-east-1"},
        config_kwargs={"s3": {"addressing_style": "path"}},
    )


def test_s3fs_random_reads(gw, moto_data):
    fs = _s3fs(gw)
    data = moto_data.objects["big40.bin"]
    assert fs.info("motob/big40.bin")["size"] == len(data)
    rnd = random.Random(1234)
    with fs.open("motob/big40.bin", "rb", block_size=2 * MIB, cache_type="readahead") as f:
        for _ in range(60):
            off = rnd.randrange(0, len(data))
            n = rnd.choice([1, 17, 4096, 65536, MIB + 3, 3 * MIB])
            f.seek(off)
            got = f.read(n)
            assert got == data[off:off + n], (off, n)
    # cat_ranges issues independent ranged GETs
    starts = [rnd.randrange(0, len(data) - 5000) for _ in range(20)]
    got = fs.cat_ranges(["motob/big40.bin"] * 20, starts, [s + 5000 for s in starts])
    assert got == [data[s:s + 5000] for s in starts]


def test_s3fs_listing_and_special_keys(gw, moto_data):
    fs = _s3fs(gw)
    names = sorted(fs.ls("motob/list/a/", detail=False))
    assert names == sorted("motob/" + k for k in moto_data.objects if k.startswith("list/a/"))
    for key in ("with space.txt", "unicodé/ключ/日本語.txt", "plus+sign+.txt", "percent%25%.txt"):
        assert fs.cat_file("motob/" + key) == moto_data.objects[key], key


def aws(env, endpoint_url, *args, binary_out=False, check=True, timeout=600):
    p = subprocess.run([venv_bin("aws"), "--endpoint-url", endpoint_url, *args],
                       capture_output=True, env=env, timeout=timeout)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stderr.decode(errors="replace")[-2000:])
    return p


def env_for_tester(aws_env):
    return dict(aws_env, AWS_ACCESS_KEY_ID=TESTER.access_key, AWS_SECRET_ACCESS_KEY=TESTER.secret)


def test_aws_cli_ls_cp(gw, moto_data, aws_env, tmp_path):
    env = env_for_tester(aws_env)
    p = aws(env, gw.url, "s3", "ls", "s3://motob/list/")
    out = p.stdout.decode()
    for name in ("PRE a/", "PRE b/", "c.txt", "PRE d e/", "PRE é/", "PRE plus+/", "z"):
        assert name in out, out
    p = aws(env, gw.url, "s3", "cp", "s3://motob/chunky.bin", "-")
    assert p.stdout == moto_data.objects["chunky.bin"]
    dst = tmp_path / "space.txt"
    aws(env, gw.url, "s3", "cp", "s3://motob/with space.txt", str(dst))
    assert dst.read_bytes() == moto_data.objects["with space.txt"]
    p = aws(env, gw.url, "s3api", "head-object", "--bucket", "motob", "--key", "unicodé/ключ/日本語.txt")
    assert '"ContentLength"' in p.stdout.decode()
    p = aws(env, gw.url, "s3", "ls", "--recursive", "s3://motob/list/b/")
    assert p.stdout.decode().count("\n") == 4, p.stdout.decode()


def test_aws_cli_sync_prefix(gw, moto_data, aws_env, tmp_path):
    env = env_for_tester(aws_env)
    aws(env, gw.url, "s3", "sync", "s3://motob/list/b/", str(tmp_path / "sync"))
    n = 0
    for k in moto_data.objects:
        if k.startswith("list/b/"):
            assert (tmp_path / "sync" / k[len("list/b/"):]).read_bytes() == moto_data.objects[k], k
            n += 1
    assert n == 4


# --------------------------------------------------------------------------- 1 GiB


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_gib_object(cistern_factory, aws_env, tmp_path):
    base = cistern_factory.fs.root.parent / "big"
    bucket_dir = base / "bigb"
    bucket_dir.mkdir(parents=True, exist_ok=True)
    src = bucket_dir / "big1g.bin"
    size = 1 << 30
    want = s3util.write_det_file(src, "gib", size)
    try:
        extra = f'[origins.bigfs]\nkind = "fs"\nroot = "{base}"\n\n[buckets.bigb]\norigin = "bigfs"\n'
        c = cistern_factory.with_config("gib", with_moto=False, chunk_size="4MiB", memory="256MiB",
                                        disk="2GiB", extra=extra)
        env = env_for_tester(aws_env)
        out = tmp_path / "cli.bin"
        aws(env, c.url, "s3", "cp", "s3://bigb/big1g.bin", str(out))
        assert out.stat().st_size == size
        assert s3util.sha256_file(out) == want
        out.unlink()
        got = c.origin_requests(origin="bigfs", operation="get")
        assert got >= 1, "origin reads must be counted"
        out2 = tmp_path / "boto3.bin"
        cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=16 * MIB,
                             max_concurrency=10)
        c.client().download_file("bigb", "big1g.bin", str(out2), Config=cfg)
        assert s3util.sha256_file(out2) == want
        out2.unlink()
        # ranged reads across 4 MiB boundaries at the far end
        with open(src, "rb") as f:
            f.seek(size - 9 * MIB - 5)
            tail_bytes = f.read(5 * MIB + 10)
        r = c.get("bigb", "big1g.bin", headers={"Range": f"bytes={size - 9 * MIB - 5}-{size - 4 * MIB + 4}"})
        assert r.status == 206 and r.body == tail_bytes, r
    finally:
        src.unlink(missing_ok=True)
