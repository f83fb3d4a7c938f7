"""Warm-up (`cistern warm` and the admin API): a prefix is filled through the normal read path
(one origin GET per chunk, cluster-wide from a front), later reads of it cost no origin request,
failures are reported with a non-zero exit, jobs resume from their checkpoint (across a
restart too), pins keep chunks through eviction, and the admin API is authenticated."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
import requests

import s3util
from conftest import MOTO_CLEANUP, TESTER, CisternFactory
from s3util import Creds

MIB = 1 << 20
OPERATOR = Creds("operator", "operator-secret-2b7e1f9c4d06a3e8")
ADMIN_EXTRA = """
[[principals]]
access_key = "operator"
secret = {{ file = "{secret_file}" }}
buckets = ["*"]
permissions = ["read", "list", "admin"]
"""


def operator_extra(d) -> str:
    f = d / "operator.secret"
    f.write_text(OPERATOR.secret + "\n")
    return ADMIN_EXTRA.format(secret_file=f)


def chunks(size: int) -> int:
    return max(1, -(-size // MIB))


def warm_cli(cistern_bin, c, *args, creds: Creds = OPERATOR, timeout: float = 120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CISTERN_"))}
    env.update(CISTERN_ACCESS_KEY=creds.access_key, CISTERN_SECRET_KEY=creds.secret)
    return subprocess.run([str(cistern_bin), "warm", *args, "--admin", f"127.0.0.1:{c.admin_port}"],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def api(c, method, path, creds: Creds | None = OPERATOR, **kw):
    auth = (creds.access_key, creds.secret) if creds else None
    return requests.request(method, c.admin + path, auth=auth, timeout=30, **kw)


def wait_job(c, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = api(c, "GET", f"/admin/warm/{job_id}").json()
        if j["state"] != "running":
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout}s")


def put_prefix(moto, sizes: dict[str, int], bucket="motob") -> tuple[str, dict[str, bytes]]:
    prefix = f"warm-{uuid.uuid4().hex[:8]}/"
    s3 = moto.client()
    objs = {}
    for name, size in sizes.items():
        data = s3util.det_bytes(prefix + name, size)
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=data)
        MOTO_CLEANUP.append((bucket, prefix + name))
        objs[prefix + name] = data
    return prefix, objs


@pytest.fixture(scope="module")
def warm_gw(request, cistern_bin, tmp_path_factory, fs_data):
    """A gateway over moto (motoi: immutable) with an `operator` principal holding `admin`."""
    base = tmp_path_factory.mktemp("warm")
    f = CisternFactory(cistern_bin, base, request, fs_data)
    c = f.with_config("warm", chunk_size="1MiB", extra=operator_extra(base))
    yield c
    f.close()


SIZES = {"a.bin": 100, "b.bin": MIB, "c.bin": 2 * MIB + MIB // 2, "d/e.bin": 3 * MIB + 5,
         "f.txt": 700 * 1024}


def test_warm_fills_prefix_and_later_reads_cost_no_origin_request(warm_gw, cistern_bin, moto):
    prefix, objs = put_prefix(moto, SIZES)
    gets = warm_gw.origin_requests(operation="get")
    r = warm_cli(cistern_bin, warm_gw, f"s3://motoi/{prefix}", "--concurrency", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"done: {len(objs)} of {len(objs)} objects" in r.stdout, r.stdout
    assert "objects" in r.stderr and "warm-up job" in r.stderr, r.stderr  # line progress (no TTY)
    # One origin GET per chunk (the first chunk comes along with the metadata).
    assert warm_gw.origin_requests(operation="get") - gets == sum(chunks(len(d)) for d in objs.values())
    before = warm_gw.origin_requests()
    for key, data in objs.items():
        got = warm_gw.get("motoi", key)
        assert got.status == 200 and got.body == data, (key, got.status)
        assert got.h("x-cistern-cache") == "hit", (key, got.headers)
    assert warm_gw.origin_requests() - before == 0, "a warmed object cost an origin request"
    # Warming it again: everything is cached, nothing is fetched.
    gets = warm_gw.origin_requests(operation="get")
    r = warm_cli(cistern_bin, warm_gw, f"s3://motoi/{prefix}")
    assert r.returncode == 0 and "0 B from the origin" in r.stdout, r.stdout
    assert warm_gw.origin_requests(operation="get") - gets == 0


def test_admin_api_is_authenticated_and_errors_are_clear(warm_gw, cistern_bin):
    r = api(warm_gw, "POST", "/admin/warm", creds=None, json={"bucket": "motoi"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), r.text
    r = api(warm_gw, "POST", "/admin/warm", creds=Creds("operator", "wrong"), json={"bucket": "motoi"})
    assert r.status_code == 401, r.text
    r = api(warm_gw, "POST", "/admin/warm", creds=TESTER, json={"bucket": "motoi"})
    assert r.status_code == 403 and r.json()["error"] == "AccessDenied", r.text
    for path in ("/admin/warm", "/admin/stats", "/dashboard"):
        assert api(warm_gw, "GET", path, creds=None).status_code == 401, path
    assert api(warm_gw, "GET", "/metrics", creds=None).status_code == 200  # Prometheus stays open
    r = api(warm_gw, "POST", "/admin/warm", json={"bucket": "no-such-bucket-here"})
    assert r.status_code == 404 and r.json()["error"] == "NoSuchBucket", r.text
    for body in ({"bucket": "motoi", "pin": "soon"}, {"bucket": "motoi", "concurrency": 0},
                 {"prefix": "x"}, {"bucket": "motoi", "bogus": 1}):
        r = api(warm_gw, "POST", "/admin/warm", json=body)
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (body, r.text)
    r = api(warm_gw, "POST", "/admin/warm", data=b"not json")
    assert r.status_code == 400, r.text
    for path in ("/admin/warm/0123abcd", "/admin/warm/..%2Fetc"):
        r = api(warm_gw, "GET", path)
        assert r.status_code == 404 and r.json()["error"] == "NoSuchJob", (path, r.text)
    r = warm_cli(cistern_bin, warm_gw, "ftp://motoi/x")
    assert r.returncode == 2 and "expected s3://" in r.stderr, r.stderr
    r = warm_cli(cistern_bin, warm_gw, "s3://no-such-bucket-here/x")
    assert r.returncode == 2 and "bucket" in r.stderr, r.stderr
    r = warm_cli(cistern_bin, warm_gw, "s3://motoi/x", creds=TESTER)
    assert r.returncode == 2 and "admin permission" in r.stderr, r.stderr
    assert OPERATOR.secret not in warm_gw.log.read_text(errors="replace")


def test_unreadable_object_is_reported_with_a_nonzero_exit(warm_gw, cistern_bin, moto):
    prefix, objs = put_prefix(moto, {"ok1.bin": 1000, "ok2.bin": MIB + 1})
    # Archived: HEAD works, GET answers 403 InvalidObjectState (as S3 does until a restore).
    MOTO_CLEANUP.append(("motob", prefix + "archived.bin"))
    moto.client().put_object(Bucket="motob", Key=prefix + "archived.bin", Body=b"x" * 5000,
                             StorageClass="GLACIER")
    r = warm_cli(cistern_bin, warm_gw, f"s3://motoi/{prefix}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 of 3 objects" in r.stdout and "1 objects failed" in r.stdout, r.stdout
    assert f"{prefix}archived.bin: " in r.stdout, r.stdout
    for key, data in objs.items():
        got = warm_gw.get("motoi", key)
        assert got.body == data and got.h("x-cistern-cache") == "hit", key


def test_resume_skips_what_is_done_even_after_a_restart(warm_gw, cistern_bin, moto):
    prefix, objs = put_prefix(moto, {f"{i:02d}.bin": MIB // 2 for i in range(8)})
    r = api(warm_gw, "POST", "/admin/warm", json={"bucket": "motoi", "prefix": prefix, "concurrency": 1})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    assert api(warm_gw, "DELETE", f"/admin/warm/{job}").status_code == 202  # interrupt it
    first = wait_job(warm_gw, job)
    assert first["state"] in ("cancelled", "done"), first
    assert api(warm_gw, "POST", f"/admin/warm/{job}/resume").status_code in (202, 409)
    wait_job(warm_gw, job)
    # Two more objects appear; resuming warms only what the checkpoint does not hold.
    s3 = moto.client()
    for name in ("new1.bin", "new2.bin"):
        MOTO_CLEANUP.append(("motob", prefix + name))
        s3.put_object(Bucket="motob", Key=prefix + name, Body=s3util.det_bytes(name, 1000))
    gets = warm_gw.origin_requests(operation="get")
    r = warm_cli(cistern_bin, warm_gw, "--resume", job)
    assert r.returncode == 0, r.stdout + r.stderr
    j = api(warm_gw, "GET", f"/admin/warm/{job}").json()
    assert (j["objects_total"], j["objects_done"], j["objects_skipped"]) == (10, 10, 8), j
    assert warm_gw.origin_requests(operation="get") - gets == 2, "only the new objects were fetched"
    # After a restart the job is still known, and resuming it asks the origin for nothing
    # but the listing.
    warm_gw.restart()
    j = api(warm_gw, "GET", f"/admin/warm/{job}").json()
    assert j["state"] == "done" and j["objects_done"] == 10, j
    gets, heads = (warm_gw.origin_requests(operation=op) for op in ("get", "head"))
    r = warm_cli(cistern_bin, warm_gw, "--resume", job)
    assert r.returncode == 0 and "10 skipped" in r.stdout, r.stdout
    assert warm_gw.origin_requests(operation="get") == gets
    assert warm_gw.origin_requests(operation="head") == heads


def test_pin_keeps_warmed_chunks_through_eviction(cistern_factory, cistern_bin, moto, moto_data, tmp_path):
    # RAM only (no SSD tier to fall back on), 16 MiB: pins may hold 8 MiB.
    c = cistern_factory.with_config("pin", chunk_size="1MiB", memory="16MiB", disk="0",
                                    extra=operator_extra(tmp_path))
    pinned, pobjs = put_prefix(moto, {f"{i}.bin": MIB for i in range(3)})
    plain, qobjs = put_prefix(moto, {f"{i}.bin": MIB for i in range(3)})
    r = warm_cli(cistern_bin, c, f"s3://motoi/{pinned}", "--pin", "1h")
    assert r.returncode == 0 and "3 chunks pinned" in r.stdout, r.stdout
    assert warm_cli(cistern_bin, c, f"s3://motoi/{plain}").returncode == 0
    stats = api(c, "GET", "/admin/stats").json()
    assert stats["pinned"]["chunks"] == 3 and stats["pinned"]["bytes"] == 3 * MIB, stats["pinned"]
    # 40 MiB of other reads push everything unpinned out of the 16 MiB RAM cache.
    big = c.get("motoi", "big40.bin")
    assert big.status == 200 and len(big.body) == 40 * MIB
    gets = c.origin_requests(operation="get")
    for key, data in pobjs.items():
        got = c.get("motoi", key)
        assert got.body == data and got.h("x-cistern-cache") == "hit", key
    assert c.origin_requests(operation="get") - gets == 0, "a pinned chunk was fetched again"
    for key, data in qobjs.items():
        assert c.get("motoi", key).body == data
    assert c.origin_requests(operation="get") - gets > 0, "control: unpinned chunks were evicted"


def test_warm_blob_url_on_azurite(cistern_factory, cistern_bin, azurite, tmp_path):
    c = cistern_factory.with_azurite("warm-az", chunk_size="1MiB", extra=operator_extra(tmp_path))
    cc = azurite.service().get_container_client("azdata")
    prefix = f"warmblob-{uuid.uuid4().hex[:6]}/"
    blobs = {prefix + "x.bin": s3util.det_bytes("wx", 2 * MIB + 3), prefix + "y.txt": b"why\n"}
    for name, data in blobs.items():
        cc.upload_blob(name, data)
    gets = c.origin_requests(operation="get")
    r = warm_cli(cistern_bin, c, f"http://127.0.0.1:{c.blob_port}/devstoreaccount1/azdata/{prefix}")
    assert r.returncode == 0 and "2 of 2 objects" in r.stdout, r.stdout + r.stderr
    assert c.origin_requests(operation="get") - gets == 4  # 3 chunks + 1
    from azure.storage.blob import BlobServiceClient
    svc = BlobServiceClient.from_connection_string(c.connection_string(), retry_total=0)
    gets = c.origin_requests(operation="get")
    for name, data in blobs.items():
        assert svc.get_blob_client("azdata", name).download_blob().readall() == data
    assert c.origin_requests(operation="get") - gets == 0


def test_warm_from_a_front_fills_the_cluster_once(cistern_factory, cistern_bin, tmp_path):
    from test_cluster import Cluster, DEV_KEY, DEV_SECRET, ranged
    cl = Cluster(cistern_factory, tmp_path)
    sizes = {"w/a.bin": 2 * MIB + 10, "w/b.bin": MIB, "w/c.txt": 100}
    (cl.data / "ds" / "w").mkdir()
    data = {k: cl.put(k, s) for k, s in sizes.items()}
    dev = Creds(DEV_KEY, DEV_SECRET)
    gets = cl.origin_gets()
    r = warm_cli(cistern_bin, cl.fronts[0], "s3://ds/w/", creds=dev)
    assert r.returncode == 0 and "3 of 3 objects" in r.stdout, r.stdout + r.stderr
    assert cl.origin_gets() - gets == sum(chunks(s) for s in sizes.values()), "one fill per chunk"
    gets = cl.origin_gets()
    for k, d in data.items():
        got = ranged(cl.fronts[1], k, 0, len(d) - 1)
        assert got.body == d, k
    assert cl.origin_gets() - gets == 0, "reads through the other front found every chunk"
    # Pinning afterwards pins at the owners, without fetching anything again.
    r = warm_cli(cistern_bin, cl.fronts[0], "s3://ds/w/", "--pin", "10m", creds=dev)
    assert r.returncode == 0, r.stdout + r.stderr
    pinned = sum(api(n, "GET", "/admin/stats", creds=dev).json()["pinned"]["chunks"] for n in cl.caches)
    assert pinned == sum(chunks(s) for s in sizes.values())
    assert cl.origin_gets() - gets == 0
