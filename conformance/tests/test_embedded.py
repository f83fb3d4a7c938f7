"""The embedded default (no config file), plain flags, and start-up validation of configs."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

import s3util
from conftest import DEV, MIB, Cistern, free_port, tail
from test_clients import aws


def dev_env(aws_env):
    return dict(aws_env, AWS_ACCESS_KEY_ID=DEV.access_key, AWS_SECRET_ACCESS_KEY=DEV.secret)


def test_embedded_default(cistern_factory, aws_env, tmp_path):
    home = tmp_path / "laptop"
    (home / "data" / "b").mkdir(parents=True)
    (home / "data" / "b" / "hello.txt").write_bytes(b"hello, embedded\n")
    (home / "data" / "other").mkdir()
    (home / "data" / "other" / "x.bin").write_bytes(s3util.det_bytes("emb", 5 * MIB + 1))
    c = cistern_factory.with_flags("embedded", args=[], cwd=home)
    env = dev_env(aws_env)
    p = aws(env, c.url, "s3", "ls", "s3://b/")
    assert "hello.txt" in p.stdout.decode(), p.stdout
    p = aws(env, c.url, "s3", "cp", "s3://b/hello.txt", "-")
    assert p.stdout == b"hello, embedded\n"
    p = aws(env, c.url, "s3", "cp", "s3://other/x.bin", "-")
    assert p.stdout == s3util.det_bytes("emb", 5 * MIB + 1)
    # the dev credentials are checked, not just accepted
    bad = dict(env, AWS_SECRET_ACCESS_KEY="not-the-dev-secret")
    p = aws(bad, c.url, "s3", "cp", "s3://b/hello.txt", "-", check=False)
    assert p.returncode != 0 and b"hello, embedded" not in p.stdout
    r = s3util.request(c.endpoint, "GET", "/b/hello.txt")
    assert r.status == 403, r
    # default cache dir ./.cistern is used (relative to cwd)
    assert (home / ".cistern").exists(), sorted(p.name for p in home.iterdir())
    r = c.get("b", "hello.txt", creds=DEV)
    assert r.status == 200 and r.h("x-cistern-cache") in ("hit", "miss", "partial", "bypass")


def test_embedded_creates_data_dir(cistern_factory, tmp_path):
    home = tmp_path / "empty-laptop"
    home.mkdir()
    c = cistern_factory.with_flags("embedded-empty", args=[], cwd=home)
    assert (home / "data").is_dir(), "data/ must be created when missing"
    r = s3util.request(c.endpoint, "GET", "/b?list-type=2", creds=DEV)
    assert r.status == 404 and r.error_code() == "NoSuchBucket", r


def test_plain_flags(cistern_factory, tmp_path, fs_data):
    data = tmp_path / "d"
    (data / "bk").mkdir(parents=True)
    blob = s3util.det_bytes("flags", 2 * MIB + 3)
    (data / "bk" / "f.bin").write_bytes(blob)
    cache = tmp_path / "cache-flags"
    c = cistern_factory.with_flags(
        "flags", args=["--data", str(data), "--cache-dir", str(cache), "--chunk-size", "1MiB",
                       "--memory-cache", "32MiB", "--disk-cache", "256MiB"],
        cwd=tmp_path)
    r = c.get("bk", "f.bin", creds=DEV, headers={"Range": "bytes=1048570-1048590"})
    assert r.status == 206 and r.body == blob[1048570:1048591], r
    before = c.origin_requests(operation="get")
    r = c.get("bk", "f.bin", creds=DEV)
    assert r.status == 200 and r.body == blob
    # chunk 0 and 1 were cached by the ranged read; only chunk 2 is fetched
    assert c.origin_requests(operation="get") - before == 1, "--chunk-size 1MiB not honoured?"
    assert cache.exists(), "--cache-dir not used"
    assert not (tmp_path / "data").exists(), "--data ignored: ./data was created"


def test_flags_override_config(cistern_factory, tmp_path):
    c = cistern_factory.with_config("override", with_moto=False, start=False)
    c.extra_args = ["--s3-listen", f"127.0.0.1:{(other := free_port())}"]
    c.start(wait=True)
    r = s3util.request(f"127.0.0.1:{other}", "GET", "/pub/open.txt")
    assert r.status == 200, r
    with pytest.raises(OSError):
        s3util.request(c.endpoint, "GET", "/pub/open.txt", timeout=2)


def _must_not_start(cistern_bin, tmp_path, config: str, env=None) -> str:
    c = Cistern(cistern_bin, tmp_path, config=config, env=env)
    c.start(wait=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and c.proc.poll() is None:
        try:
            if requests.get(c.admin + "/readyz", timeout=0.5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    rc = c.proc.poll()
    c.stop()
    assert rc is not None and rc != 0, f"cistern started with a bad config (rc={rc}):\n{tail(c.log)}"
    return tail(c.log)


BASE = """[listen]
s3 = "127.0.0.1:{s3_port}"
admin = "127.0.0.1:{admin_port}"

[cache]
dir = "cache"
"""


def test_unknown_config_key_is_startup_error(cistern_bin, tmp_path):
    log = _must_not_start(cistern_bin, tmp_path, BASE + 'chunk_sise = "4MiB"\n')
    assert "chunk_sise" in log, log


def test_unknown_section_is_startup_error(cistern_bin, tmp_path):
    _must_not_start(cistern_bin, tmp_path, BASE + '\n[cahce]\nmemory = "1MiB"\n')


def test_inline_secret_is_startup_error(cistern_bin, tmp_path):
    cfg = BASE + '\n[[principals]]\naccess_key = "a"\nsecret = "inline-secret-value"\nbuckets = ["*"]\npermissions = ["read"]\n'
    log = _must_not_start(cistern_bin, tmp_path, cfg)
    assert "inline-secret-value" not in log, "a secret value was written to the log"


def test_missing_secret_env_is_startup_error(cistern_bin, tmp_path):
    cfg = BASE + '\n[[principals]]\naccess_key = "a"\nsecret = {{ env = "CISTERN_TEST_UNSET_VAR_X" }}\nbuckets = ["*"]\npermissions = ["read"]\n'
    _must_not_start(cistern_bin, tmp_path, cfg)


def test_secret_not_logged(cistern_factory, moto):
    c = cistern_factory.with_config("nolog")
    c.get("motob", "small.txt")
    c.get("motob", "small.txt", creds=s3util.Creds("tester", "wrong"))
    c.stop()
    log = c.log.read_text(errors="replace")
    assert moto.creds.secret not in log
    assert "tester-secret-7f3c9a1e55d04b8e" not in log


def test_help_lists_flags(cistern_bin):
    p = subprocess.run([str(cistern_bin), "serve", "--help"], capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 0, out
    for flag in ("--data", "--cache-dir", "--s3-listen", "--admin-listen", "--config",
                 "--memory-cache", "--disk-cache", "--chunk-size"):
        assert flag in out, flag
