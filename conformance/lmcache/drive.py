#!/usr/bin/env python3
"""Drive LMCache's real S3 remote connector (lmcache 0.5.6, awscrt) with CPU tensors.

Stores NUM_CHUNKS full KV chunks through LMCache's S3Connector (created the same
way LMCache does it: CreateConnector(remote_url="s3://...", extra_config=...)),
then checks exists / batched_async_contains / get / batched_get and compares bytes.

Env:
  S3_ENDPOINT            http://host:port   (scheme http => disable_tls=True)
  BUCKET                 bucket name (LMCache addresses it virtual-host style:
                         Host: <BUCKET>.<host>:<port>, path /<key>)
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
  S3_REGION              default us-east-1
  LMCACHE_S3_URL         optional: full remote_url override, e.g. s3://kv.localhost:9000
  NUM_CHUNKS             default 4
  NUM_LAYERS             default 4   (chunk bytes = 2*L*CHUNK*HEADS*HEAD_DIM*2)
  CHUNK_SIZE             default 256 tokens
  KV_HEADS / HEAD_DIM    default 8 / 128  -> default chunk = 4 MiB
  MODEL_NAME             default meta-llama/Llama-3.1-8B (key has a '/', see report)

<BUCKET>.<host> must resolve: `run` (beside this file) gives the script a private mount
namespace whose /etc/hosts names it, and starts Cistern with a cache-only bucket.
"""
import asyncio
import os
import sys
import threading
import time
from urllib.parse import urlparse

import torch

from lmcache.utils import CacheEngineKey
from lmcache.v1.config import LMCacheEngineConfig
from lmcache.v1.metadata import LMCacheMetadata
from lmcache.v1.storage_backend.connector import CreateConnector
from lmcache.v1.storage_backend.local_cpu_backend import LocalCPUBackend


def env(name, default=None):
    v = os.environ.get(name, default)
    if v is None:
        sys.exit(f"missing env var {name}")
    return v


endpoint = urlparse(env("S3_ENDPOINT"))
bucket = env("BUCKET")
region = env("S3_REGION", "us-east-1")
remote_url = os.environ.get("LMCACHE_S3_URL") or f"s3://{bucket}.{endpoint.netloc}"
num_chunks = int(env("NUM_CHUNKS", "4"))
L, T = int(env("NUM_LAYERS", "4")), int(env("CHUNK_SIZE", "256"))
H, D = int(env("KV_HEADS", "8")), int(env("HEAD_DIM", "128"))
model = env("MODEL_NAME", "meta-llama/Llama-3.1-8B")

extra_config = {
    "s3_region": region,
    "save_chunk_meta": False,           # adapter asserts it is False
    "disable_tls": endpoint.scheme == "http",
    "s3_prefer_http2": os.environ.get("S3_PREFER_HTTP2", str(endpoint.scheme == "https")).lower() in ("1", "true"),
    "s3_num_io_threads": 4,
    "aws_access_key_id": env("AWS_ACCESS_KEY_ID"),
    "aws_secret_access_key": env("AWS_SECRET_ACCESS_KEY"),
}
config = LMCacheEngineConfig.from_dict({
    "chunk_size": T,
    "local_cpu": False,
    "max_local_cpu_size": 1,
    "save_unfull_chunk": False,
    "remote_url": remote_url,
    "remote_serde": "naive",
    "extra_config": extra_config,
})
metadata = LMCacheMetadata(
    model_name=model, world_size=1, local_world_size=1, worker_id=0,
    local_worker_id=0, kv_dtype=torch.bfloat16, kv_shape=(L, 2, T, H, D),
    chunk_size=T,
)

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()


def run(coro, timeout=60):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


cpu = LocalCPUBackend(config, metadata)
conn = CreateConnector(remote_url, loop, cpu, config, metadata)
real = getattr(conn, "_connector", conn)
print(f"remote_url={remote_url} connector={type(conn).__name__}->{type(real).__name__} "
      f"chunk_bytes={real.full_chunk_size_bytes}")


def key(i):
    return CacheEngineKey(model_name=model, world_size=1, worker_id=0,
                          chunk_hash=0x1234ABCD0000 + i, dtype=torch.bfloat16)


keys = [key(i) for i in range(num_chunks)]
sent = []
t0 = time.time()
for i, k in enumerate(keys):
    m = cpu.allocate(real.meta_shapes, real.meta_dtypes, real.meta_fmt)
    g = torch.Generator().manual_seed(i)
    m.tensor.copy_(torch.randn(m.tensor.shape, generator=g).to(m.tensor.dtype))
    sent.append(bytes(m.byte_array))
    run(conn.put(k, m))
    # (no ref_count_down here: put path already releases it)
print(f"put {num_chunks} chunks in {time.time()-t0:.2f}s; key[0]={keys[0].to_string()!r} "
      f"-> object path {real._format_safe_path(keys[0].to_string())!r}")

# fresh connector so size cache is empty and HEADs really go to the server
conn2 = CreateConnector(remote_url, loop, cpu, config, metadata)
miss = key(999)
print("exists(key0) =", run(conn2.exists(keys[0])), "| exists(miss) =", run(conn2.exists(miss)))
print("batched_async_contains(keys+[miss]) =",
      run(conn2.batched_async_contains("lookup-1", keys + [miss])))
m0 = run(conn2.get(keys[1]))
print("get(key1) ok =", m0 is not None and bytes(m0.byte_array) == sent[1])
conn3 = CreateConnector(remote_url, loop, cpu, config, metadata)
t0 = time.time()
got = run(conn3.batched_get(keys + [miss]))
ok = [g is not None and bytes(g.byte_array) == s for g, s in zip(got, sent)]
print(f"batched_get: match={ok} miss_is_None={got[-1] is None} in {time.time()-t0:.2f}s")
fails = real.connection_failures
print("RESULT:", "PASS" if all(ok) and got[-1] is None and m0 is not None else "FAIL",
      f"(connection_failures={fails})")
os._exit(0 if all(ok) else 1)
