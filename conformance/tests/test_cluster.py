"""The cache cluster: three cache nodes and two fronts as separate `cistern` processes.

Started as a user would, with the documented flags (`--role`, `--peer-listen`, `--peers`,
`--cluster-secret-file`) on the embedded default (the `--data` directory as buckets, the
development credentials). Origin requests are counted by summing every node's
`cistern_origin_requests_total` (each origin request passes through one node's instrumented
origin layer)."""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
import urllib.parse

import boto3
import pytest
import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from botocore.config import Config

import s3util
from conftest import DEV_ACCOUNT, DEV_ACCOUNT_KEY, free_port, run_threads

MIB = 1 << 20
DEV_KEY, DEV_SECRET = "cistern-dev", "cistern-dev-secret"
CLUSTER_SECRET = "cluster-secret-for-tests-0f3a9c"
ORIGIN = "cistern_origin_requests_total"


class Cluster:
    def __init__(self, factory, tmp_path, caches: int = 3, fronts: int = 2):
        self.data = tmp_path / "data"
        (self.data / "ds").mkdir(parents=True)
        self.secret_file = tmp_path / "cluster.secret"
        self.secret_file.write_text(CLUSTER_SECRET + "\n")
        self.peer_ports = [free_port() for _ in range(caches)]
        self.peers = ",".join(f"127.0.0.1:{p}" for p in self.peer_ports)
        common = ["--data", str(self.data), "--peers", self.peers,
                  "--cluster-secret-file", str(self.secret_file), "--chunk-size", "1MiB",
                  "--memory-cache", "64MiB", "--disk-cache", "64MiB"]
        self.caches = [
            factory.with_flags(f"cache{i}", start=False,
                               args=common + ["--role", "cache", "--peer-listen", f"127.0.0.1:{p}"])
            for i, p in enumerate(self.peer_ports)
        ]
        self.fronts = [factory.with_flags(f"front{i}", start=False, args=common + ["--role", "front"])
                       for i in range(fronts)]
        for c in self.caches + self.fronts:
            c.start(wait=False)
        for c in self.caches + self.fronts:
            c.wait_ready()
        # Formed: every process has heard every node answer (a node probed before it listened
        # is suspect — routed last — until its next probe answers).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(n.metric("cistern_cluster_members", state="alive") == caches for n in self.nodes):
                break
            time.sleep(0.05)

    @property
    def nodes(self):
        return self.caches + self.fronts

    def origin_gets(self) -> float:
        return sum(n.metric(ORIGIN, operation="get") for n in self.nodes if n.proc.poll() is None)

    def origin_reads(self) -> float:
        return sum(n.metric(ORIGIN, operation=op) for n in self.nodes if n.proc.poll() is None
                   for op in ("get", "head"))

    def put(self, key: str, size: int) -> bytes:
        data = s3util.det_bytes(key, size)
        (self.data / "ds" / key).write_bytes(data)
        return data


def s3(front):
    return boto3.client("s3", endpoint_url=front.url, region_name="us-east-1",
                        aws_access_key_id=DEV_KEY, aws_secret_access_key=DEV_SECRET,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def blob(front):
    from azure.storage.blob import BlobServiceClient
    return BlobServiceClient.from_connection_string(front.connection_string(), retry_total=0)


def ranged(front, key, lo, hi):
    return s3util.get(front.endpoint, "ds", key, s3util.Creds(DEV_KEY, DEV_SECRET),
                      headers={"Range": f"bytes={lo}-{hi}"})


@pytest.fixture
def cluster(cistern_factory, tmp_path):
    return Cluster(cistern_factory, tmp_path)


def test_both_dialects_through_every_front_with_chunks_spread(cluster):
    data = cluster.put("spread.bin", 24 * MIB + 123)
    sha = hashlib.sha256(data).hexdigest()
    got = s3(cluster.fronts[0]).get_object(Bucket="ds", Key="spread.bin")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == sha
    gets = cluster.origin_gets()
    assert gets <= 26, f"{gets} origin GETs for 25 chunks"
    # Every cache node holds and served part of the object.
    served = [c.metric("cistern_peer_served_bytes_total") for c in cluster.caches]
    assert all(s > 0 for s in served), served
    assert sum(served) >= len(data)
    # The other front and the other dialect read the same cached chunks.
    got = blob(cluster.fronts[1]).get_blob_client("ds", "spread.bin").download_blob(
        max_concurrency=4).readall()
    assert hashlib.sha256(got).hexdigest() == sha
    assert cluster.origin_gets() == gets, "the second read contacted the origin"
    r = ranged(cluster.fronts[1], "spread.bin", 5 * MIB, 7 * MIB - 1)
    assert r.status == 206 and r.body == data[5 * MIB:7 * MIB]
    assert r.h("x-cistern-cache") == "hit", r.headers
    # Fronts hold no chunks of their own: the first front's bytes were filled from the origin
    # by the owners, the second front's came from the owners' caches.
    assert cluster.fronts[0].metric("cistern_served_bytes_total", tier="origin") >= len(data)
    assert cluster.fronts[1].metric("cistern_served_bytes_total", tier="peer") >= len(data)
    for f in cluster.fronts:
        assert f.metric("cistern_peer_served_bytes_total") == 0


def test_cold_herd_through_two_fronts_makes_one_origin_request(cluster):
    data = cluster.put("herd.bin", 8 * MIB)
    lo, hi = 4 * MIB, 5 * MIB - 1
    before = cluster.origin_reads()

    def one(i):
        return ranged(cluster.fronts[i % 2], "herd.bin", lo, hi)

    results = run_threads(32, one)
    for r in results:
        assert r.status == 206 and r.body == data[lo:hi + 1], r
    delta = cluster.origin_reads() - before
    assert delta == 1, f"origin requests for 32 concurrent cold reads through 2 fronts: {delta}"


def test_a_cache_node_killed_under_load_costs_no_errors_and_rejoins(cluster):
    data = cluster.put("kill.bin", 16 * MIB)
    front = cluster.fronts[0]
    got = s3(front).get_object(Bucket="ds", Key="kill.bin")["Body"].read()
    assert got == data
    victim = cluster.caches[1]
    results: list[tuple[float, int, bool]] = []
    stop = threading.Event()

    def reader(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            lo = rnd.randrange(0, len(data) - 3 * MIB)
            hi = lo + rnd.randrange(1, 3 * MIB)
            started = time.monotonic()
            try:
                r = ranged(front, "kill.bin", lo, hi)
                ok = r.status == 206 and r.body == data[lo:hi + 1]
                status = r.status
            except Exception:  # noqa: BLE001 - a refused or cut connection is a failure too
                ok, status = False, -1
            results.append((started, status, ok))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    killed_at = time.monotonic()
    victim.proc.kill()  # SIGKILL: no goodbye
    victim.proc.wait()
    noticed_at = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if front.metric("cistern_cluster_members", state="dead") >= 1:
            noticed_at = time.monotonic()
            break
        time.sleep(0.1)
    assert noticed_at is not None, "the front never marked the killed node dead"
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    after = [r for r in results if r[0] >= killed_at]
    failed_after_noticed = [r for r in results if r[0] >= noticed_at and not r[2]]
    failed_at_all = [r for r in results if not r[2]]
    assert len(after) >= 20, f"only {len(after)} reads after the kill"
    assert not failed_after_noticed, failed_after_noticed[:5]
    # Fallback (next node, then the origin) even covers the reads before the kill was noticed.
    # (Once the loop's chunks are hot, the front's near cache serves them without any node.)
    assert not failed_at_all, failed_at_all[:5]
    assert (front.metric("cistern_peer_fallbacks_total")
            + front.metric("cistern_near_cache_hits_total")) > 0
    # With the node dead, a fresh object is placed over the two others and reads correctly.
    during = cluster.put("during.bin", 12 * MIB)
    assert s3(front).get_object(Bucket="ds", Key="during.bin")["Body"].read() == during

    # The node comes back, is marked alive, and serves its share again.
    victim.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if front.metric("cistern_cluster_members", state="dead") == 0:
            break
        time.sleep(0.1)
    assert front.metric("cistern_cluster_members", state="alive") == 3
    fresh = cluster.put("after.bin", 12 * MIB)
    assert s3(front).get_object(Bucket="ds", Key="after.bin")["Body"].read() == fresh
    assert victim.metric("cistern_peer_served_bytes_total") > 0


def peer_mac(secret: str, *parts: bytes) -> bytes:
    """HMAC-SHA256 over length-prefixed parts (auth/src/peer.rs), computed independently."""
    m = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    for part in parts:
        m.update(len(part).to_bytes(4, "big"))
        m.update(part)
    return m.digest()


def body_digest(secret: str, body: bytes) -> bytes:
    """The peer body digest: AES-256-GCM's tag over the body as associated data, nothing
    encrypted, nonce zero, under a key derived from the secret."""
    key = peer_mac(secret, b"cistern-peer-v3 body key")
    return AESGCM(key).encrypt(b"\0" * 12, b"", body)


def peer_request_mac(secret: str, method: str, path_and_query: str, secs: int,
                     body: bytes = b"") -> bytes:
    return peer_mac(secret, b"cistern-peer-v3 request", method.encode(), path_and_query.encode(),
                    str(secs).encode(), body_digest(secret, body))


def peer_sign(secret: str, method: str, path_and_query: str, secs: int, body: bytes = b"") -> str:
    """The peer request header (auth/src/peer.rs), computed independently."""
    return f"v1 {secs} {peer_request_mac(secret, method, path_and_query, secs, body).hex()}"


def test_peer_requests_without_the_cluster_secret_get_no_data(cluster):
    data = cluster.put("secret.bin", 2 * MIB)
    r = ranged(cluster.fronts[0], "secret.bin", 0, 2 * MIB - 1)
    assert r.status == 206 and r.body == data
    etag = r.h("etag").strip('"')
    q = urllib.parse.urlencode({"b": "ds", "k": "secret.bin", "e": etag, "s": len(data),
                                "i": 0, "cs": MIB})
    path = f"/v1/chunk?{q}"
    now = int(time.time())
    attempts = {
        "unsigned": {},
        "garbage": {"x-cistern-peer": f"v1 {now} " + "00" * 32},
        "wrong secret": {"x-cistern-peer": peer_sign("not-the-cluster-secret", "GET", path, now)},
        "other path": {"x-cistern-peer": peer_sign(CLUSTER_SECRET, "GET", "/v1/health", now)},
        "expired": {"x-cistern-peer": peer_sign(CLUSTER_SECRET, "GET", path, now - 3600)},
    }
    for port in cluster.peer_ports:
        for what, headers in attempts.items():
            resp = requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)
            assert resp.status_code == 401, (what, resp.status_code)
            assert data[:64] not in resp.content and len(resp.content) < 100, what
            if what != "other path":  # that one is a valid signature for /v1/health
                health = requests.get(f"http://127.0.0.1:{port}/v1/health", headers=headers,
                                      timeout=10)
                assert health.status_code == 401, (what, health.status_code)
    # Signed with the secret, the same request is answered (the test can fail).
    owner_answers = 0
    for port in cluster.peer_ports:
        resp = requests.get(f"http://127.0.0.1:{port}{path}",
                            headers={"x-cistern-peer": peer_sign(CLUSTER_SECRET, "GET", path, now)},
                            timeout=10)
        assert resp.status_code == 200, resp.status_code
        assert resp.content == data[:MIB]
        # The answer's MAC binds the request, the status, the body's keyed digest and the
        # headers describing it: recomputed here from what arrived, and a changed byte or a
        # cut body no longer matches it.
        described = f"{resp.headers.get('x-cistern-tier', '')}|{resp.headers.get('x-cistern-chunk', '')}|{resp.headers.get('x-cistern-fetched', '')}"
        req_mac = peer_request_mac(CLUSTER_SECRET, "GET", path, now)

        def answer_mac(body: bytes) -> str:
            return peer_mac(CLUSTER_SECRET, b"cistern-peer-v3 answer", req_mac,
                            (200).to_bytes(2, "big"), body_digest(CLUSTER_SECRET, body),
                            described.encode()).hex()

        assert resp.headers["x-cistern-peer"] == answer_mac(resp.content)
        flipped = bytearray(resp.content)
        flipped[len(flipped) // 2] ^= 1
        assert answer_mac(bytes(flipped)) != resp.headers["x-cistern-peer"]
        assert answer_mac(resp.content[:-1]) != resp.headers["x-cistern-peer"]
        owner_answers += 1
    assert owner_answers == 3


def test_read_your_writes_across_fronts(cluster):
    cluster.put("ryw.bin", 3 * MIB)
    a, b = s3(cluster.fronts[0]), s3(cluster.fronts[1])
    assert len(b.get_object(Bucket="ds", Key="ryw.bin")["Body"].read()) == 3 * MIB
    new = s3util.det_bytes("ryw-new", 2 * MIB + 7)
    a.put_object(Bucket="ds", Key="ryw.bin", Body=new)
    assert b.get_object(Bucket="ds", Key="ryw.bin")["Body"].read() == new
    newer = b"rewritten through the other front"
    bc = blob(cluster.fronts[1]).get_blob_client("ds", "ryw.bin")
    bc.upload_blob(newer, overwrite=True)
    assert a.get_object(Bucket="ds", Key="ryw.bin")["Body"].read() == newer
    a.delete_object(Bucket="ds", Key="ryw.bin")
    with pytest.raises(Exception) as e:
        b.get_object(Bucket="ds", Key="ryw.bin")
    assert "NoSuchKey" in str(e.value)


def test_a_hot_chunk_is_served_from_the_fronts_near_cache(cluster):
    data = cluster.put("hot.bin", 2 * MIB)
    lo, hi = 0, 64 * 1024 - 1
    before = [c.metric("cistern_peer_served_total", op="chunk") for c in cluster.caches]

    def many(i):
        out = []
        for _ in range(40):
            out.append(ranged(cluster.fronts[i % 2], "hot.bin", lo, hi))
        return out

    for batch in run_threads(8, many):
        for r in batch:
            assert r.status == 206 and r.body == data[lo:hi + 1], r
    near = sum(f.metric("cistern_near_cache_hits_total") for f in cluster.fronts)
    asked = [c.metric("cistern_peer_served_total", op="chunk") - b
             for c, b in zip(cluster.caches, before)]
    # 320 reads of one chunk: once hot, the fronts serve it from RAM.
    assert near >= 100, (near, asked)
    assert sum(asked) < 320 - 100, asked
