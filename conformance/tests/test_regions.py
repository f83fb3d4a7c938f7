"""Regions: a cluster in region B asks region A's cluster for a chunk before its origin.

Two clusters on loopback over the same origin (the `--data` directory), each one `cistern`
process; B reaches A's peer listener through a proxy that delays every byte by 40 ms each way
(a WAN). B's `[[cluster.regions]]` lists A. A region answers only for what it holds (a miss
there is never its origin read), and when A is gone B reads its origin: an outage costs hit
ratio, never a failed read."""

from __future__ import annotations

import asyncio
import threading

import pytest

import s3util
from conftest import free_port
from test_cluster import CLUSTER_SECRET, MIB, s3
from test_membership import dev_principal

DELAY = 0.040


class DelayProxy:
    """A TCP proxy on loopback forwarding to `target` with `delay` seconds each way."""

    def __init__(self, target_port: int, delay: float):
        self.port = free_port()
        self.target = target_port
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer):
            try:
                while data := await reader.read(1 << 16):
                    await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(cr, cw):
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                cw.close()
                return
            await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

        async def main():
            self.server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            ready.set()
            async with self.server:
                await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)


@pytest.fixture
def regions(cistern_factory, tmp_path):
    data = tmp_path / "data"
    (data / "ds").mkdir(parents=True)
    secret = tmp_path / "cluster.secret"
    secret.write_text(CLUSTER_SECRET + "\n")
    pa, pb = free_port(), free_port()
    common = ["--data", str(data), "--cluster-secret-file", str(secret), "--chunk-size", "1MiB",
              "--memory-cache", "64MiB", "--disk-cache", "64MiB"]
    cfg_a = tmp_path / "a.toml"
    cfg_a.write_text('[cluster]\nregion = "a"\nprobe_interval = "500ms"\n' + dev_principal(tmp_path))
    a = cistern_factory.with_flags("region-a", args=common + [
        "--config", str(cfg_a), "--peer-listen", f"127.0.0.1:{pa}", "--peers", f"127.0.0.1:{pa}"])
    proxy = DelayProxy(pa, DELAY)
    cfg_b = tmp_path / "b.toml"
    cfg_b.write_text('[cluster]\nregion = "b"\nprobe_interval = "500ms"\n'
                     '[[cluster.regions]]\nname = "a"\n'
                     f'peers = ["127.0.0.1:{proxy.port}"]\ntimeout = "3s"\n' + dev_principal(tmp_path))
    b = cistern_factory.with_flags("region-b", args=common + [
        "--config", str(cfg_b), "--peer-listen", f"127.0.0.1:{pb}", "--peers", f"127.0.0.1:{pb}"])
    yield a, b, data
    proxy.close()


def gets(node) -> float:
    return node.metric("cistern_origin_requests_total", operation="get")


def fills(node, outcome) -> float:
    return node.metric("cistern_region_fills_total", region="a", outcome=outcome)


def test_a_miss_in_one_region_is_filled_from_the_other_before_the_origin(regions):
    a, b, data = regions
    body = s3util.det_bytes("shared.bin", 6 * MIB + 77)
    (data / "ds" / "shared.bin").write_bytes(body)
    # Region A reads it first: 7 chunks from the origin, cached in A.
    assert s3(a).get_object(Bucket="ds", Key="shared.bin")["Body"].read() == body
    before = gets(b)
    # Region B reads it: the chunks come from A over the WAN, not from the origin. (The first
    # chunk may come along with the metadata, which B asks its origin for: the ETag is
    # always the origin's word.)
    assert s3(b).get_object(Bucket="ds", Key="shared.bin")["Body"].read() == body
    assert gets(b) - before <= 1
    assert fills(b, "hit") >= 6
    # Now cached in B too: a second read touches neither A nor the origin.
    hits = fills(b, "hit")
    r = s3(b).get_object(Bucket="ds", Key="shared.bin", Range="bytes=2000000-3999999")
    assert r["Body"].read() == body[2000000:4000000]
    assert fills(b, "hit") == hits and gets(b) - before <= 1

    # An object A never read: A answers "not cached" (it never reads its origin for B).
    own = s3util.det_bytes("only-b.bin", 3 * MIB)
    (data / "ds" / "only-b.bin").write_bytes(own)
    a_gets = gets(a)
    assert s3(b).get_object(Bucket="ds", Key="only-b.bin")["Body"].read() == own
    assert fills(b, "miss") >= 2
    assert gets(a) == a_gets, "region A read its origin for region B"


def test_a_region_outage_costs_hit_ratio_only(regions):
    a, b, data = regions
    body = s3util.det_bytes("before.bin", 4 * MIB)
    (data / "ds" / "before.bin").write_bytes(body)
    assert s3(a).get_object(Bucket="ds", Key="before.bin")["Body"].read() == body
    a.proc.kill()
    a.proc.wait()
    # A is gone: B reads everything from its origin, correctly, at once and after it notices.
    for i in range(3):
        assert s3(b).get_object(Bucket="ds", Key="before.bin",
                                Range=f"bytes={i * MIB}-{i * MIB + 99}")["Body"].read() \
            == body[i * MIB:i * MIB + 100]
    fresh = s3util.det_bytes("after.bin", 3 * MIB)
    (data / "ds" / "after.bin").write_bytes(fresh)
    assert s3(b).get_object(Bucket="ds", Key="after.bin")["Body"].read() == fresh
    assert fills(b, "hit") == 0
    # The front's own cluster kept serving; the region's failures were counted, not returned.
    assert fills(b, "unavailable") + fills(b, "miss") >= 1 or \
        b.metric("cistern_peer_requests_total", op="health", result="unavailable") >= 1
