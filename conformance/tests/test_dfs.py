"""The Data Lake Storage Gen2 (DFS) front, with the real client `azure-storage-file-datalake`
over three origins (Azurite, which has no DFS endpoint, a directory and moto's S3), plus the
raw request shapes Hadoop's ABFS driver sends (its documentation: hadoop-azure "abfs.md" and the
DFS REST reference) and the JavaScript Data Lake SDK.

The gateway (fixture `lake`) exposes Azurite's container `lakeaz`, moto's bucket `lakes3` (its
own, not the shared `motob`) and a directory origin whose buckets are created through the DFS
front itself (`lakefs`)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ResourceExistsError, ResourceNotFoundError)

import s3util
from conftest import (AZURE_EXTRA, DEV_ACCOUNT, DEV_ACCOUNT_KEY, LIMITED_ACCOUNT,
                      LIMITED_ACCOUNT_KEY, MIB, WRITER_ACCOUNT, WRITER_ACCOUNT_KEY,
                      CisternFactory, azure_env)

FILESYSTEMS = ["lakeaz", "lakefs", "lakes3"]


@pytest.fixture(scope="module")
def lake(request, cistern_bin, tmp_path_factory, fs_data, azurite, moto):
    root = tmp_path_factory.mktemp("lake-dir")
    azurite.service().create_container("lakeaz")
    moto.client().create_bucket(Bucket="lakes3")
    extra = AZURE_EXTRA.format(endpoint=azurite.account_url) + f"""
[origins.lakedir]
kind = "fs"
root = "{root}"
expose_buckets = true

[buckets.lakeaz]
origin = "azurite"

[buckets.lakes3]
origin = "moto"

[blob]
host_domains = ["blob.cistern.test"]
"""
    f = CisternFactory(cistern_bin, tmp_path_factory.mktemp("lake-gw"), request, fs_data)
    c = f.with_config("lake", with_moto=True, with_fs=False, extra=extra, env=azure_env())
    lake_client(c).create_file_system("lakefs")
    yield c
    f.close()


def lake_client(c, account=WRITER_ACCOUNT, key=WRITER_ACCOUNT_KEY, credential=None):
    from azure.storage.filedatalake import DataLakeServiceClient
    cred = credential if credential is not None else {"account_name": account, "account_key": key}
    return DataLakeServiceClient(f"http://127.0.0.1:{c.blob_port}/{account}",
                                 credential=cred, retry_total=0)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("fsname", FILESYSTEMS)
def test_write_read_list_rename_delete(lake, fsname):
    fsc = lake_client(lake).get_file_system_client(fsname)
    top = unique("run")
    fsc.create_directory(f"{top}/out")
    fsc.create_directory(f"{top}/empty")
    data = s3util.det_bytes(f"dfs-{fsname}", 3 * MIB + 123)
    f = fsc.get_file_client(f"{top}/out/part-0000.bin")
    f.create_file(metadata={"job": "j1"})
    # Appends at explicit offsets, then one flush: what the ABFS driver does per buffer.
    f.append_data(data[:MIB], offset=0, length=MIB)
    f.append_data(data[MIB:], offset=MIB, length=len(data) - MIB)
    f.flush_data(len(data), close=True)
    # The SDK's own chunked upload (create + appends + flush).
    small = fsc.get_file_client(f"{top}/out/part-0001.txt")
    small.upload_data(b"hello, lake\n", overwrite=True)

    assert f.download_file().readall() == data
    assert f.download_file(offset=1000, length=5000).readall() == data[1000:6000]
    assert f.download_file(offset=3 * MIB, length=123).readall() == data[3 * MIB:]
    props = f.get_file_properties()
    assert props.size == len(data)
    if fsname != "lakefs":  # a directory origin stores bytes only (README: the fs origin)
        assert props.metadata.get("job") == "j1"
    acl = f.get_access_control()
    assert acl["owner"] == "$superuser" and acl["permissions"].startswith("rw")
    assert fsc.get_directory_client(f"{top}/empty").get_directory_properties() is not None

    # A later append to a committed file keeps what was there. Azure keeps the blocks the file
    # was committed as, so only the new block is sent; elsewhere the bytes are staged once more.
    origin = {"lakeaz": "azurite", "lakefs": "lakedir", "lakes3": "moto"}[fsname]
    blocks = lambda: lake.origin_requests(origin=origin, operation="put_block")  # noqa: E731
    before = blocks()
    f.append_data(b"tail", offset=len(data), length=4)
    f.flush_data(len(data) + 4)
    assert blocks() - before == (1 if fsname == "lakeaz" else 2)
    assert f.download_file(offset=len(data) - 3).readall() == data[-3:] + b"tail"

    rec = [(p.name, p.is_directory) for p in fsc.get_paths(path=top, recursive=True)]
    assert rec == [(f"{top}/empty", True), (f"{top}/out", True),
                   (f"{top}/out/part-0000.bin", False), (f"{top}/out/part-0001.txt", False)]
    flat = [(p.name, p.is_directory) for p in fsc.get_paths(path=top, recursive=False)]
    assert flat == [(f"{top}/empty", True), (f"{top}/out", True)]
    sizes = {p.name: p.content_length for p in fsc.get_paths(path=f"{top}/out")}
    assert sizes[f"{top}/out/part-0000.bin"] == len(data) + 4

    # Rename a file, then the directory holding it.
    f.rename_file(f"{fsname}/{top}/out/renamed.bin")
    with pytest.raises(ResourceNotFoundError):
        f.get_file_properties()
    renamed = fsc.get_file_client(f"{top}/out/renamed.bin")
    assert renamed.download_file().readall() == data + b"tail"
    fsc.get_directory_client(f"{top}/out").rename_directory(f"{fsname}/{top}/moved")
    names = sorted(p.name for p in fsc.get_paths(path=top, recursive=True))
    assert names == [f"{top}/empty", f"{top}/moved", f"{top}/moved/part-0001.txt",
                     f"{top}/moved/renamed.bin"]
    assert fsc.get_file_client(f"{top}/moved/part-0001.txt").download_file().readall() == \
        b"hello, lake\n"

    fsc.get_file_client(f"{top}/moved/part-0001.txt").delete_file()
    with pytest.raises(ResourceNotFoundError):
        fsc.get_file_client(f"{top}/moved/part-0001.txt").get_file_properties()
    fsc.get_directory_client(top).delete_directory()
    with pytest.raises(ResourceNotFoundError):
        list(fsc.get_paths(path=top))


@pytest.mark.parametrize("fsname", FILESYSTEMS)
def test_listing_pages_name_each_path_once(lake, fsname):
    fsc = lake_client(lake).get_file_system_client(fsname)
    top = unique("pages")
    want = []
    for i in range(4):
        for j in range(2):
            name = f"{top}/d{i}/f{j}"
            fsc.get_file_client(name).upload_data(b"x" * (i + j + 1), overwrite=True)
            want.append(name)
        want.append(f"{top}/d{i}")
    pages = fsc.get_paths(path=top, recursive=True, max_results=3).by_page()
    got, n_pages = [], 0
    for page in pages:
        n_pages += 1
        got += [p.name for p in page]
    assert sorted(got) == sorted(want) and len(got) == len(set(got)), got
    assert n_pages >= 3
    fsc.get_directory_client(top).delete_directory()


def test_filesystems_are_created_listed_and_deleted(lake):
    svc = lake_client(lake)
    name = unique("fs")
    svc.create_file_system(name)
    assert name in [fs.name for fs in svc.list_file_systems()]
    with pytest.raises(ResourceExistsError):
        svc.create_file_system(name)
    fsc = svc.get_file_system_client(name)
    fsc.get_file_client("a/b.txt").upload_data(b"b", overwrite=True)
    # The DFS Delete Filesystem takes what is inside with it.
    r = _abfs(lake, "DELETE", name, "resource=filesystem")
    assert r.status_code == 202, r.text
    assert name not in [fs.name for fs in svc.list_file_systems()]
    r = _abfs(lake, "HEAD", name, "resource=filesystem")
    assert r.status_code == 404 and r.headers["x-ms-error-code"] == "FilesystemNotFound"
    # The SDK's own (the Blob endpoint's Delete Container) on an empty one.
    svc.create_file_system(name)
    r = _abfs(lake, "HEAD", name, "resource=filesystem")
    assert r.status_code == 200 and r.headers["x-ms-namespace-enabled"] == "false"
    svc.delete_file_system(name)


def test_reads_are_served_from_the_cache(lake):
    fsc = lake_client(lake).get_file_system_client("lakeaz")
    path = f"{unique('cached')}/data.bin"
    data = s3util.det_bytes("dfs-cache", 2 * MIB)
    fsc.get_file_client(path).upload_data(data, overwrite=True)
    seen = []
    hook = lambda r: seen.append(r.http_response.headers.get("x-cistern-cache"))  # noqa: E731
    for _ in range(2):
        got = fsc.get_file_client(path).download_file(offset=MIB, length=MIB,
                                                      raw_response_hook=hook).readall()
        assert got == data[MIB:]
    assert seen[-1] == "hit", seen
    fsc.get_directory_client(path.split("/")[0]).delete_directory()


def test_auth_is_checked_on_every_request(lake):
    from azure.storage.filedatalake import FileSasPermissions, generate_file_sas
    fsc = lake_client(lake).get_file_system_client("lakeaz")
    path = f"{unique('auth')}/secret.bin"
    fsc.get_file_client(path).upload_data(b"secret bytes", overwrite=True)
    fsc.get_file_client(path).download_file().readall()  # warm
    wrong = lake_client(lake, key=LIMITED_ACCOUNT_KEY).get_file_system_client("lakeaz")
    with pytest.raises(ClientAuthenticationError) as ei:
        wrong.get_file_client(path).download_file().readall()
    assert "AuthenticationFailed" in str(ei.value)
    # The limited account reads only the fs bucket `fsb`: not this filesystem, not writes.
    limited = lake_client(lake, LIMITED_ACCOUNT, LIMITED_ACCOUNT_KEY).get_file_system_client(
        "lakeaz")
    with pytest.raises(HttpResponseError) as ei:
        limited.get_file_client(path).download_file().readall()
    assert ei.value.status_code == 403
    with pytest.raises(HttpResponseError) as ei:
        limited.get_file_client(f"{path}.new").create_file()
    assert ei.value.status_code == 403
    # The development account may read and list, not write.
    reader = lake_client(lake, DEV_ACCOUNT, DEV_ACCOUNT_KEY).get_file_system_client("lakeaz")
    assert reader.get_file_client(path).download_file().readall() == b"secret bytes"
    with pytest.raises(HttpResponseError) as ei:
        reader.get_file_client(path).append_data(b"x", offset=12, length=1)
    assert ei.value.status_code == 403
    # A SAS for this file, read only: reads, cannot write; expired: nothing.
    sas = generate_file_sas(WRITER_ACCOUNT, "lakeaz", path.split("/")[0], "secret.bin",
                            WRITER_ACCOUNT_KEY, permission=FileSasPermissions(read=True),
                            expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    via_sas = lake_client(lake, credential=sas).get_file_system_client("lakeaz")
    assert via_sas.get_file_client(path).download_file().readall() == b"secret bytes"
    with pytest.raises(HttpResponseError) as ei:
        via_sas.get_file_client(path).append_data(b"x", offset=12, length=1)
    assert ei.value.status_code == 403
    expired = generate_file_sas(WRITER_ACCOUNT, "lakeaz", path.split("/")[0], "secret.bin",
                                WRITER_ACCOUNT_KEY, permission=FileSasPermissions(read=True),
                                expiry=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    with pytest.raises(HttpResponseError) as ei:
        lake_client(lake, credential=expired).get_file_system_client("lakeaz") \
            .get_file_client(path).download_file().readall()
    assert ei.value.status_code == 403
    fsc.get_directory_client(path.split("/")[0]).delete_directory()


# ------------------------------------------------------------------ raw ABFS request shapes


def _abfs(lake, method, path, query="", headers=None, data=None):
    """One request as the ABFS driver sends it: x-ms-version, x-ms-client-request-id, Shared Key
    over the DFS path."""
    url = f"http://127.0.0.1:{lake.blob_port}/{WRITER_ACCOUNT}/{path}" + (f"?{query}" if query else "")
    h = {"x-ms-version": "2021-06-08", "x-ms-client-request-id": str(uuid.uuid4()),
         "x-ms-date": dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"),
         "User-Agent": "APN/1.0 Azure Blob FS/3.4.1 (OpenJDK JavaJRE 17; Linux) ABFS"}
    if data is not None:
        h["Content-Length"] = str(len(data))
    elif method in ("PUT", "PATCH"):
        h["Content-Length"] = "0"
    h.update(headers or {})
    h["Authorization"] = _sign(method, url, h, WRITER_ACCOUNT, WRITER_ACCOUNT_KEY)
    r = requests.request(method, url, headers=h, data=data, timeout=30)
    assert r.headers.get("x-ms-client-request-id") == h["x-ms-client-request-id"]
    return r


def _sign(method, url, headers, account, key):
    """Shared Key as the Java SDK that the ABFS driver uses signs it (the Python SDK's policy
    never signs a plain `Range` header): the standard headers, x-ms-* headers, the resource and
    every query parameter."""
    import base64
    import hashlib
    import hmac
    from urllib.parse import parse_qsl, unquote, urlsplit
    h = {k.lower(): v for k, v in headers.items()}
    length = h.get("content-length", "")
    std = [h.get("content-encoding", ""), h.get("content-language", ""),
           "" if length == "0" else length, h.get("content-md5", ""), h.get("content-type", ""),
           "", h.get("if-modified-since", ""), h.get("if-match", ""),
           h.get("if-none-match", ""), h.get("if-unmodified-since", ""), h.get("range", "")]
    xms = "".join(f"{k}:{v}\n" for k, v in sorted(h.items()) if k.startswith("x-ms-"))
    u = urlsplit(url)
    resource = f"/{account}{unquote(u.path)}"  # path-style: the account twice
    params = {}
    for k, v in parse_qsl(u.query, keep_blank_values=True):
        params.setdefault(k.lower(), []).append(v)
    for k in sorted(params):
        resource += f"\n{k}:{','.join(sorted(params[k]))}"
    to_sign = "\n".join([method] + std) + "\n" + xms + resource
    mac = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    return f"SharedKey {account}:{base64.b64encode(mac).decode()}"


@pytest.mark.parametrize("fsname", FILESYSTEMS)
def test_abfs_request_shapes(lake, fsname):
    top = unique("abfs")
    p = f"{fsname}/{top}/file.csv"
    # The root's status (what getFileStatus("/") asks); a DELETE of the filesystem's URL without
    # resource=filesystem deletes nothing.
    r = _abfs(lake, "HEAD", f"{fsname}/", "action=getStatus&upn=false")
    assert r.status_code == 200 and r.headers["x-ms-resource-type"] == "directory"
    r = _abfs(lake, "DELETE", fsname, "recursive=true")
    assert r.status_code == 400
    assert r.headers["x-ms-error-code"] == "MissingRequiredQueryParameter"
    r = _abfs(lake, "PUT", f"{fsname}/{top}", "resource=directory")
    assert r.status_code == 201, r.text
    # Create without overwrite (If-None-Match: *), twice: the second is PathAlreadyExists.
    r = _abfs(lake, "PUT", p, "resource=file", {"If-None-Match": "*"})
    assert r.status_code == 201, r.text
    r = _abfs(lake, "PUT", p, "resource=file", {"If-None-Match": "*"})
    assert r.status_code == 409 and r.headers["x-ms-error-code"] == "PathAlreadyExists"
    assert r.json()["error"]["code"] == "PathAlreadyExists"
    r = _abfs(lake, "PATCH", p, "action=append&position=0", data=b"a,b\n")
    assert r.status_code == 202, r.text
    r = _abfs(lake, "PATCH", p, "action=append&position=4", data=b"1,2\n")
    assert r.status_code == 202, r.text
    # A flush at a position the appends do not reach.
    r = _abfs(lake, "PATCH", p, "action=flush&position=9&close=true")
    assert r.status_code == 400 and r.headers["x-ms-error-code"] == "InvalidFlushPosition"
    r = _abfs(lake, "PATCH", p, "action=flush&position=8&retainUncommittedData=false&close=true")
    assert r.status_code == 200, r.text
    r = _abfs(lake, "HEAD", p, "action=getStatus")
    assert r.status_code == 200
    assert r.headers["x-ms-resource-type"] == "file" and r.headers["Content-Length"] == "8"
    r = _abfs(lake, "HEAD", f"{fsname}/{top}", "action=getStatus")
    assert r.headers["x-ms-resource-type"] == "directory"
    r = _abfs(lake, "GET", p, headers={"Range": "bytes=4-7"})
    assert r.status_code == 206 and r.content == b"1,2\n", (r.status_code, r.text)
    # Listing with continuation, as ListResultSchema JSON.
    for i in range(3):
        assert _abfs(lake, "PUT", f"{fsname}/{top}/x{i}", "resource=file").status_code == 201
    names, token = [], None
    while True:
        q = f"resource=filesystem&directory={top}&recursive=false&maxResults=2"
        if token:
            q += "&continuation=" + requests.utils.quote(token, safe="")
        r = _abfs(lake, "GET", fsname, q)
        assert r.status_code == 200, r.text
        names += [x["name"] for x in r.json()["paths"]]
        token = r.headers.get("x-ms-continuation")
        if not token:
            break
    assert names == [f"{top}/file.csv", f"{top}/x0", f"{top}/x1", f"{top}/x2"]
    # Rename with the source in x-ms-rename-source, then a non-recursive delete of a non-empty
    # directory, then a recursive one.
    r = _abfs(lake, "PUT", f"{fsname}/{top}/renamed.csv", "mode=legacy",
              {"x-ms-rename-source": f"/{fsname}/{top}/file.csv"})
    assert r.status_code == 201, r.text
    r = _abfs(lake, "PUT", f"{fsname}/{top}/again.csv", "",
              {"x-ms-rename-source": f"/{fsname}/{top}/file.csv"})
    assert r.status_code == 404 and r.headers["x-ms-error-code"] == "SourcePathNotFound"
    r = _abfs(lake, "DELETE", f"{fsname}/{top}", "recursive=false")
    assert r.status_code == 409 and r.headers["x-ms-error-code"] == "DirectoryNotEmpty"
    r = _abfs(lake, "DELETE", f"{fsname}/{top}", "recursive=true")
    assert r.status_code == 200, r.text
    r = _abfs(lake, "HEAD", f"{fsname}/{top}", "action=getStatus")
    assert r.status_code == 404 and r.headers["x-ms-error-code"] == "PathNotFound"
    # What is not supported says so.
    r = _abfs(lake, "PATCH", p, "action=setAccessControl", {"x-ms-acl": "user::rwx"})
    assert r.status_code == 501 or r.headers["x-ms-error-code"] in ("NotImplemented",
                                                                    "UnsupportedOperation")
    r = _abfs(lake, "PATCH", p, "action=explode")
    assert r.status_code == 400 and r.headers["x-ms-error-code"] == "InvalidQueryParameterValue"


@pytest.mark.parametrize("fsname", FILESYSTEMS)
def test_abfs_leases_hold_across_writes(lake, fsname):
    """The lease calls of ABFS's single-writer mode (fs.azure.infinite-lease.directories):
    acquire an infinite lease, write under it, release it with the last flush."""
    p = f"{fsname}/{unique('lease')}/wal.log"
    assert _abfs(lake, "PUT", p, "resource=file").status_code == 201
    r = _abfs(lake, "POST", p, "", {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "-1"})
    assert r.status_code == 201, r.text
    lease = r.headers["x-ms-lease-id"]
    r = _abfs(lake, "POST", p, "", {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "-1"})
    assert r.status_code == 409 and r.headers["x-ms-error-code"] == "LeaseAlreadyPresent"
    # Writes without the lease, or with another one, are refused; with it they go through.
    r = _abfs(lake, "PATCH", p, "action=append&position=0", data=b"edit-1\n")
    assert r.status_code == 412 and r.headers["x-ms-error-code"] == "LeaseIdMissing"
    r = _abfs(lake, "PATCH", p, "action=append&position=0", {"x-ms-lease-id": str(uuid.uuid4())},
              data=b"edit-1\n")
    assert r.status_code == 412 and r.headers["x-ms-error-code"] == "LeaseIdMismatch"
    r = _abfs(lake, "PATCH", p, "action=append&position=0", {"x-ms-lease-id": lease},
              data=b"edit-1\n")
    assert r.status_code == 202, r.text
    r = _abfs(lake, "POST", p, "", {"x-ms-lease-action": "renew", "x-ms-lease-id": lease})
    assert r.status_code == 200, r.text
    r = _abfs(lake, "DELETE", p, "recursive=false")
    assert r.status_code == 412 and r.headers["x-ms-error-code"] == "LeaseIdMissing"
    r = _abfs(lake, "PATCH", p, "action=flush&position=7&close=true",
              {"x-ms-lease-id": lease, "x-ms-lease-action": "release"})
    assert r.status_code == 200, r.text
    # Released: anyone may write again; a new lease can be broken by another writer.
    r = _abfs(lake, "PATCH", p, "action=append&position=7", data=b"edit-2\n")
    assert r.status_code == 202, r.text
    r = _abfs(lake, "POST", p, "", {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "15"})
    assert r.status_code == 201
    r = _abfs(lake, "POST", p, "", {"x-ms-lease-action": "break", "x-ms-lease-break-period": "0"})
    assert r.status_code == 202
    r = _abfs(lake, "PATCH", p, "action=flush&position=14")
    assert r.status_code == 200, r.text
    r = _abfs(lake, "GET", p)
    assert r.content == b"edit-1\nedit-2\n"
    # The lease records never show in a listing.
    r = _abfs(lake, "GET", fsname, "resource=filesystem&recursive=true")
    assert not [x for x in r.json()["paths"] if "cistern-leases" in x["name"]]
    assert _abfs(lake, "DELETE", p, "recursive=false").status_code == 200


@pytest.mark.parametrize("fsname", FILESYSTEMS)
def test_javascript_datalake_sdk(lake, fsname):
    """A second real DFS client: the JavaScript Data Lake SDK, run by the suite's pinned Node."""
    import json
    import os
    import subprocess
    from pathlib import Path
    from conftest import azure_peer
    node = azure_peer("AZURE_PEERS_NODE")
    script = Path(__file__).parent / "js" / "datalake_roundtrip.js"
    top = unique("js")
    env = dict(os.environ, NODE_PATH=azure_peer("AZURE_PEERS_MODULES"))
    url = f"http://{WRITER_ACCOUNT}.dfs.cistern.test:{lake.blob_port}"  # host-style
    out = subprocess.run([node, str(script), url,
                          WRITER_ACCOUNT, WRITER_ACCOUNT_KEY, fsname, top],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["part"] == "from the JavaScript Data Lake"
    assert got["names"] == [[f"{top}/dir", True], [f"{top}/dir/data.txt", False]]
    assert got["size"] == 40 * 1000 and got["same"] and got["oldGone"]
    assert got["left"] == []


@pytest.mark.parametrize("fsname", FILESYSTEMS)
def test_filesystem_properties(lake, fsname):
    """Set / get filesystem properties (x-ms-properties): an Azure origin keeps them as the
    container's metadata; a directory or an S3 bucket has nowhere to keep them (501)."""
    props = "team=bWw=,purpose=dHJhaW5pbmc="  # team=ml, purpose=training
    r = _abfs(lake, "PATCH", fsname, "resource=filesystem", {"x-ms-properties": props})
    if fsname != "lakeaz":
        assert r.status_code == 501 and r.headers["x-ms-error-code"] == "NotImplemented"
        r = _abfs(lake, "HEAD", fsname, "resource=filesystem")
        assert r.status_code == 200 and r.headers["x-ms-properties"] == ""
        return
    assert r.status_code == 200, r.text
    r = _abfs(lake, "HEAD", fsname, "resource=filesystem")
    assert r.status_code == 200
    assert sorted(r.headers["x-ms-properties"].split(",")) == sorted(props.split(","))
    r = _abfs(lake, "PATCH", fsname, "resource=filesystem", {"x-ms-properties": "bad value"})
    assert r.status_code == 400
    assert _abfs(lake, "PATCH", fsname, "resource=filesystem",
                 {"x-ms-properties": ""}).status_code == 200
    assert _abfs(lake, "HEAD", fsname, "resource=filesystem").headers["x-ms-properties"] == ""
