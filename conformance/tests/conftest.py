"""Fixtures: free ports, moto (SigV4-checking), Cistern processes, metrics helpers.

Environment:
  CISTERN_BIN   path to the cistern binary (default: <repo>/target/release/cistern). It is copied
                into the session temp dir first, so a rebuild underneath does not disturb the run.
  CISTERN_KEEP_LOGS=1  print process log paths at teardown.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

import s3util
from s3util import Creds

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = float(os.environ.get("CISTERN_READY_TIMEOUT", "60"))

TESTER = Creds("tester", "tester-secret-7f3c9a1e55d04b8e")
LIMITED = Creds("limited", "limited-secret-0b4d8e6f19a2c7d3")
WRITER = Creds("writer", "writer-secret-5e2a9c07d1f84b36")
DEV = Creds("cistern-dev", "cistern-dev-secret")
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                   "K1SZFPTOtr/KBHBeksoGMGw==")
MOTO_POLICY = """{
  "Version": "2012-10-17",
  "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
}"""

MIB = 1 << 20


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: large-object tests (1 GiB); deselect with -m 'not slow'")


# --------------------------------------------------------------------------- ports / processes


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768 and up), never the same twice in
    a session. A port the kernel picks (bind to 0) can be taken as the source port of some
    outgoing connection before the process it is for binds it (seen in CI: `Address already
    in use`); ports below the range are never picked that way. (20000–20199 are left to
    test_membership's simulated nodes.)"""
    for _ in range(10_000):
        port = random.randrange(21000, 32000)
        if port not in _HANDED_OUT and port_is_free(port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port in 21000-32000")


def port_is_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_tcp(port: int, proc: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {timeout}s:\n{tail(log)}")


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def stop_process(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM (graceful: lets the cache flush), then SIGKILL the process group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- binaries


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cistern-conformance")


@pytest.fixture(scope="session")
def cistern_bin(session_dir) -> Path:
    src = Path(os.environ.get("CISTERN_BIN", "target/release/cistern"))
    if not src.is_absolute():
        src = (Path.cwd() / src) if (Path.cwd() / src).exists() else (REPO / src)
    if not src.exists():
        pytest.fail(f"cistern binary not found at {src} (set CISTERN_BIN)", pytrace=False)
    dst = session_dir / "bin" / "cistern"
    dst.parent.mkdir(exist_ok=True)
    shutil.copy2(src, dst)
    dst.chmod(dst.stat().st_mode | stat.S_IXUSR)
    return dst


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment (moto_server, aws)."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH", pytrace=False)
    return found


# --------------------------------------------------------------------------- moto


@dataclass
class Moto:
    endpoint: str  # 127.0.0.1:PORT
    creds: Creds
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self, creds: Creds | None = None):
        c = creds or self.creds
        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=c.access_key, aws_secret_access_key=c.secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


# How many unauthenticated actions moto allows before it checks SigV4 on every request:
# moto/core/authorization.py counts each action that goes through
# _authenticate_and_authorize_*_action (ActionAuthenticatorMixin.request_count) until it reaches
# settings.INITIAL_NO_AUTH_ACTION_COUNT (env INITIAL_NO_AUTH_ACTION_COUNT). Our setup uses exactly:
# iam:CreateUser, iam:CreatePolicy, iam:AttachUserPolicy, iam:CreateAccessKey.
MOTO_SETUP_ACTIONS = 4


# Objects a test module put into the session's shared moto buckets, as (bucket, key): deleted
# when that module ends, because motob's listing is other modules' ground truth (moto_data).
MOTO_CLEANUP: list[tuple[str, str]] = []


@pytest.fixture(scope="module", autouse=True)
def _leave_moto_as_found(request):
    yield
    if MOTO_CLEANUP:
        s3 = request.getfixturevalue("moto").client()
        for bucket, key in MOTO_CLEANUP:
            s3.delete_object(Bucket=bucket, Key=key)
        MOTO_CLEANUP.clear()


@pytest.fixture(scope="session")
def moto(session_dir) -> Moto:
    port = free_port()
    log = session_dir / "moto.log"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(MOTO_SETUP_ACTIONS),
               AWS_DEFAULT_REGION="us-east-1")
    with open(log, "wb") as lf:
        proc = subprocess.Popen([venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=lf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        wait_tcp(port, proc, log)
        iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="cistern-origin")
        arn = iam.create_policy(PolicyName="s3-all", PolicyDocument=MOTO_POLICY)["Policy"]["Arn"]
        iam.attach_user_policy(UserName="cistern-origin", PolicyArn=arn)
        key = iam.create_access_key(UserName="cistern-origin")["AccessKey"]
        m = Moto(f"127.0.0.1:{port}", Creds(key["AccessKeyId"], key["SecretAccessKey"]), proc, log)
        # From here on moto checks signatures: prove it, or re-signing bugs would be invisible.
        bad = m.client(Creds(key["AccessKeyId"], "not-the-secret"))
        with pytest.raises(Exception) as ei:
            bad.list_buckets()
        assert "SignatureDoesNotMatch" in str(ei.value) or "403" in str(ei.value), ei.value
        yield m
    finally:
        stop_process(proc, grace=5)


# Objects created in the moto bucket "motob" (exposed by Cistern under the same name).
SPECIAL_KEYS = [
    "with space.txt",
    "unicodé/ключ/日本語.txt",
    "plus+sign+.txt",
    "percent%25%.txt",
    "double//slash.txt",
    "/leading-slash.txt",
    "tilde~star*paren(1).txt",
    "question?hash#amp&eq=.txt",
    "semi;colon,comma'quote!.txt",
]
LIST_KEYS = sorted(
    [f"list/a/{i:02d}.txt" for i in range(12)]
    + [f"list/b/x/{i}.bin" for i in range(3)]
    + ["list/b/y.txt", "list/c.txt", "list/d e/f.txt", "list/é/ü.txt", "list/plus+/p.txt",
       "list/z", "list/zz/", "list/100%/x"]
)


@dataclass
class MotoData:
    bucket: str
    objects: dict[str, bytes]
    meta: dict[str, dict] = field(default_factory=dict)


@pytest.fixture(scope="session")
def moto_data(moto) -> MotoData:
    s3 = moto.client()
    bucket = "motob"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket="motob-other")
    objs: dict[str, bytes] = {
        "small.txt": b"hello world\n",
        "empty": b"",
        "chunky.bin": s3util.det_bytes("chunky", 3 * MIB + 12345),
        "exact2m.bin": s3util.det_bytes("exact2m", 2 * MIB),
        "cache/hit.bin": s3util.det_bytes("hit", 3 * MIB + 7),
        "cache/wrong-secret.txt": b"cached secret data\n" * 10,
        "cache/limited.txt": b"not for the limited principal\n",
        "cache/co8.bin": s3util.det_bytes("co8", 8 * MIB),
        "cache/restart.bin": s3util.det_bytes("restart", 5 * MIB + 3),
        "presign.txt": b"presigned content\n",
    }
    for k in SPECIAL_KEYS:
        objs[k] = ("content of " + k + "\n").encode()
    for k in LIST_KEYS:
        objs[k] = k.encode()
    for k, v in objs.items():
        s3.put_object(Bucket=bucket, Key=k, Body=v)
    meta = {
        "meta.html": dict(Body=b"<p>meta</p>", ContentType="text/html; charset=utf-8",
                          CacheControl="max-age=60", ContentDisposition='inline; filename="m.html"',
                          ContentLanguage="en", Metadata={"color": "blue", "x-y": "z"}),
    }
    for k, kw in meta.items():
        s3.put_object(Bucket=bucket, Key=k, **kw)
        objs[k] = kw["Body"]
    # A multipart object (ETag "...-N"), 40 MiB: boto3 download_file and s3fs read it.
    big = s3util.det_bytes("big40", 40 * MIB)
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="big40.bin")
    parts = []
    for i in range(5):
        p = s3.upload_part(Bucket=bucket, Key="big40.bin", UploadId=mpu["UploadId"], PartNumber=i + 1,
                           Body=big[i * 8 * MIB:(i + 1) * 8 * MIB])
        parts.append({"ETag": p["ETag"], "PartNumber": i + 1})
    s3.complete_multipart_upload(Bucket=bucket, Key="big40.bin", UploadId=mpu["UploadId"],
                                 MultipartUpload={"Parts": parts})
    objs["big40.bin"] = big
    s3.put_object(Bucket="motob-other", Key="x.txt", Body=b"other\n")
    return MotoData(bucket, objs, meta)


# --------------------------------------------------------------------------- Azurite (Blob origin)


@dataclass
class Azurite:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};"
                f"AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint={self.account_url};")

    def service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=0)


def azure_peer(name: str) -> str:
    """AZURITE_BLOB / AZCOPY as conformance/run exported them (conformance/azure-peers)."""
    path = os.environ.get(name)
    if not path or not Path(path).exists():
        pytest.fail(f"{name} is not set: run the suite through conformance/run", pytrace=False)
    return path


@pytest.fixture(scope="session")
def azurite(session_dir) -> Azurite:
    port = free_port()
    loc = session_dir / "azurite"
    loc.mkdir(exist_ok=True)
    log = loc / "azurite.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen(
            [azure_peer("AZURITE_BLOB"), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
            stdout=lf, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(loc))
    try:
        wait_tcp(port, proc, log)
        yield Azurite(port, proc, log)
    finally:
        stop_process(proc, grace=5)


# Blobs created in the Azurite container "azdata" (exposed by Cistern under the same name).
AZ_BLOBS = {
    "hello.txt": b"hello from azurite\n",
    "empty": b"",
    "chunky.bin": s3util.det_bytes("az-chunky", 3 * MIB + 4321),
    "dir/a.txt": b"a\n",
    "dir/sub/b.txt": b"bb\n",
    "sp ace+plus%.txt": b"odd name\n",
    "unicodé/日本.txt": "unicodé\n".encode(),
    "cache/auth.bin": s3util.det_bytes("az-auth", 2 * MIB + 5),
    "cache/cross.bin": s3util.det_bytes("az-cross", 2 * MIB + 77),
}


@dataclass
class AzData:
    container: str
    blobs: dict[str, bytes]


@pytest.fixture(scope="session")
def az_data(azurite) -> AzData:
    from azure.storage.blob import ContentSettings
    svc = azurite.service()
    cc = svc.create_container("azdata")
    svc.create_container("azother").upload_blob("x.txt", b"other\n")
    for name, data in AZ_BLOBS.items():
        cc.upload_blob(name, data)
    cc.upload_blob("meta.html", b"<p>meta</p>", metadata={"color": "blue", "Mixed_Case": "1"},
                   content_settings=ContentSettings(content_type="text/html; charset=utf-8",
                                                    cache_control="max-age=60",
                                                    content_language="en"))
    blobs = dict(AZ_BLOBS, **{"meta.html": b"<p>meta</p>"})
    return AzData("azdata", blobs)


# Blob accounts of the Blob-front gateway (besides the development account).
LIMITED_ACCOUNT = "limitedacct"
LIMITED_ACCOUNT_KEY = "bGltaXRlZC1hY2NvdW50LWtleS0wMTIzNDU2Nzg5YWJjZGVm"
WRITER_ACCOUNT = "writeracct"
WRITER_ACCOUNT_KEY = "d3JpdGVyLWFjY291bnQta2V5LTAxMjM0NTY3ODlhYmNkZWY="

AZURE_EXTRA = """
[origins.azurite]
kind = "azure_blob"
endpoint = "{endpoint}"
account = "devstoreaccount1"
key = {{ env = "AZURITE_KEY" }}

[buckets.azdata]
origin = "azurite"

[[principals]]
access_key = "devstoreaccount1"
secret = {{ env = "DEV_ACCOUNT_KEY" }}
buckets = ["*"]
permissions = ["read", "list"]

[[principals]]
access_key = "writeracct"
secret = {{ env = "WRITER_ACCOUNT_KEY" }}
buckets = ["*"]
permissions = ["read", "list", "write", "delete"]

[[principals]]
access_key = "limitedacct"
secret = {{ env = "LIMITED_ACCOUNT_KEY" }}
buckets = ["fsb"]
permissions = ["read", "list"]
"""


def azure_env() -> dict:
    return {"AZURITE_KEY": DEV_ACCOUNT_KEY, "DEV_ACCOUNT_KEY": DEV_ACCOUNT_KEY,
            "LIMITED_ACCOUNT_KEY": LIMITED_ACCOUNT_KEY, "WRITER_ACCOUNT_KEY": WRITER_ACCOUNT_KEY}


# --------------------------------------------------------------------------- fs origin data


@dataclass
class FsData:
    root: Path  # the fs origin root; each subdirectory is an origin bucket
    outside: Path  # a file outside root whose content must never be served
    outside_content: bytes
    files: dict[str, bytes]  # "bucket/key" -> bytes


@pytest.fixture(scope="session")
def fs_data(session_dir) -> FsData:
    base = session_dir / "fs"
    root = base / "data"
    files = {
        "fsb/hello.txt": b"hello from the fs origin\n",
        "fsb/empty": b"",
        "fsb/chunky.bin": s3util.det_bytes("fs-chunky", 3 * MIB + 4321),
        "fsb/dir/sub/deep.txt": b"deep\n",
        "fsb/with space+plus.txt": b"space plus\n",
        "fsb/unicodé.txt": "unicodé\n".encode(),
        "pub/open.txt": b"public bytes\n",
        "priv2/secret.txt": b"bucket priv2 is not exposed\n",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    outside = base / "outside-secret.txt"
    outside_content = b"TOP-SECRET-OUTSIDE-THE-DATA-DIR\n"
    outside.write_bytes(outside_content)
    return FsData(root, outside, outside_content, files)


# --------------------------------------------------------------------------- cistern


class Cistern:
    def __init__(self, bin_path: Path, workdir: Path, *, config: str | None = None,
                 args: list[str] | None = None, env: dict | None = None,
                 cwd: Path | None = None, s3_port: int | None = None,
                 admin_port: int | None = None, blob_port: int | None = None):
        self.bin = bin_path
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.s3_port = s3_port or free_port()
        self.admin_port = admin_port or free_port()
        self.blob_port = blob_port or free_port()
        self.config_text = config
        self.extra_args = list(args or [])
        self.env = dict(os.environ, RUST_BACKTRACE="1", **(env or {}))
        self.env.setdefault("RUST_LOG", "info")
        self.cwd = cwd or workdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log = workdir / "cistern.log"

    # -- addresses
    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def blob_url(self) -> str:
        """The Blob endpoint of the development account (path-style, emulator convention)."""
        return f"http://127.0.0.1:{self.blob_port}/devstoreaccount1"

    def connection_string(self, account: str = "devstoreaccount1", key: str | None = None) -> str:
        key = key or DEV_ACCOUNT_KEY
        return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{account};")

    # -- lifecycle
    def command(self) -> list[str]:
        cmd = [str(self.bin), "serve"]
        if self.config_text is not None:
            cfg = self.workdir / "cistern.toml"
            cfg.write_text(self.config_text.format(s3_port=self.s3_port, admin_port=self.admin_port,
                                                   blob_port=self.blob_port))
            cmd += ["--config", str(cfg)]
        return cmd + self.extra_args

    def start(self, wait: bool = True) -> "Cistern":
        self.starts += 1
        with open(self.log, "ab") as lf:
            lf.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            lf.flush()
            self.proc = subprocess.Popen(self.command(), stdout=lf, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=str(self.cwd), start_new_session=True,
                                         stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cistern exited with {self.proc.returncode} before /readyz:\n{tail(self.log)}")
            try:
                r = requests.get(self.admin + "/readyz", timeout=1)
                if r.status_code == 200:
                    return
                last = r.status_code
            except requests.RequestException as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"cistern not ready after {timeout}s (last: {last}):\n{tail(self.log)}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- metrics
    def metrics(self):
        r = requests.get(self.admin + "/metrics", timeout=10)
        assert r.status_code == 200, r.text[:500]
        return s3util.parse_metrics(r.text)

    def metric(self, name: str, **labels) -> float:
        return s3util.metric_sum(self.metrics(), name, **labels)

    def origin_requests(self, **labels) -> float:
        return self.metric("cistern_origin_requests_total", **labels)

    # -- requests
    def get(self, bucket, key, creds=TESTER, headers=None, query="", method="GET"):
        return s3util.get(self.endpoint, bucket, key, creds, headers=headers, query=query,
                          method=method)

    def client(self, creds: Creds = TESTER, **cfg):
        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **cfg),
        )


def cistern_config(*, moto: Moto | None, fs_root: Path | None, cache_dir: Path,
                   chunk_size: str = "1MiB", memory: str = "64MiB", disk: str = "1GiB",
                   extra: str = "", limited_secret_file: Path | None = None) -> str:
    """A TOML config; {s3_port}/{admin_port} are filled in by Cistern.command()."""
    def q(s) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = [
        "[listen]",
        's3 = "127.0.0.1:{s3_port}"',
        'blob = "127.0.0.1:{blob_port}"',
        'admin = "127.0.0.1:{admin_port}"',
        "",
        "[cache]",
        f"dir = {q(cache_dir)}",
        f"memory = {q(memory)}",
        f"disk = {q(disk)}",
        f"chunk_size = {q(chunk_size)}",
        "",
    ]
    if moto is not None:
        out += [
            "[origins.moto]",
            'kind = "s3"',
            f"endpoint = {q(moto.url)}",
            'region = "us-east-1"',
            f"access_key_id = {q(moto.creds.access_key)}",
            'secret_access_key = { env = "MOTO_SECRET" }',
            "path_style = true",
            "",
            "[buckets.motob]",
            'origin = "moto"',
            "",
            "[buckets.motoi]",
            'origin = "moto"',
            'origin_bucket = "motob"',
            'consistency = "immutable"',
            "",
        ]
    if fs_root is not None:
        out += [
            "[origins.local]",
            'kind = "fs"',
            f"root = {q(fs_root)}",
            "expose_buckets = false",
            "",
            "[buckets.fsb]",
            'origin = "local"',
            'consistency = "ttl"',
            'ttl = "1s"',
            "",
            "[buckets.pub]",
            'origin = "local"',
            "public_read = true",
            "",
        ]
    out += [
        "[[principals]]",
        'access_key = "tester"',
        'secret = { env = "TESTER_SECRET" }',
        'buckets = ["*"]',
        'permissions = ["read", "list"]',
        "",
    ]
    out += [
        "[[principals]]",
        'access_key = "writer"',
        'secret = { env = "WRITER_SECRET" }',
        'buckets = ["*"]',
        'permissions = ["read", "list", "write", "delete"]',
        "",
    ]
    if limited_secret_file is not None:
        out += [
            "[[principals]]",
            'access_key = "limited"',
            f"secret = {{ file = {q(limited_secret_file)} }}",
            'buckets = ["fsb"]',
            'permissions = ["read", "list"]',
            "",
        ]
    # str.format() is applied later: escape literal braces.
    text = "\n".join(out).replace("{", "{{").replace("}", "}}")
    for name in ("s3_port", "admin_port", "blob_port"):
        text = text.replace("{{" + name + "}}", "{" + name + "}")
    return text + "\n" + extra.replace("{", "{{").replace("}", "}}")


def cistern_env(moto: Moto | None) -> dict:
    env = {"TESTER_SECRET": TESTER.secret, "WRITER_SECRET": WRITER.secret}
    if moto is not None:
        env["MOTO_SECRET"] = moto.creds.secret
    return env


class CisternFactory:
    def __init__(self, bin_path: Path, base: Path, request, fs=None):
        self.bin = bin_path
        self.base = base
        self.request = request
        self.fs = fs
        self.instances: list[Cistern] = []
        self.n = 0

    @property
    def moto(self) -> Moto:
        self.request.getfixturevalue("moto_data")  # buckets and objects exist
        return self.request.getfixturevalue("moto")

    def _dir(self, name: str) -> Path:
        self.n += 1
        d = self.base / f"{name}-{self.n}"
        d.mkdir(parents=True)
        return d

    def with_config(self, name: str = "cistern", *, with_moto: bool = True, with_fs: bool = True,
                    start: bool = True, env: dict | None = None, **kw) -> Cistern:
        d = self._dir(name)
        secret_file = d / "limited.secret"
        secret_file.write_text(LIMITED.secret + "\n")
        m = self.moto if with_moto else None
        cfg = cistern_config(moto=m, fs_root=self.fs.root if (with_fs and self.fs) else None,
                             cache_dir=d / "cache", limited_secret_file=secret_file, **kw)
        c = Cistern(self.bin, d, config=cfg, env=dict(cistern_env(m), **(env or {})))
        self.instances.append(c)
        return c.start() if start else c

    def with_azurite(self, name: str = "cistern-az", **kw) -> Cistern:
        """Moto, the fs origin and Azurite (container azdata), with the Blob accounts."""
        az = self.request.getfixturevalue("azurite")
        self.request.getfixturevalue("az_data")
        extra = AZURE_EXTRA.format(endpoint=az.account_url)
        return self.with_config(name, extra=kw.pop("extra", "") + extra, env=azure_env(), **kw)

    def with_flags(self, name: str = "cistern-flags", *, args: list[str], cwd: Path | None = None,
                   start: bool = True, s3_port=None, admin_port=None) -> Cistern:
        d = self._dir(name)
        c = Cistern(self.bin, d, args=args, cwd=cwd, s3_port=s3_port, admin_port=admin_port)
        c.extra_args = args + ["--s3-listen", c.endpoint,
                               "--blob-listen", f"127.0.0.1:{c.blob_port}",
                               "--admin-listen", f"127.0.0.1:{c.admin_port}"]
        self.instances.append(c)
        return c.start() if start else c

    def close(self):
        for c in self.instances:
            c.stop()
            if os.environ.get("CISTERN_KEEP_LOGS"):
                print(f"cistern log: {c.log}")


@pytest.fixture
def cistern_factory(request, cistern_bin, tmp_path, fs_data):
    """Function-scoped: start fresh Cistern processes (config or flags); all stopped at teardown.
    Configs include the moto origin unless with_moto=False (moto is then started lazily)."""
    f = CisternFactory(cistern_bin, tmp_path, request, fs_data)
    yield f
    f.close()


SELFTEST = os.environ.get("CISTERN_SELFTEST_MOTO") == "1"


class _MotoAsGateway(Cistern):
    """CISTERN_SELFTEST_MOTO=1: point the differential tests at moto itself (known-good check)."""

    def __init__(self, m: Moto):
        self.s3_port = int(m.endpoint.rsplit(":", 1)[1])
        self.admin_port = 0


@pytest.fixture(scope="session")
def gw(request, session_dir, moto, moto_data, fs_data) -> Cistern:
    """The shared gateway: moto bucket motob (ttl) / motoi (immutable), fs buckets fsb (ttl 1s) and
    pub (public_read); chunk size 1 MiB so small objects span chunks."""
    if SELFTEST:
        object.__setattr__(TESTER, "access_key", moto.creds.access_key)
        object.__setattr__(TESTER, "secret", moto.creds.secret)
        yield _MotoAsGateway(moto)
        return
    cistern_bin = request.getfixturevalue("cistern_bin")
    (session_dir / "gw").mkdir(exist_ok=True)
    f = CisternFactory(cistern_bin, session_dir / "gw", request, fs_data)
    c = f.with_config("shared", chunk_size="1MiB")
    yield c
    f.close()


@pytest.fixture(scope="session")
def gw_az(request, cistern_bin, session_dir, fs_data) -> Cistern:
    """The shared Blob-front gateway: moto, fs and Azurite origins; 1 MiB chunks."""
    (session_dir / "gwaz").mkdir(exist_ok=True)
    f = CisternFactory(cistern_bin, session_dir / "gwaz", request, fs_data)
    c = f.with_azurite("shared-az", chunk_size="1MiB")
    yield c
    f.close()


@pytest.fixture(scope="session")
def gw_fs_only(request, cistern_bin, session_dir, fs_data) -> Cistern:
    """A gateway with only the fs origin (no moto): for tests that do not need moto."""
    (session_dir / "gwfs").mkdir(exist_ok=True)
    f = CisternFactory(cistern_bin, session_dir / "gwfs", request, fs_data)
    c = f.with_config("fsonly", with_moto=False, chunk_size="1MiB")
    yield c
    f.close()


@pytest.fixture
def aws_env(tmp_path):
    """Environment for AWS CLI v1 / boto3 subprocesses, isolated from ~/.aws."""
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    creds = tmp_path / "aws-credentials"
    creds.write_text("")
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AWS_"):
            del env[k]
    env.update(AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(creds),
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    return env


def run_threads(n: int, fn):
    """Run fn(i) in n threads released together; return the results (exceptions re-raised)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def worker(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results
