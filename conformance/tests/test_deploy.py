"""Deployment: the container image, the Kubernetes manifests and the monitoring files.

- The image (docker/Containerfile) is built with podman from the binary under test, in a
  private podman store under this run's temp dir (vfs, nothing shared, nothing kept). No container
  is started (this kind of machine refuses it): the image is exported from a created container
  and its ENTRYPOINT run under chroot(8) as its USER, in a private mount namespace where the
  image's root filesystem is bound read-only (Kubernetes' readOnlyRootFilesystem) and only the
  cache volume is writable, then sent real requests.
- The manifests (docker/k8s/cistern.yaml) are validated against the Kubernetes API schemas, and
  their ConfigMap, Secret keys, mounts, workload-identity environment and each role's arguments
  are started in that image as a cache node and a front that find each other by the headless
  Service's name.
- The alerting rules are checked and unit-tested with promtool, and every metric name (and
  label) the rules and the dashboard use must appear in a real scrape of the binary.

Needs root (chroot, mount namespaces, podman's store); conformance/run installs podman and
prometheus (promtool) when missing.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from botocore.config import Config

import s3util
from conftest import REPO, TESTER, Cistern, free_port, stop_process, tail, venv_bin, wait_tcp

DOCKER = REPO / "docker"
MANIFEST = DOCKER / "k8s" / "cistern.yaml"
MONITORING = DOCKER / "monitoring"
RULES = MONITORING / "cistern-rules.yaml"
RULE_TESTS = MONITORING / "cistern-rules.test.yaml"
DASHBOARD = MONITORING / "cistern-dashboard.json"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"
# Kubernetes versions the manifests must validate against: the oldest with the kubelet's own
# preStop `sleep` action on by default and GA-era fields used here, and the newest
# kubernetes-validate ships schemas for.
K8S_VERSIONS = ["1.34", "1.37"]

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="chroot, mount namespaces and podman's store need root")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: run the suite through conformance/run", pytrace=False)
    return path


def manifest_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def manifest(kind: str, name: str) -> dict:
    for d in manifest_docs():
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"{kind}/{name} not in {MANIFEST}")


def wait_until(pred, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (requests.RequestException, OSError) as e:
            last = e
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# --------------------------------------------------------------------------- the image


@dataclass
class Image:
    ref: str
    config: dict  # the OCI config's "Config": User, Entrypoint, Volumes, WorkingDir, Env
    rootfs: Path  # the exported filesystem (mount points get added to it by Chroot)
    members: dict[str, tarfile.TarInfo]  # the export as it came out of podman
    build_seconds: float
    podman: list[str]


@pytest.fixture(scope="module")
def image(tmp_path_factory, cistern_bin, request) -> Image:
    if os.geteuid() != 0:
        pytest.skip("building and unpacking the image needs root")
    need_tool("podman")
    base = tmp_path_factory.mktemp("image")
    # podman refuses a runroot path longer than 50 characters: a short one of its own in /tmp.
    runroot = Path(tempfile.mkdtemp(prefix="cistern-podman-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    podman = ["podman", "--root", str(base / "storage"), "--runroot", str(runroot),
              "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    ref = "localhost/cistern:conformance"
    t0 = time.monotonic()
    r = run([str(DOCKER / "build-image"), ref],
            env=dict(os.environ, CISTERN_BIN=str(cistern_bin), PODMAN=shlex.join(podman),
                     TMPDIR=str(base)))
    build_seconds = time.monotonic() - t0
    assert r.returncode == 0, f"docker/build-image failed:\n{r.stdout}\n{r.stderr}"
    r = run(podman + ["image", "inspect", ref])
    assert r.returncode == 0, r.stderr
    config = json.loads(r.stdout)[0]["Config"]
    # A created, never started container, exported as a tar of its filesystem.
    r = run(podman + ["create", "--name", "export", ref])
    assert r.returncode == 0, r.stderr
    tar_path = base / "rootfs.tar"
    r = run(podman + ["export", "--output", str(tar_path), "export"])
    assert r.returncode == 0, r.stderr
    run(podman + ["rm", "export"])
    with tarfile.open(tar_path) as tf:
        members = {"/" + m.name.lstrip("./").rstrip("/"): m for m in tf.getmembers()}
    rootfs = base / "rootfs"
    rootfs.mkdir()
    r = run(["tar", "-x", "--numeric-owner", "-f", str(tar_path), "-C", str(rootfs)])
    assert r.returncode == 0, r.stderr
    tar_path.unlink()
    print(f"image {ref} built in {build_seconds:.1f} s")
    return Image(ref, config, rootfs, members, build_seconds, podman)


def test_containerfile_is_from_scratch_without_run_steps():
    lines = [ln.strip() for ln in (DOCKER / "Containerfile").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    instructions = [ln.split()[0].upper() for ln in lines]
    assert "RUN" not in instructions, lines
    assert [ln for ln in lines if ln.upper().startswith("FROM")] == ["FROM scratch"]
    assert not (DOCKER / "Dockerfile").exists()


@needs_root
def test_image_config_runs_as_10001_with_the_cache_volume(image):
    c = image.config
    assert c["User"] == "10001:10001"
    assert c["Entrypoint"][:2] == ["/usr/local/bin/cistern", "serve"], c["Entrypoint"]
    ep = c["Entrypoint"]
    assert ep[ep.index("--config") + 1] == "/etc/cistern/cistern.toml"
    assert ep[ep.index("--cache-dir") + 1] == "/var/cache/cistern"
    assert "/var/cache/cistern" in c.get("Volumes", {})
    assert not c.get("Cmd"), "arguments come from Kubernetes' args, after the entrypoint"


@needs_root
def test_image_filesystem_holds_the_binary_its_libraries_users_and_roots(image, cistern_bin):
    m = image.members
    binary = m["/usr/local/bin/cistern"]
    assert binary.isfile() and binary.mode & 0o111 and (binary.uid, binary.gid) == (0, 0)
    # Every library ldd lists, at the path it lists (or a static binary: none).
    ldd = run(["ldd", str(cistern_bin)])
    libs = re.findall(r"(/\S+) \(0x[0-9a-f]+\)", ldd.stdout)
    if "not a dynamic executable" not in ldd.stdout + ldd.stderr:
        assert libs, ldd.stdout
    for lib in libs:
        assert lib in m and m[lib].isfile(), f"{lib} missing from the image"
    passwd = (image.rootfs / "etc/passwd").read_text()
    assert re.search(r"^cistern:x:10001:10001:", passwd, re.M), passwd
    assert re.search(r"^cistern:x:10001:", (image.rootfs / "etc/group").read_text(), re.M)
    bundle = (image.rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 100, "the CA bundle is missing or nearly empty"
    # Root owns everything but the cache directory; nothing is world-writable or setuid.
    cache = m["/var/cache/cistern"]
    assert cache.isdir() and (cache.uid, cache.gid) == (10001, 10001)
    for path, ti in m.items():
        if path in ("/", "/var/cache/cistern"):
            continue
        assert (ti.uid, ti.gid) == (0, 0), f"{path} owned by {ti.uid}:{ti.gid}"
        assert not ti.mode & 0o002, f"{path} is world-writable"
        assert not ti.mode & 0o6000, f"{path} is setuid/setgid"
    assert not [p for p in m if p.startswith(("/bin", "/usr/bin", "/sbin"))], "a shell crept in"


class Chroot:
    """The image's ENTRYPOINT, as the image's USER, under chroot(8) in a private mount namespace.

    The image's root is bound read-only; `binds` are (host path, path in the image, read-only)
    — what the kubelet would mount. Their mount points are created in the exported tree first, as
    a container runtime creates them. The environment is exactly `env` plus the image's Env.
    """

    def __init__(self, img: Image, workdir: Path, *, binds: list[tuple[Path, str, bool]],
                 env: dict[str, str], args: list[str]):
        self.img = img
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "cistern.log"
        self.proc: subprocess.Popen | None = None
        r = img.rootfs
        lines = ["set -eu", f"R={shlex.quote(str(r))}",
                 'mount --bind "$R" "$R"', 'mount -o remount,bind,ro "$R"']
        for src, target, ro in binds:
            mp = r / target.lstrip("/")
            if src.is_dir():
                mp.mkdir(parents=True, exist_ok=True)
            else:
                mp.parent.mkdir(parents=True, exist_ok=True)
                mp.touch(exist_ok=True)
            lines.append(f"mount --bind {shlex.quote(str(src))} \"$R\"{shlex.quote(target)}")
            if ro:
                lines.append(f"mount -o remount,bind,ro \"$R\"{shlex.quote(target)}")
        full_env = dict(e.split("=", 1) for e in img.config.get("Env", []))
        full_env.update(env)
        cmd = (["env", "-i"] + [f"{k}={v}" for k, v in full_env.items()]
               + ["chroot", f"--userspec={img.config['User']}", str(r)]
               + img.config["Entrypoint"] + args)
        lines.append("exec " + shlex.join(cmd))
        self.script = workdir / "run.sh"
        self.script.write_text("\n".join(lines) + "\n")

    def start(self) -> "Chroot":
        with open(self.log, "ab") as lf:
            # unshare execs sh, which execs env, chroot and then cistern: one pid throughout.
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                          "sh", str(self.script)],
                                         stdout=lf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, admin: str, timeout: float = 60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{tail(self.log)}")
            return requests.get(admin + "/readyz", timeout=1).status_code == 200
        wait_until(ready, timeout, f"{admin}/readyz")

    def stop(self, grace: float = 60) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds to exit)."""
        t0 = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, grace=1)
            raise AssertionError(f"still running {grace}s after SIGTERM:\n{tail(self.log)}")
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc is not None:
            stop_process(self.proc, grace=5)

    def creds(self) -> tuple[int, int, str]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
        gid = int(re.search(r"^Gid:\s+(\d+)", status, re.M).group(1))
        cap = re.search(r"^CapEff:\s+(\S+)", status, re.M).group(1)
        return uid, gid, cap


def write_failures(log: Path) -> list[str]:
    """Log lines that show a write refused (read-only root, permissions)."""
    text = log.read_text(errors="replace")
    return [ln for ln in text.splitlines()
            if re.search(r"Read-only file system|os error 30|Permission denied|os error 13", ln)]


# --------------------------------------------------------------------------- an HTTPS origin


@dataclass
class TlsMoto:
    url: str
    ca_pem: str
    ca_file: Path
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def tls_moto(tmp_path_factory):
    """moto's S3 server over HTTPS, with a certificate for 127.0.0.1 from a CA of our own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    d = tmp_path_factory.mktemp("tls-moto")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cistern conformance CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    ca_file = d / "ca.pem"
    ca_file.write_text(ca_pem)
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_pem.encode())
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    port = free_port()
    log = d / "moto.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen([venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port), "-s",
                                 "-c", str(d / "cert.pem"), "-k", str(d / "key.pem")],
                                stdout=lf, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, AWS_DEFAULT_REGION="us-east-1"))
    try:
        wait_tcp(port, proc, log)
        yield TlsMoto(f"https://127.0.0.1:{port}", ca_pem, ca_file, proc)
    finally:
        stop_process(proc, grace=5)


@needs_root
def test_image_serves_as_user_10001_on_a_read_only_root(image, tls_moto, tmp_path):
    """The image's entrypoint under chroot, as 10001, root read-only: it serves S3 reads of a
    mounted directory and of an HTTPS origin (verified with the roots in the image's CA bundle),
    writes only its cache volume, and stops cleanly on SIGTERM."""
    body = s3util.det_bytes("image", 3 * (1 << 20) + 17)
    data = tmp_path / "data"
    (data / "fsb").mkdir(parents=True)
    (data / "fsb" / "obj.bin").write_bytes(body)
    origin = boto3.client("s3", endpoint_url=tls_moto.url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=Config(s3={"addressing_style": "path"}), verify=str(tls_moto.ca_file))
    origin.create_bucket(Bucket="tlsb")
    origin.put_object(Bucket="tlsb", Key="over/tls.txt", Body=b"bytes over https\n")

    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, 10001, 10001)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tester").write_text(TESTER.secret + "\n")
    (secrets / "origin").write_text("origin-secret\n")
    ports = {k: free_port() for k in ("s3", "blob", "admin")}
    conf = tmp_path / "cistern.toml"
    conf.write_text(f"""
[listen]
s3 = "0.0.0.0:{ports['s3']}"
blob = "0.0.0.0:{ports['blob']}"
admin = "0.0.0.0:{ports['admin']}"
[cache]
memory = "64MiB"
disk = "256MiB"
chunk_size = "1MiB"
[origins.local]
kind = "fs"
root = "/srv/data"
[origins.tls]
kind = "s3"
endpoint = "{tls_moto.url}"
access_key_id = "origin"
secret_access_key = {{ file = "/etc/cistern/secrets/origin" }}
[buckets.fsb]
origin = "local"
[buckets.tlsb]
origin = "tls"
[[principals]]
access_key = "{TESTER.access_key}"
secret = {{ file = "/etc/cistern/secrets/tester" }}
buckets = ["*"]
permissions = ["read", "list"]
""")
    # The image's CA bundle plus our test CA, as an operator adds a private CA: the binary must
    # find it at the image's path, with no SSL_CERT_FILE or SSL_CERT_DIR set.
    bundle = image.rootfs / "etc/ssl/certs/ca-certificates.crt"
    shipped = bundle.read_text().count("BEGIN CERTIFICATE")
    bundle_copy = tmp_path / "ca-certificates.crt"
    bundle_copy.write_text(bundle.read_text() + tls_moto.ca_pem)
    for p in (conf, secrets / "tester", secrets / "origin", bundle_copy):
        p.chmod(0o644)
    c = Chroot(image, tmp_path / "run", args=[], env={
        "RUST_LOG": "info,rustls_platform_verifier=debug"},
        binds=[(conf, "/etc/cistern/cistern.toml", True), (secrets, "/etc/cistern/secrets", True),
               (data, "/srv/data", True), (cache, "/var/cache/cistern", False),
               (bundle_copy, "/etc/ssl/certs/ca-certificates.crt", True)])
    admin = f"http://127.0.0.1:{ports['admin']}"
    endpoint = f"127.0.0.1:{ports['s3']}"
    try:
        c.start()
        c.wait_ready(admin)
        assert c.creds() == (10001, 10001, "0000000000000000"), "not user 10001 without capabilities"
        r = s3util.get(endpoint, "fsb", "obj.bin", TESTER)
        assert r.status == 200 and r.body == body, r
        assert r.h("x-cistern-cache") == "miss"
        r = s3util.get(endpoint, "fsb", "obj.bin", TESTER)
        assert r.status == 200 and r.body == body and r.h("x-cistern-cache") == "hit", r
        r = s3util.get(endpoint, "tlsb", "over/tls.txt", TESTER)
        assert r.status == 200 and r.body == b"bytes over https\n", (r, tail(c.log))
        assert requests.get(admin + "/healthz", timeout=5).status_code == 200
        metrics = requests.get(admin + "/metrics", timeout=5).text
        assert 'cistern_cache_results_total{result="hit"} 1' in metrics
        loaded = [int(n) for n in re.findall(r"Loaded (\d+) CA root certificates",
                                             c.log.read_text())]
        assert loaded and set(loaded) == {shipped + 1}, (loaded, shipped)
        rc, secs = c.stop()
    finally:
        c.kill()
    print(f"image entrypoint: stopped {secs:.2f} s after SIGTERM")
    assert rc == 0, tail(c.log)
    assert "cistern: stopped" in c.log.read_text()
    assert not write_failures(c.log), write_failures(c.log)
    # Its writes are in the cache volume (the SSD cache's files), owned by 10001.
    written = list(cache.iterdir())
    assert written and all(p.stat().st_uid == 10001 for p in written), written


# --------------------------------------------------------------------------- manifests


def test_manifests_validate_against_the_kubernetes_schemas(tmp_path):
    exe = venv_bin("kubernetes-validate")
    for v in K8S_VERSIONS:
        for m in (MANIFEST, MANIFEST.with_name("membership-endpointslices.yaml")):
            r = run([exe, "--strict", "--quiet", "-k", v, str(m)])
            assert r.returncode == 0, f"Kubernetes {v}, {m.name}:\n{r.stdout}\n{r.stderr}"
    # Strict mode refuses what the API would drop silently (a misspelt field).
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    r = run([exe, "--strict", "--quiet", "-k", K8S_VERSIONS[-1], str(bad)])
    assert r.returncode != 0 and "readOnlyRootFileSystem" in r.stdout + r.stderr, r


def test_manifests_run_non_root_read_only_with_probes_drain_and_spread():
    docs = manifest_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("StatefulSet", "cistern-cache"), ("Deployment", "cistern-front"),
            ("Service", "cistern-cache"), ("Service", "cistern"), ("ConfigMap", "cistern"),
            ("PodDisruptionBudget", "cistern-cache"), ("PodDisruptionBudget", "cistern-front"),
            ("ServiceAccount", "cistern")} <= kinds
    assert not [k for k in kinds if k[0] == "Secret"], "secrets do not belong in the manifest"
    headless = manifest("Service", "cistern-cache")["spec"]
    assert headless["clusterIP"] == "None"
    cfg = tomllib.loads(manifest("ConfigMap", "cistern")["data"]["cistern.toml"])
    dns_name, dns_port = cfg["cluster"]["peers_dns"].rsplit(":", 1)
    assert dns_name.startswith("cistern-cache.cistern.svc.")
    sa = manifest("ServiceAccount", "cistern")
    assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
    for kind, name in (("StatefulSet", "cistern-cache"), ("Deployment", "cistern-front")):
        w = manifest(kind, name)
        tmpl = w["spec"]["template"]
        labels = tmpl["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pdb = manifest("PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels.get("azure.workload.identity/use") == "true"
        pod = tmpl["spec"]
        assert pod["serviceAccountName"] == "cistern"
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
        assert psc["fsGroup"] == 10001
        zones = [t for t in pod["topologySpreadConstraints"]
                 if t["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zones and zones[0]["labelSelector"]["matchLabels"].items() <= labels.items()
        (ctr,) = pod["containers"]
        sc = ctr["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
        assert ports["admin"] == int(cfg["listen"]["admin"].rsplit(":", 1)[1])
        assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
        assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
        assert ctr["resources"]["requests"] and ctr["resources"]["limits"]["memory"]
        # The grace period covers the preStop sleep plus the binary's 30 s drain.
        sleep = ctr["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] >= sleep + 30 + 10
        mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
        assert mounts["/etc/cistern/cistern.toml"]["subPath"] == "cistern.toml"
    cache_ctr = manifest("StatefulSet", "cistern-cache")["spec"]["template"]["spec"]["containers"][0]
    assert cache_ctr["args"][cache_ctr["args"].index("--peer-listen") + 1].endswith(":" + dns_port)
    assert "/var/cache/cistern" in {m["mountPath"] for m in cache_ctr["volumeMounts"]}
    assert headless["ports"][0]["port"] == int(dns_port)


def secret_paths(cfg: dict) -> list[str]:
    """Every `{ file = … }` the configuration reads."""
    out = []

    def walk(v):
        if isinstance(v, dict):
            if set(v) == {"file"}:
                out.append(v["file"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(cfg)
    return out


@needs_root
def test_manifest_config_and_roles_start_in_the_image(image, cistern_bin, tmp_path):
    """The ConfigMap's configuration, with the Secret mounted where the pods mount it and the
    environment the workload-identity webhook injects, starts a cache node and a front from
    their manifests' arguments; the front finds the node by the headless Service's name."""
    toml_text = manifest("ConfigMap", "cistern")["data"]["cistern.toml"]
    cfg = tomllib.loads(toml_text)
    sts = manifest("StatefulSet", "cistern-cache")["spec"]["template"]["spec"]
    dep = manifest("Deployment", "cistern-front")["spec"]["template"]["spec"]
    secret_mounts = {m["mountPath"] for pod in (sts, dep) for m in pod["containers"][0]["volumeMounts"]
                     if any(v["name"] == m["name"] and "secret" in v for v in pod["volumes"])}
    assert secret_mounts == {"/etc/cistern/secrets"}, secret_mounts
    (secret_dir,) = secret_mounts
    # The Secret, with the keys the configuration reads.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for path in secret_paths(cfg):
        assert path.startswith(secret_dir + "/"), f"{path} is not in the Secret's mount"
        f = secrets / path[len(secret_dir) + 1:]
        f.write_text(base64.b64encode(os.urandom(48)).decode() + "\n")
        f.chmod(0o444)
    conf = tmp_path / "cistern.toml"
    conf.write_text(toml_text)
    conf.chmod(0o444)
    token = tmp_path / "azure-identity-token"
    token.write_text("eyJhbGciOiJub25lIn0.e30.\n")
    token.chmod(0o444)
    wi_env = {"AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
              "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000002",
              "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
              "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/"}
    dns_name = cfg["cluster"]["peers_dns"].rsplit(":", 1)[0]
    hosts = tmp_path / "hosts"  # the kubelet mounts /etc/hosts; DNS would answer the same here
    hosts.write_text(f"127.0.0.1 localhost {dns_name}\n")
    hosts.chmod(0o444)
    common_binds = [(conf, "/etc/cistern/cistern.toml", True), (secrets, secret_dir, True),
                    (token, wi_env["AZURE_FEDERATED_TOKEN_FILE"], True), (hosts, "/etc/hosts", True)]

    # Without the webhook's environment the workload-identity origin is refused at start-up.
    r = run([str(cistern_bin), "serve", "--config", str(conf)], timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("AZURE_")})
    assert r.returncode != 0 and "AZURE_TENANT_ID" in r.stdout + r.stderr, r

    peer_port = free_port()

    def role_args(pod) -> tuple[list[str], dict[str, int]]:
        # The manifest's arguments; listeners moved to free ports (this machine is shared), the
        # peer port rewritten in --peer-listen and, via --peers-dns, in the membership name.
        args = [a if not a.startswith("0.0.0.0:") else f"0.0.0.0:{peer_port}"
                for a in pod["containers"][0]["args"]]
        ports = {k: free_port() for k in ("s3", "blob", "admin")}
        return args + ["--s3-listen", f"0.0.0.0:{ports['s3']}",
                       "--blob-listen", f"0.0.0.0:{ports['blob']}",
                       "--admin-listen", f"0.0.0.0:{ports['admin']}",
                       "--peers-dns", f"{dns_name}:{peer_port}"], ports

    def env_of(pod) -> dict:
        return dict(wi_env, **{e["name"]: e["value"] for e in pod["containers"][0].get("env", [])})

    cache_vol = tmp_path / "cache-volume"
    cache_vol.mkdir()
    os.chown(cache_vol, 10001, 10001)
    node_args, node_ports = role_args(sts)
    # Sized for this machine: the SSD cache keeps a file open per 16 MiB block, and the
    # manifest's 900GiB would need 57 600 descriptors (more than this box's hard limit).
    node_args += ["--disk-cache", "256MiB", "--memory-cache", "256MiB"]
    front_args, front_ports = role_args(dep)
    node = Chroot(image, tmp_path / "node", args=node_args, env=env_of(sts),
                  binds=common_binds + [(cache_vol, "/var/cache/cistern", False)])
    # The front has no volume: its /var/cache/cistern stays on the read-only root.
    front = Chroot(image, tmp_path / "front", args=front_args, env=env_of(dep), binds=common_binds)
    node_admin = f"http://127.0.0.1:{node_ports['admin']}"
    front_admin = f"http://127.0.0.1:{front_ports['admin']}"
    try:
        node.start()
        node.wait_ready(node_admin)
        front.start()
        front.wait_ready(front_admin)

        def alive(admin):
            samples = s3util.parse_metrics(requests.get(admin + "/metrics", timeout=5).text)
            return s3util.metric_sum(samples, "cistern_cluster_members", state="alive") == 1
        wait_until(lambda: alive(front_admin), 30, "the front to find the cache node by DNS")
        wait_until(lambda: alive(node_admin), 30, "the node to find itself by DNS")
        # The principals' secrets came from the Secret: a known key with a wrong secret is a
        # signature mismatch, an unknown key is unknown (both decided before any origin call).
        endpoint = f"127.0.0.1:{front_ports['s3']}"
        principal = cfg["principals"][0]["access_key"]
        r = s3util.get(endpoint, "datasets", "x", s3util.Creds(principal, "wrong-secret"))
        assert r.status == 403 and r.error_code() == "SignatureDoesNotMatch", r
        r = s3util.get(endpoint, "datasets", "x", s3util.Creds("nobody", "wrong-secret"))
        assert r.status == 403 and r.error_code() == "InvalidAccessKeyId", r
        front_rc, front_secs = front.stop()
        node_rc, node_secs = node.stop()
    finally:
        front.kill()
        node.kill()
    print(f"SIGTERM to exit, idle: front {front_secs:.2f} s, cache node {node_secs:.2f} s")
    assert (front_rc, node_rc) == (0, 0), (tail(front.log), tail(node.log))
    for c in (node, front):
        assert not write_failures(c.log), write_failures(c.log)
    for pod, secs in ((dep, front_secs), (sts, node_secs)):
        sleep = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep + secs < pod["terminationGracePeriodSeconds"]
    assert any(cache_vol.iterdir()), "the cache node wrote nothing to its volume"


# --------------------------------------------------------------------------- monitoring


def test_rules_pass_promtool_checks_and_unit_tests(tmp_path):
    promtool = need_tool("promtool")
    r = run([promtool, "check", "rules", str(RULES)])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run([promtool, "test", "rules", str(RULE_TESTS)])
    assert r.returncode == 0, r.stdout + r.stderr
    # Every alert has a test in which it fires.
    alerts = [rule["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
              for rule in g["rules"] if "alert" in rule]
    fired = {t["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for t in test.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert set(alerts) <= fired, f"alerts with no test that fires them: {set(alerts) - fired}"
    # The scrape configuration: Debian's promtool is built without Kubernetes discovery, so a
    # copy with a static target checks the rest (relabelling, rule files).
    scrape = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "cistern" and job["kubernetes_sd_configs"]
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
    shutil.copy(RULES, tmp_path / RULES.name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    r = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


# Labels Prometheus attaches to every series of a target (prometheus.yml), and `up`, the one
# series it records itself. Everything else must come from the binary.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "component"}
PROMETHEUS_SERIES = {"up"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "offset", "and", "or", "unless", "inf", "nan", "atan2"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
               "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
  | (?P<range>\[[^\]]*\])
  | (?P<braces>\{[^}]*\})
  | (?P<duration>\d+(?:ms|[smhdwy])\b)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<var>\$\w+)
  | (?P<op>.)
""", re.X)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?')


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]]  # (label, op, value)


def promql_selectors(expr: str) -> tuple[list[Selector], set[str]]:
    """The metric selectors of a PromQL expression and the labels named in by/without/on
    clauses. Grafana's label_values(selector, label) is read as its selector."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", expr, re.S)
    if m:
        sels, labels = promql_selectors(m.group(1))
        return sels, labels | {m.group(2)}
    toks = [(k, v) for mm in _TOKEN.finditer(expr) for k, v in mm.groupdict().items()
            if v is not None and k != "ws"]
    sels, labels = [], set()
    i = 0
    while i < len(toks):
        kind, val = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        if kind == "ident" and val in LABEL_LIST_KEYWORDS and nxt == ("op", "("):
            j = i + 2
            while toks[j] != ("op", ")"):
                if toks[j][0] == "ident":
                    labels.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident" and val in AGGREGATORS and nxt in (("ident", "by"),
                                                              ("ident", "without")):
            i += 1
            continue
        if kind == "ident" and nxt != ("op", "(") and val.lower() not in PROMQL_KEYWORDS:
            matchers = []
            if nxt[0] == "braces":
                matchers = [(a, op, v) for a, op, v in _MATCHER.findall(nxt[1][1:-1])]
                i += 1
            sels.append(Selector(val, matchers))
        i += 1
    return sels, labels


def scraped(texts: list[str]) -> dict[str, dict[str, set[str]]]:
    """metric name -> label -> values seen, over several scrapes."""
    out: dict[str, dict[str, set[str]]] = {}
    for text in texts:
        for name, labels, _ in s3util.parse_metrics(text):
            d = out.setdefault(name, {})
            for k, v in labels.items():
                d.setdefault(k, set()).add(v)
    return out


def unknown_references(exprs: dict[str, str], scrape: dict[str, dict[str, set[str]]],
                       values: bool = True) -> list[str]:
    """What the expressions name that no scrape holds: metrics, their labels, exact label values
    (unless `values` is false: synthetic series may carry values no local run produces), and
    grouping labels."""
    problems = []
    all_labels = {k for d in scrape.values() for k in d} | TARGET_LABELS | {"le"}
    for where, expr in exprs.items():
        sels, group_labels = promql_selectors(expr)
        if not sels:
            problems.append(f"{where}: no metric found in {expr!r}")
        for s in sels:
            if s.metric in PROMETHEUS_SERIES:
                labels: dict[str, set[str]] = {}
            elif s.metric not in scrape:
                problems.append(f"{where}: metric {s.metric} is not exported")
                continue
            else:
                labels = scrape[s.metric]
            for label, op, value in s.matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in labels:
                    problems.append(f"{where}: {s.metric} has no label {label}")
                elif values and op == "=" and value not in labels[label]:
                    problems.append(f"{where}: {s.metric}{{{label}={value!r}}} never seen "
                                    f"(seen: {sorted(labels[label])})")
        for label in group_labels - all_labels:
            problems.append(f"{where}: grouping label {label} is on no metric")
    return problems


def test_promql_reference_check_finds_what_is_missing():
    """The checker below it must be able to fail."""
    sels, labels = promql_selectors(
        'sum by (origin) (rate(a_total{x="1", y=~"2|3"}[5m] offset 1d)) / on (origin) b > 0.5 '
        'and c{z!="q"} offset 5m')
    assert [(s.metric, s.matchers) for s in sels] == [
        ("a_total", [("x", "=", "1"), ("y", "=~", "2|3")]), ("b", []), ("c", [("z", "!=", "q")])]
    assert labels == {"origin"}
    scrape = {"a_total": {"x": {"1"}, "y": {"2"}}, "b": {"origin": {"o"}}}
    assert unknown_references({"e": "a_total{x=\"1\"} + b"}, scrape) == []
    problems = unknown_references({"e": 'a_total{x="9"} + c + sum by (nope) (b)'}, scrape)
    assert len(problems) == 3, problems


def monitoring_expressions() -> tuple[dict[str, str], dict[str, str]]:
    """The rules' and the dashboard's expressions, and the rule tests' input series."""
    exprs, series = {}, {}
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in g["rules"]:
            exprs[f"rule {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    dash = json.loads(DASHBOARD.read_text())

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash["panels"]):
        for t in p.get("targets", []):
            exprs[f"panel {p['title']!r} {t['refId']}"] = t["expr"]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            exprs[f"variable {v['name']}"] = q
    # The unit tests' input series are named as a scrape would name them.
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for s in test.get("input_series", []):
            series[f"rule test {test.get('name')!r} series {s['series']}"] = s["series"]
    return exprs, series


def test_rules_and_dashboard_use_only_metrics_the_binary_exports(cistern_bin, tmp_path):
    """Scrape a real cache node and front (S3 and Blob reads, hits, misses, a 404; then the node
    stopped, so the front marks it dead and falls back to the origin) and require every metric,
    label and exact label value the rules and the dashboard name to be in those scrapes."""
    data = tmp_path / "data"
    (data / "b").mkdir(parents=True)
    (data / "b" / "obj.bin").write_bytes(s3util.det_bytes("metrics", 3 * (1 << 20) + 5))
    # Read once the node is gone: its later chunks (the first comes with the metadata) are
    # counted as fallbacks to the origin.
    (data / "b" / "later.bin").write_bytes(s3util.det_bytes("later", 2 * (1 << 20) + 9))
    secret = tmp_path / "cluster.secret"
    secret.write_text("cluster-secret-for-the-metrics-test\n")
    peer = free_port()
    cfg = f"""
[listen]
s3 = "127.0.0.1:{{s3_port}}"
blob = "127.0.0.1:{{blob_port}}"
admin = "127.0.0.1:{{admin_port}}"
[cache]
memory = "64MiB"
disk = "128MiB"
chunk_size = "1MiB"
[cluster]
peers = ["127.0.0.1:{peer}"]
secret = {{{{ file = "{secret}" }}}}
probe_interval = "200ms"
[origins.local]
kind = "fs"
root = "{data}"
[buckets.b]
origin = "local"
[[principals]]
access_key = "{TESTER.access_key}"
secret = {{{{ env = "TESTER_SECRET" }}}}
buckets = ["*"]
permissions = ["read", "list"]
[[principals]]
access_key = "metricsacct"
secret = {{{{ env = "ACCT_KEY" }}}}
buckets = ["*"]
permissions = ["read", "list"]
"""
    acct_key = base64.b64encode(b"metrics-account-key-0123456789abcdef").decode()
    env = {"TESTER_SECRET": TESTER.secret, "ACCT_KEY": acct_key}
    node = Cistern(cistern_bin, tmp_path / "node", config=cfg, env=env,
                   args=["--role", "cache", "--peer-listen", f"127.0.0.1:{peer}",
                         "--cache-dir", str(tmp_path / "node" / "cache")])
    front = Cistern(cistern_bin, tmp_path / "front", config=cfg, env=env, args=["--role", "front"])
    texts = []
    try:
        node.start()
        front.start()
        wait_until(lambda: front.metric("cistern_cluster_members", state="alive") == 1, 30,
                   "the front to see the cache node")
        for _ in range(3):
            assert front.get("b", "obj.bin").status == 200
        assert front.get("b", "missing").status == 404
        from azure.storage.blob import BlobServiceClient
        blob = BlobServiceClient.from_connection_string(
            front.connection_string("metricsacct", acct_key), retry_total=0)
        assert blob.get_blob_client("b", "obj.bin").download_blob().readall()
        texts += [requests.get(c.admin + "/metrics", timeout=10).text for c in (node, front)]
        node.stop()
        wait_until(lambda: front.metric("cistern_cluster_members", state="dead") == 1, 30,
                   "the front to mark the stopped node dead")
        assert front.get("b", "later.bin").status == 200  # from the origin, the node being gone
        texts.append(requests.get(front.admin + "/metrics", timeout=10).text)
    finally:
        front.stop()
        node.stop()
    scrape = scraped(texts)
    assert s3util.metric_sum(s3util.parse_metrics(texts[-1]), "cistern_peer_fallbacks_total") > 0
    exprs, series = monitoring_expressions()
    problems = unknown_references(exprs, scrape) + unknown_references(series, scrape, values=False)
    assert not problems, "\n".join(problems)
