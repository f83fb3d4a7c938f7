"""Cache behaviour: hits, partial hits, single-flight, persistence across restart, metrics."""

from __future__ import annotations

import requests

import s3util
from conftest import LIMITED, TESTER, run_threads
from s3util import Creds

MIB = 1 << 20
ORIGIN = "cistern_origin_requests_total"


def test_admin_endpoints(gw):
    assert requests.get(gw.admin + "/healthz", timeout=5).status_code == 200
    assert requests.get(gw.admin + "/readyz", timeout=5).status_code == 200
    gw.get("motob", "small.txt")
    text = requests.get(gw.admin + "/metrics", timeout=5).text
    samples = s3util.parse_metrics(text)
    names = {n for n, _, _ in samples}
    for want in ("cistern_requests_total", "cistern_served_bytes_total", ORIGIN):
        assert want in names, f"{want} missing from /metrics"
    assert s3util.metric_sum(samples, "cistern_requests_total", dialect="s3") > 0
    assert s3util.metric_sum(samples, ORIGIN, origin="moto") > 0


def test_repeated_range_is_hit_without_origin_traffic(gw, moto_data):
    data = moto_data.objects["cache/hit.bin"]
    rng = (1000000, 2500000)  # spans chunks 0..2 at 1 MiB
    hdr = {"Range": f"bytes={rng[0]}-{rng[1]}"}
    r1 = gw.get("motoi", "cache/hit.bin", headers=hdr)
    assert r1.status == 206 and r1.body == data[rng[0]:rng[1] + 1], r1
    assert r1.h("x-cistern-cache") == "miss", r1.headers
    before = gw.origin_requests()
    served_before = gw.metric("cistern_served_bytes_total")
    r2 = gw.get("motoi", "cache/hit.bin", headers=hdr)
    assert r2.status == 206 and r2.body == r1.body, r2
    assert r2.h("x-cistern-cache") == "hit", r2.headers
    for h in ("etag", "content-range", "content-length", "last-modified"):
        assert r2.h(h) == r1.h(h), h
    assert gw.origin_requests() - before == 0, "a cache hit contacted the origin"
    served = gw.metric("cistern_served_bytes_total") - served_before
    assert served >= len(r2.body), f"served_bytes_total moved by {served}, expected >= {len(r2.body)}"
    assert gw.metric("cistern_served_bytes_total", tier="origin") >= len(r1.body)


def test_partial_hit(gw, moto_data):
    key = "cache/restart.bin"  # read through gw by no other test
    data = moto_data.objects[key]
    r = gw.get("motoi", key, headers={"Range": f"bytes=0-{MIB - 1}"})
    assert r.status == 206 and r.body == data[:MIB], r
    assert r.h("x-cistern-cache") == "miss", r.headers
    before = gw.origin_requests(operation="get")
    r = gw.get("motoi", key, headers={"Range": f"bytes=0-{2 * MIB - 1}"})
    assert r.status == 206 and r.body == data[:2 * MIB], r
    assert r.h("x-cistern-cache") == "partial", r.headers
    assert gw.origin_requests(operation="get") - before == 1, "only the missing chunk is fetched"
    r = gw.get("motoi", key)
    assert r.status == 200 and r.body == data
    assert r.h("x-cistern-cache") == "partial", r.headers
    before = gw.origin_requests()
    r = gw.get("motoi", key)
    assert r.status == 200 and r.body == data
    assert r.h("x-cistern-cache") == "hit", r.headers
    assert gw.origin_requests() == before


def test_hit_on_fs_origin(gw_fs_only, fs_data):
    data = fs_data.files["fsb/chunky.bin"]
    hdr = {"Range": "bytes=500000-1600000"}
    gw_fs_only.get("fsb", "chunky.bin", headers=hdr)
    before = gw_fs_only.origin_requests(origin="local", operation="get")
    r = gw_fs_only.get("fsb", "chunky.bin", headers=hdr)
    assert r.status == 206 and r.body == data[500000:1600001], r
    assert r.h("x-cistern-cache") == "hit", r.headers
    assert gw_fs_only.origin_requests(origin="local", operation="get") == before


def test_fs_origin_reads_are_counted(gw_fs_only, fs_data):
    """Every origin read counts, the fs origin too (operation=get for the chunk fill)."""
    path = fs_data.root / "fsb" / "counted.bin"
    path.write_bytes(s3util.det_bytes("counted", 2 * MIB + 1))
    try:
        before = gw_fs_only.origin_requests(origin="local", operation="get")
        r = gw_fs_only.get("fsb", "counted.bin")
        assert r.status == 200
        assert r.h("x-cistern-cache") == "miss", r.headers
        delta = gw_fs_only.origin_requests(origin="local", operation="get") - before
        assert 1 <= delta <= 3, f"3 chunks of 1 MiB were filled, origin get delta = {delta}"
    finally:
        path.unlink()


def test_concurrent_cold_range_single_flight(cistern_factory, moto_data):
    """32 concurrent cold GETs of one chunk-aligned 4 MiB range make exactly one origin GET."""
    c = cistern_factory.with_config("coalesce", chunk_size="4MiB")
    data = moto_data.objects["cache/co8.bin"]
    lo, hi = 4 * MIB, 8 * MIB - 1
    before = c.origin_requests(origin="moto", operation="get")

    def one(i):
        return c.get("motoi", "cache/co8.bin", headers={"Range": f"bytes={lo}-{hi}"})

    results = run_threads(32, one)
    for r in results:
        assert r.status == 206 and r.error is None, r
        assert r.body == data[lo:hi + 1]
    delta = c.origin_requests(origin="moto", operation="get") - before
    assert delta == 1, f"origin GETs for 32 concurrent cold reads of one chunk: {delta}"
    caches = sorted(r.h("x-cistern-cache") for r in results)
    assert set(caches) <= {"hit", "miss", "partial"}, caches


def test_restart_keeps_disk_cache(cistern_factory, moto_data):
    c = cistern_factory.with_config("restart", chunk_size="1MiB")
    data = moto_data.objects["cache/restart.bin"]
    hdr = {"Range": f"bytes={MIB}-{3 * MIB - 1}"}
    r = c.get("motoi", "cache/restart.bin", headers=hdr)
    assert r.status == 206 and r.body == data[MIB:3 * MIB], r
    c.restart()  # SIGTERM (graceful), then the same config and cache dir
    r = c.get("motoi", "cache/restart.bin", headers=hdr)
    assert r.status == 206 and r.body == data[MIB:3 * MIB], r
    assert r.h("x-cistern-cache") == "hit", r.headers
    gets = c.origin_requests(origin="moto", operation="get")
    assert gets == 0, f"after restart the cached range made {gets} origin GETs"


# --------------------------------------------------------------------------- authorization on hits


def test_wrong_secret_on_cached_object(gw, moto_data):
    key = "cache/wrong-secret.txt"
    for _ in range(2):
        r = gw.get("motob", key)
        assert r.status == 200 and r.body == moto_data.objects[key], r
    r = gw.get("motob", key, creds=Creds(TESTER.access_key, "wrong-secret"))
    assert r.status == 403, r
    assert r.error_code() == "SignatureDoesNotMatch", r
    assert moto_data.objects[key] not in r.body
    r = gw.get("motob", key, creds=Creds("nobody", "whatever"), headers={"Range": "bytes=0-5"})
    assert r.status == 403 and r.error_code() == "InvalidAccessKeyId", r
    r = s3util.request(gw.endpoint, "GET", "/motob/" + key)
    assert r.status == 403 and r.error_code() == "AccessDenied", r


def test_principal_bucket_scope_on_cached_object(gw, moto_data):
    key = "cache/limited.txt"
    assert gw.get("motob", key).status == 200
    assert gw.get("motob", key).h("x-cistern-cache") == "hit"
    r = gw.get("motob", key, creds=LIMITED)
    assert r.status == 403 and r.error_code() == "AccessDenied", r
    assert moto_data.objects[key] not in r.body
    r = s3util.request(gw.endpoint, "GET", "/motob?list-type=2", creds=LIMITED)
    assert r.status == 403, r
    # the limited principal's secret comes from a file reference and works on its own bucket
    r = gw.get("fsb", "hello.txt", creds=LIMITED)
    assert r.status == 200 and r.body == b"hello from the fs origin\n", r


def test_writes_are_not_permitted_for_read_list_principal(gw, moto):
    """tester has read+list only: a PUT/DELETE is refused (403, or 501 while writes are not
    implemented) and nothing changes at the origin."""
    r = s3util.request(gw.endpoint, "PUT", "/motob/should-not-exist.txt", creds=TESTER, body=b"x")
    assert r.status in (403, 501), r
    assert r.error_code() in ("AccessDenied", "NotImplemented"), r
    r = s3util.request(gw.endpoint, "DELETE", "/motob/small.txt", creds=TESTER)
    assert r.status in (403, 501), r
    m = s3util.get(moto.endpoint, "motob", "should-not-exist.txt", moto.creds, method="HEAD")
    assert m.status == 404, m
    m = s3util.get(moto.endpoint, "motob", "small.txt", moto.creds, method="HEAD")
    assert m.status == 200, m
    assert gw.get("motob", "small.txt").status == 200


# --------------------------------------------------------------------------- graceful shutdown


def test_sigterm_drains_in_flight_downloads(cistern_factory, tmp_path):
    """SIGTERM stops new work but lets a download already under way finish, byte for byte,
    and the process then exits cleanly."""
    import http.client
    import signal
    import time

    from conftest import DEV

    data_dir = tmp_path / "drain-data"
    (data_dir / "b").mkdir(parents=True)
    blob = s3util.det_bytes("drain", 24 * 1024 * 1024)
    (data_dir / "b" / "drain.bin").write_bytes(blob)
    c = cistern_factory.with_flags("drain", args=["--data", str(data_dir),
                                                  "--cache-dir", str(tmp_path / "drain-cache"),
                                                  "--memory-cache", "64MiB", "--disk-cache", "0"])
    url = f"{c.url}/b/drain.bin"
    conn = http.client.HTTPConnection(c.endpoint, timeout=30)
    conn.request("GET", "/b/drain.bin", headers=s3util.sign_headers("GET", url, {}, DEV))
    resp = conn.getresponse()
    assert resp.status == 200
    got = bytearray(resp.read(1024 * 1024))  # the download is under way ...
    c.proc.send_signal(signal.SIGTERM)        # ... when the gateway is told to stop
    time.sleep(0.5)
    while True:
        piece = resp.read(256 * 1024)
        if not piece:
            break
        got += piece
        time.sleep(0.005)  # a slow reader
    assert bytes(got) == blob, f"drained download: {len(got)} of {len(blob)} bytes"
    assert c.proc.wait(timeout=30) == 0, "clean exit after draining"
    assert b"stopped" in c.log.read_bytes()
