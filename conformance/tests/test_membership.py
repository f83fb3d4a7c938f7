"""Cluster membership from a registry: etcd (Debian's etcd server, started here) and a
Kubernetes EndpointSlice watch; zones.

Cache nodes register in etcd under a lease (`--peers-etcd`), every process watches the prefix.
Liveness comes from the registry (lease expiry, or a revoked lease on a clean stop), and a
process probes at most 4 members per interval however many are registered (no all-to-all
probing). Zones (`--zone`): a hot chunk's replicas sit in distinct zones, and a front reads the
replica in its own zone."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import s3util
from conftest import free_port, stop_process
from test_cluster import CLUSTER_SECRET, DEV_KEY, DEV_SECRET, MIB, s3

ETCD = shutil.which("etcd")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class Etcd:
    """A one-member etcd on loopback, in its own data directory."""

    def __init__(self, tmp_path):
        self.port, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp_path / "etcd"
        self.log = tmp_path / "etcd.log"
        self.cmd = [ETCD, "--name", "t", "--data-dir", str(self.dir),
                    "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                    "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-cluster", f"t=http://127.0.0.1:{peer}"]
        self.start()

    def start(self):
        with open(self.log, "ab") as lf:
            self.proc = subprocess.Popen(self.cmd, stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=1).json().get("health") == "true":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not start:\n{self.log.read_text()[-2000:]}")

    def call(self, path: str, body: dict) -> dict:
        r = requests.post(self.url + path, json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def nodes(self, prefix: str) -> dict[str, dict]:
        got = self.call("/v3/kv/range", {"key": b64(prefix + "/nodes/"),
                                         "range_end": b64(prefix + "/nodes0")})
        return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
                for kv in got.get("kvs", [])}

    def lease(self, ttl: int) -> str:
        return self.call("/v3/lease/grant", {"TTL": ttl})["ID"]

    def put(self, key: str, value: str, lease: str) -> None:
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value), "lease": lease})

    def revoke(self, lease: str) -> None:
        self.call("/v3/lease/revoke", {"ID": lease})

    def stop(self):
        stop_process(self.proc)


@pytest.fixture
def etcd(tmp_path):
    assert ETCD, "etcd is not installed (conformance/run installs Debian's etcd-server)"
    e = Etcd(tmp_path)
    yield e
    e.stop()


def dev_principal(tmp_path) -> str:
    """A config file replaces the embedded default's credentials: name them again."""
    f = tmp_path / "dev.secret"
    f.write_text(DEV_SECRET + "\n")
    return (f'\n[[principals]]\naccess_key = "{DEV_KEY}"\nsecret = {{ file = "{f}" }}\n'
            'buckets = ["*"]\npermissions = ["read", "list", "write", "delete"]\n')


def wait_for(what, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(node) -> float:
    return node.metric("cistern_cluster_members", state="alive")


def members(node) -> float:
    return sum(node.metric("cistern_cluster_members", state=s) for s in ("alive", "suspect", "dead"))


class RegistryCluster:
    """Cache nodes and fronts with membership from a registry (flags in `member_args`)."""

    def __init__(self, factory, tmp_path, member_args, zones, front_zone, config=""):
        self.data = tmp_path / "data"
        (self.data / "ds").mkdir(parents=True)
        secret = tmp_path / "cluster.secret"
        secret.write_text(CLUSTER_SECRET + "\n")
        cfg = tmp_path / "cluster.toml"
        cfg.write_text("[cluster]\nprobe_interval = \"500ms\"\n" + config + dev_principal(tmp_path))
        self.common = ["--data", str(self.data), "--cluster-secret-file", str(secret),
                       "--config", str(cfg), "--chunk-size", "1MiB", "--memory-cache", "64MiB",
                       "--disk-cache", "64MiB"]
        self.member_args = member_args
        self.peer_ports = [free_port() for _ in zones]
        self.caches = [
            factory.with_flags(f"cache{i}", start=False, args=self.common + member_args(p) + [
                "--role", "cache", "--peer-listen", f"127.0.0.1:{p}", "--zone", z])
            for i, (p, z) in enumerate(zip(self.peer_ports, zones))
        ]
        self.front = factory.with_flags("front", start=False, args=self.common + member_args(None)
                                        + ["--role", "front", "--zone", front_zone])
        for c in self.caches + [self.front]:
            c.start(wait=False)
        for c in self.caches + [self.front]:
            c.wait_ready()

    def put(self, key: str, size: int) -> bytes:
        data = s3util.det_bytes(key, size)
        (self.data / "ds" / key).write_bytes(data)
        return data


def test_etcd_membership_leases_watch_and_bounded_probes(cistern_factory, tmp_path, etcd):
    prefix = f"/cistern-test/{uuid.uuid4().hex[:8]}"
    c = RegistryCluster(
        cistern_factory, tmp_path,
        lambda _port: ["--peers-etcd", etcd.url],
        zones=["z1", "z2", "z3"], front_zone="z1",
        config=f'etcd_prefix = "{prefix}"\nlease_ttl = "3s"\n')
    front = c.front
    # Every cache node registered itself (address, zone, weight, instance) under its lease.
    wait_for("three registrations", lambda: len(etcd.nodes(prefix)) == 3)
    regs = etcd.nodes(prefix)
    assert sorted(r["zone"] for r in regs.values()) == ["z1", "z2", "z3"]
    assert sorted(r["addr"] for r in regs.values()) == sorted(f"127.0.0.1:{p}" for p in c.peer_ports)
    for n in c.caches + [front]:
        wait_for("three members everywhere", lambda n=n: alive(n) == 3)

    # Reads spread over the registered nodes; one origin GET per chunk.
    data = c.put("etcd.bin", 12 * MIB)
    got = s3(front).get_object(Bucket="ds", Key="etcd.bin")["Body"].read()
    assert got == data
    gets = sum(n.metric("cistern_origin_requests_total", operation="get") for n in c.caches + [front])
    assert gets <= 13, gets
    assert all(n.metric("cistern_peer_served_bytes_total") > 0 for n in c.caches)

    # 200 more registrations (simulated nodes that answer nothing): every process learns them
    # through the watch, and probes stay bounded (at most 4 per interval, not one per member).
    lease = etcd.lease(60)
    for i in range(200):
        addr = f"127.0.0.1:{20000 + i}"
        etcd.put(f"{prefix}/nodes/{addr}", json.dumps({"addr": addr, "zone": "z9", "weight": 1,
                                                       "instance": "sim"}), lease)
    wait_for("203 members at the front", lambda: members(front) == 203)
    probes = lambda n: n.metric("cistern_peer_requests_total", op="health")  # noqa: E731
    before = [probes(n) for n in c.caches + [front]]
    t0 = time.monotonic()
    time.sleep(3)
    elapsed = time.monotonic() - t0
    rounds = elapsed / 0.5 + 2
    for n, b in zip(c.caches + [front], before):
        sent = probes(n) - b
        assert sent <= 4 * rounds, f"{sent} probes in {elapsed:.1f}s with 203 members"
    # Revoking their lease removes all 200 at once.
    etcd.revoke(lease)
    wait_for("back to three", lambda: members(front) == 3)
    got = s3(front).get_object(Bucket="ds", Key="etcd.bin")["Body"].read()
    assert got == data

    # A killed node (SIGKILL: no goodbye) leaves when its lease expires; reads go on.
    victim = c.caches[1]
    victim.proc.kill()
    victim.proc.wait()
    wait_for("the lease to expire", lambda: len(etcd.nodes(prefix)) == 2)
    wait_for("the front to drop the node", lambda: members(front) == 2)
    fresh = c.put("after-kill.bin", 6 * MIB)
    assert s3(front).get_object(Bucket="ds", Key="after-kill.bin")["Body"].read() == fresh
    # It comes back and registers again.
    victim.start()
    wait_for("the node to come back", lambda: alive(front) == 3)

    # A clean stop revokes the lease: the registration goes without waiting for expiry.
    leaving = c.caches[2]
    addr = f"127.0.0.1:{c.peer_ports[2]}"
    leaving.stop()
    assert f"{prefix}/nodes/{addr}" not in etcd.nodes(prefix)
    wait_for("the front to drop the stopped node", lambda: members(front) == 2)

    # etcd down: everyone keeps the last view and serves; back up, registrations resume.
    etcd.stop()
    assert s3(front).get_object(Bucket="ds", Key="etcd.bin")["Body"].read() == data
    etcd.start()
    leaving.start()
    wait_for("three registrations after the outage", lambda: len(etcd.nodes(prefix)) == 3)
    wait_for("three members after the outage", lambda: alive(front) == 3)


def test_hot_replicas_in_distinct_zones_and_the_front_reads_its_own(cistern_factory, tmp_path,
                                                                     etcd):
    prefix = f"/cistern-test/{uuid.uuid4().hex[:8]}"
    # The front keeps no near copy, so every read of the hot chunk goes to a cache node.
    c = RegistryCluster(
        cistern_factory, tmp_path, lambda _port: ["--peers-etcd", etcd.url],
        zones=["za", "zb", "zc"], front_zone="zb",
        config=f'etcd_prefix = "{prefix}"\nhot_threshold = 3\nhot_replicas = 3\nnear_cache = "0"\n')
    wait_for("three members", lambda: alive(c.front) == 3)
    data = c.put("hot.bin", 1 * MIB)
    creds = s3util.Creds(DEV_KEY, DEV_SECRET)

    def read():
        r = s3util.get(c.front.endpoint, "ds", "hot.bin", creds, headers={"Range": "bytes=0-65535"})
        assert r.status == 206 and r.body == data[:65536]

    for _ in range(6):  # hot now
        read()
    served = lambda: [n.metric("cistern_peer_served_bytes_total") for n in c.caches]  # noqa: E731
    before = served()
    for _ in range(20):
        read()
    delta = [a - b for a, b in zip(served(), before)]
    # zb's node served every hot read (whole chunks: a hot chunk crosses whole); the others
    # at most filled zb's replica once.
    assert delta[1] >= 20 * MIB, delta
    assert delta[0] + delta[2] <= 1 * MIB + 65536, delta


class FakeKubeApi:
    """A stand-in for the Kubernetes API's EndpointSlice list and watch (no Kubernetes here):
    it serves what the tests put, as the API server's JSON, and ends each watch after
    `watch_seconds` as the API server does after some minutes."""

    def __init__(self, watch_seconds: float = 2.0):
        self.watch_seconds = watch_seconds
        self.lists = 0
        self.slices: dict[str, dict] = {}
        self.version = 1
        self.cond = threading.Condition()
        self.events: list[tuple[int, dict]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                ok_path = path == "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices"
                if not ok_path or "labelSelector=kubernetes.io%2Fservice-name%3Dcistern-cache" not in query:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if "watch=1" in query:
                    since = int(query.split("resourceVersion=")[1].split("&")[0])
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    sent = since
                    ends = time.monotonic() + api.watch_seconds
                    try:
                        while time.monotonic() < ends:
                            with api.cond:
                                api.cond.wait_for(lambda: api.version > sent, timeout=1)
                                new = [e for v, e in api.events if v > sent]
                                sent = api.version
                            for e in new:
                                line = (json.dumps(e) + "\n").encode()
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                                self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")  # the watch ends; the client watches again
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                with api.cond:
                    api.lists += 1
                    body = json.dumps({"kind": "EndpointSliceList",
                                       "metadata": {"resourceVersion": str(api.version)},
                                       "items": list(api.slices.values())}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, name: str, port: int, zone: str, ready: bool = True, kind: str = "MODIFIED"):
        with self.cond:
            self.version += 1
            s = {"metadata": {"name": name, "resourceVersion": str(self.version),
                              "labels": {"kubernetes.io/service-name": "cistern-cache"}},
                 "addressType": "IPv4", "ports": [{"name": "peer", "port": port}],
                 "endpoints": [{"addresses": ["127.0.0.1"], "zone": zone,
                                "conditions": {"ready": ready}}]}
            kind = kind if name in self.slices else "ADDED"
            self.slices[name] = s
            self.events.append((self.version, {"type": kind, "object": s}))
            self.cond.notify_all()

    def delete(self, name: str):
        with self.cond:
            self.version += 1
            s = self.slices.pop(name)
            s["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, {"type": "DELETED", "object": s}))
            self.cond.notify_all()

    def close(self):
        self.server.shutdown()


def test_kubernetes_endpointslice_membership(cistern_factory, tmp_path):
    api = FakeKubeApi()
    try:
        c = RegistryCluster(
            cistern_factory, tmp_path,
            lambda port: ["--peers-k8s", "ns/cistern-cache:peer"]
            + (["--advertise", f"127.0.0.1:{port}"] if port else []),
            zones=["z0", "z1", "z2"], front_zone="z0", config=f'k8s_api = "{api.url}"\n')
        # The Service's slices list the cache pods (one slice per node here: they share an IP).
        for i, p in enumerate(c.peer_ports):
            api.set(f"s{i}", p, f"z{i}")
        wait_for("three members from the slices", lambda: alive(c.front) == 3)
        data = c.put("k8s.bin", 6 * MIB)
        assert s3(c.front).get_object(Bucket="ds", Key="k8s.bin")["Body"].read() == data
        # Past the first watches' end: every process watches again from where it ended, without
        # listing again (4 processes, one list each).
        time.sleep(api.watch_seconds + 0.5)
        assert api.lists == 4, api.lists
        # A node that is not ready leaves the placement; ready again, it returns.
        api.set("s1", c.peer_ports[1], "z1", ready=False)
        wait_for("an unready node to leave", lambda: members(c.front) == 2)
        assert s3(c.front).get_object(Bucket="ds", Key="k8s.bin")["Body"].read() == data
        api.set("s1", c.peer_ports[1], "z1", ready=True)
        wait_for("it to return", lambda: alive(c.front) == 3)
        api.delete("s2")
        wait_for("a deleted slice's node to leave", lambda: members(c.front) == 2)
        # Each node knows itself from its advertised address (it serves its own keys).
        assert all(n.metric("cistern_cluster_members", state="alive") >= 2 for n in c.caches[:2])
    finally:
        api.close()
