#!/usr/bin/env python3
"""Generate Azure Blob SharedKey / SharedKeyLite / SAS test vectors -> azure.json.

Run with a venv that has exactly azure-storage-blob==12.31.1 (azure-core 1.41.x):

    python3 -m venv /tmp/vecvenv
    /tmp/vecvenv/bin/pip install azure-storage-blob==12.31.1
    /tmp/vecvenv/bin/python auth/tests/vectors/gen_azure.py

Output: auth/tests/vectors/azure.json (next to this script), byte-identical on
every run (all dates, request ids and user agents are pinned).

Where the strings come from
---------------------------
* SharedKey: the SDK's own ``SharedKeyCredentialPolicy.on_request`` signs each
  request (either a request built by a real BlobServiceClient call and caught
  by a no-network transport, or a hand-built ``azure.core.rest.HttpRequest``).
  ``string_to_sign`` / ``authorization`` are the SDK's, verbatim.  This script
  also carries a small independent canonicalizer written from Microsoft's
  documentation; it must reproduce the SDK byte for byte on every vector
  (asserted).  Where the SDK and the documented service behaviour differ
  (Range header, duplicate query keys, upper-case ``X-MS-`` names, ...), the
  vector also carries ``service_string_to_sign`` / ``service_authorization``
  and a ``divergence`` note.  A verifier that mimics Azure should accept the
  ``service_*`` form.
* SharedKeyLite: the Python SDK does not implement it.  Vectors are computed by
  the documented layout and marked ``"source": "derived-from-docs"``.
* SAS: ``generate_account_sas`` / ``generate_container_sas`` /
  ``generate_blob_sas`` (sv = the SDK default), and the SDK's
  ``SharedAccessSignature`` / ``BlobSharedAccessSignature`` classes with the
  version pinned to 2020-12-06 (same layout).  The SDK always signs with its
  newest layout, so vectors for older ``sv`` (2019-12-12 -> 2018-11-09 layout,
  2018-03-28 -> 2015-04-05 layout) are ``derived-from-docs``.  They can be
  re-checked against old SDK releases that used those versions:

      python3 -m venv /tmp/vecvenv-old12 && /tmp/vecvenv-old12/bin/pip install azure-storage-blob==12.5.0 six
      python3 -m venv /tmp/vecvenv-v1    && /tmp/vecvenv-v1/bin/pip install azure-storage-blob==1.5.0
      /tmp/vecvenv/bin/python auth/tests/vectors/gen_azure.py \
          --crosscheck-12-5 /tmp/vecvenv-old12/bin/python --crosscheck-1-5 /tmp/vecvenv-v1/bin/python

  The cross-check only asserts; it never changes azure.json.

No SDK code is copied here: the script calls the SDK and compares against its
own small re-implementation.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
from urllib.parse import quote, unquote, urlsplit

import azure.core
import azure.storage.blob
from azure.core import MatchConditions
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    ContentSettings,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from azure.storage.blob._shared.authentication import compare as sdk_header_compare
from azure.storage.blob._shared.shared_access_signature import SharedAccessSignature
from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature

EXPECTED_SDK = "12.31.1"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "azure.json")

EMU_ACCOUNT = "devstoreaccount1"
EMU_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Made-up account; key = base64(sha512("cistern-test-account-key")), 64 bytes like a real one.
OTHER_ACCOUNT = "cisterntest"
OTHER_KEY = base64.b64encode(hashlib.sha512(b"cistern-test-account-key").digest()).decode()
KEYS = {EMU_ACCOUNT: EMU_KEY, OTHER_ACCOUNT: OTHER_KEY}

EMU_PATH_BASE = "http://127.0.0.1:10000/" + EMU_ACCOUNT          # path-style (emulator)
EMU_HOST_BASE = "http://devstoreaccount1.blob.localhost:10000"     # Azurite "production-style"
OTHER_HOST_BASE = "https://cisterntest.blob.core.windows.net"       # host-style (real Azure shape)

FIXED_DATE = "Mon, 05 Jan 2026 10:00:00 GMT"
FIXED_REQ_ID = "00000000-0000-4000-8000-00000000c157"
FIXED_UA = "azsdk-python-storage-blob/12.31.1 Python/3.11 (cistern-vectors)"


# --------------------------------------------------------------------------
# Independent implementation (from Microsoft's docs + the collation rule)
# --------------------------------------------------------------------------

# Collation used for canonicalized x-ms-* header names (see azure.json
# "collation").  Level 1: compare the characters that carry a primary weight,
# case-insensitively, in this order; '-' and "'" carry none and are skipped.
# Level 2 (only if level 1 ties): walk both names position by position; at the
# first position where one has '-' or "'" and the other does not (or where one
# has "'" and the other '-', or one has ended), the name without the
# hyphen/apostrophe there (resp. with "'", resp. the shorter one) sorts first.
PRIMARY_ORDER = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz"
_PRIMARY_RANK = {c: i for i, c in enumerate(PRIMARY_ORDER)}
_SECONDARY_RANK = {"'": 1, "-": 2}


def azure_collation_key(name):
    lowered = name.lower()
    primary = tuple(_PRIMARY_RANK[c] for c in lowered if c in _PRIMARY_RANK)
    secondary = tuple(_SECONDARY_RANK.get(c, 0) for c in lowered)
    return (primary, secondary)


def hmac_b64(key_b64, message):
    return base64.b64encode(
        hmac.new(base64.b64decode(key_b64), message.encode("utf-8"), hashlib.sha256).digest()
    ).decode()


def split_query(raw_query):
    """Query pairs as sent: split on '&', then on the first '='. Nothing decoded."""
    if not raw_query:
        return []
    pairs = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        pairs.append([name, value])
    return pairs


STANDARD_HEADERS = [
    "content-encoding", "content-language", "content-length", "content-md5", "content-type",
    "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
]


def docs_canonicalized_headers(headers):
    xms = [(n.lower(), v) for n, v in headers if n.lower().startswith("x-ms-")]
    xms.sort(key=lambda nv: azure_collation_key(nv[0]))
    return "".join(f"{n}:{v}\n" for n, v in xms)


def docs_shared_key_sts(method, path, query_pairs, headers, account, *, date_when_xms_date="keep"):
    """StringToSign for SharedKey (Blob, version >= 2015-02-21) per the docs.

    date_when_xms_date: "keep" (use the Date header value as sent, like the
    Python SDK and Azurite) or "empty" (blank Date line when x-ms-date is
    present, as the docs allow and .NET/Go clients do).
    """
    h = {n.lower(): v for n, v in headers}
    std = []
    for name in STANDARD_HEADERS:
        value = h.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        if name == "date" and date_when_xms_date == "empty" and "x-ms-date" in h:
            value = ""
        std.append(value)
    resource = "/" + account + path
    grouped = {}
    for name, value in query_pairs:
        grouped.setdefault(unquote(name).lower(), []).append(unquote(value))
    for name in sorted(grouped):
        resource += "\n" + name + ":" + ",".join(sorted(grouped[name]))
    return method.upper() + "\n" + "\n".join(std) + "\n" + docs_canonicalized_headers(headers) + resource


def docs_shared_key_lite_sts(method, path, query_pairs, headers, account):
    """StringToSign for SharedKeyLite (Blob) per the docs."""
    h = {n.lower(): v for n, v in headers}
    date = "" if "x-ms-date" in h else h.get("date", "")
    resource = "/" + account + path
    comp = [unquote(v) for n, v in query_pairs if unquote(n).lower() == "comp"]
    if comp:
        resource += "?comp=" + comp[0]
    return (
        method.upper() + "\n" + h.get("content-md5", "") + "\n" + h.get("content-type", "") + "\n"
        + date + "\n" + docs_canonicalized_headers(headers) + resource
    )


def split_shared_key_sts(sts):
    lines = sts.split("\n")
    verb, std, rest = lines[0], lines[1:12], lines[12:]
    hdrs = []
    while rest and rest[0].startswith("x-ms-"):
        hdrs.append(rest.pop(0))
    canon_headers = "".join(x + "\n" for x in hdrs)
    resource = "\n".join(rest)
    assert verb + "\n" + "\n".join(std) + "\n" + canon_headers + resource == sts
    return {
        "verb": verb,
        "standard_header_values": dict(zip(STANDARD_HEADERS, std)),
        "canonicalized_headers": canon_headers,
        "canonicalized_resource": resource,
    }


# --------------------------------------------------------------------------
# Driving the SDK's SharedKey policy
# --------------------------------------------------------------------------

class _RecordingPolicy(SharedKeyCredentialPolicy):
    """The SDK policy, unchanged, plus a record of the string it signed."""

    last_sts = None

    def _add_authorization_header(self, request, string_to_sign):
        self.last_sts = string_to_sign
        super()._add_authorization_header(request, string_to_sign)


def sdk_shared_key(account, method, url, headers):
    req = HttpRequest(method, url, headers=dict(headers))
    assert req.url == url, (req.url, url)
    policy = _RecordingPolicy(account, KEYS[account])
    policy.on_request(PipelineRequest(req, PipelineContext(None)))
    auth = req.headers["Authorization"]
    sts = policy.last_sts
    assert auth == f"SharedKey {account}:{hmac_b64(KEYS[account], sts)}"
    return sts, auth


class _StopTransport(HttpTransport):
    """Records what the client would send and never touches the network."""

    def __init__(self):
        self.sent = []

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def open(self):
        pass

    def close(self):
        pass

    def send(self, request, **kwargs):
        self.sent.append((request.method, request.url, list(request.headers.items())))
        raise _Stop()


class _Stop(Exception):
    pass


def capture(make_client, action):
    """Run one SDK client call; return (method, url, headers) it tried to send."""
    transport = _StopTransport()
    client = make_client(transport)
    try:
        action(client)
    except Exception:  # the transport aborts every call on purpose
        pass
    assert len(transport.sent) == 1, transport.sent
    method, url, headers = transport.sent[0]
    pinned = []
    for name, value in headers:
        low = name.lower()
        if low == "authorization":
            continue
        if low == "x-ms-date":
            value = FIXED_DATE
        elif low == "x-ms-client-request-id":
            value = FIXED_REQ_ID
        elif low == "user-agent":
            value = FIXED_UA
        pinned.append([name, value])
    return method, url, pinned


def emu_path_service(transport):
    return BlobServiceClient(
        account_url=EMU_PATH_BASE,
        credential={"account_name": EMU_ACCOUNT, "account_key": EMU_KEY},
        transport=transport, retry_total=0,
    )


def emu_host_service(transport):
    return BlobServiceClient(
        account_url=EMU_HOST_BASE,
        credential={"account_name": EMU_ACCOUNT, "account_key": EMU_KEY},
        transport=transport, retry_total=0,
    )


def other_service(transport):
    return BlobServiceClient(
        account_url=OTHER_HOST_BASE,
        credential={"account_name": OTHER_ACCOUNT, "account_key": OTHER_KEY},
        transport=transport, retry_total=0,
    )


# --------------------------------------------------------------------------
# SharedKey / SharedKeyLite vectors
# --------------------------------------------------------------------------

def url_style(url):
    host = urlsplit(url).netloc
    return "path" if host.startswith("127.0.0.1") else "host"


def make_sk_vector(vid, description, account, method, url, headers, *, source, client_call=None,
                   divergence=None, date_variant=False):
    parts = urlsplit(url)
    path, raw_query = parts.path, parts.query
    query = split_query(raw_query)
    sts, auth = sdk_shared_key(account, method, url, headers)
    docs_sts = docs_shared_key_sts(method, path, query, headers, account)
    vec = {
        "id": vid,
        "description": description,
        "scheme": "SharedKey",
        "source": source,
    }
    if client_call:
        vec["sdk_client_call"] = client_call
    vec.update({
        "account": account,
        "url_style": url_style(url),
        "host": parts.netloc,
        "method": method,
        "path": path,
        "raw_query": raw_query,
        "query": query,
        "headers": headers,
        "string_to_sign": sts,
        "authorization": auth,
        "parts": split_shared_key_sts(sts),
    })
    if divergence is None:
        assert docs_sts == sts, f"{vid}: independent canonicalizer disagrees with SDK\n{docs_sts!r}\n{sts!r}"
    else:
        assert docs_sts != sts, f"{vid}: expected SDK and documented behaviour to differ"
        vec["divergence"] = divergence
        vec["service_string_to_sign"] = docs_sts
        vec["service_authorization"] = f"SharedKey {account}:{hmac_b64(KEYS[account], docs_sts)}"
    vec["azurite_3_35_0"] = azurite_observation("shared_key", vid)
    if date_variant:
        alt = docs_shared_key_sts(method, path, query, headers, account, date_when_xms_date="empty")
        assert alt != sts
        vec["also_valid"] = [{
            "why": "x-ms-date and Date both present: the docs say the Date line MAY be left empty; "
                   ".NET and Go clients leave it empty, the Python SDK and Azurite use the Date value. "
                   "Accept both.",
            "string_to_sign": alt,
            "authorization": f"SharedKey {account}:{hmac_b64(KEYS[account], alt)}",
        }]
    return vec


def shared_key_vectors():
    out = []

    # ---- requests built by real BlobServiceClient calls --------------------
    m, u, h = capture(emu_path_service, lambda s: list(
        s.get_container_client("cont").list_blobs(name_starts_with="dir/a b", include=["metadata", "snapshots"])))
    out.append(make_sk_vector(
        "sk-01-list-blobs-path-style",
        "List Blobs, emulator path-style URL: account appears twice in the canonicalized resource; "
        "include=metadata,snapshots (the SDK sends one comma-joined value, comma unencoded); "
        "prefix value percent-decoded in the resource.",
        EMU_ACCOUNT, m, u, h, source="sdk-client",
        client_call="ContainerClient.list_blobs(name_starts_with='dir/a b', include=['metadata','snapshots'])"))

    meta = {"Foo_Bar": "1", "foo-bar": "2", "FOO": "3", "foo2_bar": "4", "a-b_c": "5", "MixedCase": "6"}
    m, u, h = capture(other_service, lambda s: s.get_blob_client("cont", "dir/a b\u20ac\u00fc.txt").upload_blob(
        b"hello world", metadata=meta, overwrite=True,
        content_settings=ContentSettings(content_type="text/plain; charset=utf-8", content_language="en-US",
                                         cache_control="no-cache")))
    out.append(make_sk_vector(
        "sk-02-put-blob-metadata-host-style",
        "Put Blob, host-style URL, blob name with space and non-ASCII (percent-encoded UTF-8 in the path, "
        "kept encoded in the resource); Content-Length 11; x-ms-meta-* names with '-', '_' and mixed case "
        "(lower-cased, then Azure collation: foo_bar < foo2_bar < foo-bar, unlike byte order).",
        OTHER_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobClient.upload_blob(b'hello world', metadata=..., content_settings=...)"))

    m, u, h = capture(emu_path_service, lambda s: s.get_blob_client("cont", "big.bin").download_blob(
        offset=0, length=1024).readall())
    out.append(make_sk_vector(
        "sk-03-get-blob-range-path-style",
        "Get Blob ranged read: the SDK sends x-ms-range (a canonicalized header), never Range.",
        EMU_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobClient.download_blob(offset=0, length=1024)"))

    def _props(s):
        BlobClient(account_url=OTHER_HOST_BASE, container_name="cont", blob_name="snap me.txt",
                   snapshot="2026-01-02T03:04:05.1234567Z",
                   credential={"account_name": OTHER_ACCOUNT, "account_key": OTHER_KEY},
                   transport=s, retry_total=0).get_blob_properties(
            etag='"0x8DC0FFEE0000000"', match_condition=MatchConditions.IfNotModified)
    m, u, h = capture(lambda t: t, _props)
    out.append(make_sk_vector(
        "sk-04-head-snapshot-if-match-host-style",
        "Get Blob Properties (HEAD) of a snapshot with If-Match; the SDK sends the snapshot value with raw "
        "':' (not %3A) and the blob name with %20.",
        OTHER_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobClient(snapshot=...).get_blob_properties(etag=..., match_condition=IfNotModified)"))

    m, u, h = capture(emu_path_service, lambda s: s.create_container("newcont", metadata={"owner": "cistern"}))
    h = h + [["Content-Length", "0"]]
    out.append(make_sk_vector(
        "sk-05-create-container-content-length-0",
        "Create Container, path-style. 'Content-Length: 0' (as an HTTP library adds it) is signed as an "
        "empty line.",
        EMU_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobServiceClient.create_container('newcont', metadata=...) + transport-added Content-Length: 0"))

    collation_meta = {k: "v" for k in [
        "test", "test-", "test--", "test_-", "test-_", "test__", "test_a", "test_a-", "test-_a",
        "test_a_", "test_a-_", "test_z", "test-a", "i0", "i_", "FOO2_BAR", "FOO_BAR", "a.b", "a~", "a+"]}
    m, u, h = capture(emu_path_service, lambda s: s.get_blob_client("cont", "blob").set_blob_metadata(collation_meta))
    out.append(make_sk_vector(
        "sk-06-set-metadata-collation",
        "Set Blob Metadata with names whose Azure order differs from byte order (the test_* list is the "
        "order the live service reported in Azure/azure-sdk-for-python PR #33951; i0/i_ from issue #10277; "
        "FOO_BAR/FOO2_BAR from Azure/azure-sdk-for-net #41328). Note: names with '-' are not valid C# "
        "identifiers, so the real service would reject this request with 400 after authenticating it.",
        EMU_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobClient.set_blob_metadata({...})"))

    m, u, h = capture(emu_host_service, lambda s: list(s.list_containers(include_metadata=True)))
    out.append(make_sk_vector(
        "sk-07-list-containers-emulator-host-style",
        "List Containers on an Azurite production-style host (devstoreaccount1.blob.localhost): path is '/', "
        "so the account appears once.",
        EMU_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobServiceClient('http://devstoreaccount1.blob.localhost:10000').list_containers(include_metadata=True)"))

    m, u, h = capture(emu_path_service, lambda s: s.get_service_properties())
    out.append(make_sk_vector(
        "sk-08-service-properties-path-style",
        "Get Blob Service Properties, path-style: path '/devstoreaccount1/' -> resource "
        "'/devstoreaccount1/devstoreaccount1/' (trailing slash kept).",
        EMU_ACCOUNT, m, u, h, source="sdk-client",
        client_call="BlobServiceClient.get_service_properties()"))

    # ---- hand-built requests, signed by the SDK policy ----------------------
    base_h = [["x-ms-version", "2025-11-05"], ["x-ms-date", FIXED_DATE]]

    out.append(make_sk_vector(
        "sk-09-encoded-slash-path-style",
        "Blob name containing %2F and a space and U+20AC, sent the way azcopy sends it; the canonicalized "
        "resource keeps the path exactly as sent (%2F stays %2F, no re-encoding, no decoding).",
        EMU_ACCOUNT, "GET",
        EMU_PATH_BASE + "/cont/dir%2Fsub%2Ffile%20name%E2%82%AC.bin",
        base_h + [["x-ms-client-request-id", FIXED_REQ_ID]], source="sdk-policy"))

    out.append(make_sk_vector(
        "sk-10-all-standard-headers",
        "Put Blob with every standard header that is signed (except Range/Date) set; Content-Length non-zero.",
        OTHER_ACCOUNT, "PUT",
        OTHER_HOST_BASE + "/cont/data.bin?timeout=30",
        [["Content-Encoding", "gzip"], ["Content-Language", "de-DE"], ["Content-Length", "1048576"],
         ["Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="], ["Content-Type", "application/octet-stream"],
         ["If-Modified-Since", "Sat, 03 Jan 2026 00:00:00 GMT"], ["If-Match", '"0x8DC0FFEE0000001"'],
         ["If-None-Match", "*"], ["If-Unmodified-Since", "Sun, 04 Jan 2026 00:00:00 GMT"],
         ["x-ms-blob-type", "BlockBlob"], ["x-ms-blob-cache-control", "max-age=60"],
         ["x-ms-blob-content-type", "text/csv"], ["x-ms-access-tier", "Cool"]] + base_h,
        source="sdk-policy"))

    out.append(make_sk_vector(
        "sk-11-range-header",
        "GET with a standard 'Range' header (as curl or a hand-written client would send).",
        EMU_ACCOUNT, "GET", EMU_PATH_BASE + "/cont/big.bin",
        [["Range", "bytes=0-99"]] + base_h, source="sdk-policy",
        divergence="The Python SDK looks up a header called 'byte_range' instead of 'Range', so its Range "
                   "line is always empty (harmless for the SDK, which only sends x-ms-range). The documented "
                   "layout, Azurite, .NET and Go all sign the Range header value. Verifier: use "
                   "service_string_to_sign."))

    out.append(make_sk_vector(
        "sk-12-duplicate-query-keys",
        "List Blobs with include repeated: include=snapshots&include=metadata&include=uncommittedblobs.",
        OTHER_ACCOUNT, "GET",
        OTHER_HOST_BASE + "/cont?restype=container&comp=list&include=snapshots&include=metadata&include=uncommittedblobs",
        base_h, source="sdk-policy",
        divergence="The SDK keeps only the last value of a repeated query name (include:uncommittedblobs). "
                   "The docs: values of a repeated name are sorted and comma-joined "
                   "(include:metadata,snapshots,uncommittedblobs). The SDK itself never repeats a name. "
                   "Verifier: use service_string_to_sign."))

    out.append(make_sk_vector(
        "sk-13-date-and-x-ms-date",
        "Both Date and x-ms-date present.",
        OTHER_ACCOUNT, "GET", OTHER_HOST_BASE + "/cont/blob.txt",
        [["Date", "Mon, 05 Jan 2026 09:59:59 GMT"]] + base_h, source="sdk-policy", date_variant=True))

    out.append(make_sk_vector(
        "sk-14-empty-x-ms-value",
        "An x-ms-* header with an empty value is signed as 'name:' (service version 2016-05-31 and later); an "
        "empty standard header (Content-Type) gives an empty line.",
        EMU_ACCOUNT, "PUT", EMU_PATH_BASE + "/cont/blob?comp=metadata",
        [["Content-Type", ""], ["x-ms-meta-empty", ""], ["x-ms-meta-full", "value with  two spaces"]] + base_h,
        source="sdk-policy"))

    out.append(make_sk_vector(
        "sk-15-uppercase-x-ms-prefix",
        "Header names written with an upper-case prefix (X-MS-Meta-Upper, X-Ms-Meta-Other).",
        EMU_ACCOUNT, "PUT", EMU_PATH_BASE + "/cont/blob?comp=metadata",
        [["X-MS-Meta-Upper", "U"], ["X-Ms-Meta-Other", "O"]] + base_h, source="sdk-policy",
        divergence="The SDK selects canonicalized headers with a case-sensitive startswith('x-ms-') on the "
                   "name as given, so 'X-MS-...' headers are silently left out. HTTP names are "
                   "case-insensitive and the docs say to lower-case them: the service includes them. "
                   "Verifier: use service_string_to_sign (lower-case every name first)."))

    out.append(make_sk_vector(
        "sk-16-encoded-query-values",
        "List Blobs with percent-encoded query values: prefix=dir%2Fsub%20x, delimiter=%2F, marker with %21/%3D, "
        "and a literal '+' (kept as '+', not turned into a space).",
        OTHER_ACCOUNT, "GET",
        OTHER_HOST_BASE + "/cont?restype=container&comp=list&prefix=dir%2Fsub%20x%2Ba+b&delimiter=%2F"
                          "&marker=2%21abc%3D%3D&maxresults=5",
        base_h, source="sdk-policy"))

    out.append(make_sk_vector(
        "sk-17-uppercase-query-name",
        "Query name with upper case: ?Timeout=30&comp=metadata&restype=container.",
        EMU_ACCOUNT, "GET", EMU_PATH_BASE + "/cont?Timeout=30&comp=metadata&restype=container",
        base_h, source="sdk-policy",
        divergence="The SDK sorts query names as sent (code-point order, so 'Timeout' < 'comp') and lower-cases "
                   "them afterwards; the docs lower-case first, then sort (comp, restype, timeout). Verifier: "
                   "use service_string_to_sign."))

    out.append(make_sk_vector(
        "sk-18-delete-lease-other-account",
        "Delete Blob with lease and snapshot options on the made-up account (x-ms-lease-id, "
        "x-ms-delete-snapshots).",
        OTHER_ACCOUNT, "DELETE", OTHER_HOST_BASE + "/cont/old%20file.txt",
        [["x-ms-lease-id", "2f0f2a6c-0000-4000-8000-000000000001"], ["x-ms-delete-snapshots", "include"]] + base_h,
        source="sdk-policy"))
    return out


def make_lite_vector(vid, description, account, method, url, headers):
    parts = urlsplit(url)
    path, raw_query = parts.path, parts.query
    query = split_query(raw_query)
    sts = docs_shared_key_lite_sts(method, path, query, headers, account)
    return {
        "id": vid,
        "description": description,
        "scheme": "SharedKeyLite",
        "source": "derived-from-docs",
        "account": account,
        "url_style": url_style(url),
        "host": parts.netloc,
        "method": method,
        "path": path,
        "raw_query": raw_query,
        "query": query,
        "headers": headers,
        "string_to_sign": sts,
        "authorization": f"SharedKeyLite {account}:{hmac_b64(KEYS[account], sts)}",
        "azurite_3_35_0": azurite_observation("shared_key_lite", vid),
    }


def shared_key_lite_vectors():
    xd = [["x-ms-date", FIXED_DATE], ["x-ms-version", "2025-11-05"]]
    return [
        make_lite_vector(
            "skl-01-put-blob-metadata",
            "Put Blob with metadata (shape of the docs' example); Content-Length is not part of Lite.",
            OTHER_ACCOUNT, "PUT", OTHER_HOST_BASE + "/mycontainer/hello.txt",
            [["Content-Type", "text/plain; charset=UTF-8"], ["Content-Length", "11"],
             ["x-ms-blob-type", "BlockBlob"], ["x-ms-meta-m1", "v1"], ["x-ms-meta-m2", "v2"]] + xd),
        make_lite_vector(
            "skl-02-container-metadata-comp",
            "Get Container Metadata: only comp survives, as '?comp=metadata'; restype is dropped.",
            OTHER_ACCOUNT, "GET", OTHER_HOST_BASE + "/mycontainer?restype=container&comp=metadata", xd),
        make_lite_vector(
            "skl-03-list-blobs-path-style",
            "List Blobs, emulator path-style (account twice), prefix dropped, comp kept.",
            EMU_ACCOUNT, "GET", EMU_PATH_BASE + "/cont?restype=container&comp=list&prefix=a%20b", xd),
        make_lite_vector(
            "skl-04-date-header-only",
            "No x-ms-date: the Date header value fills the Date line. Content-MD5 set. Encoded unicode path.",
            EMU_ACCOUNT, "GET", EMU_PATH_BASE + "/cont/%E2%82%AC%20x.txt",
            [["Date", FIXED_DATE], ["Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="], ["x-ms-version", "2025-11-05"]]),
        make_lite_vector(
            "skl-05-collation",
            "Canonicalized headers use the same collation as SharedKey.",
            EMU_ACCOUNT, "PUT", EMU_PATH_BASE + "/cont/blob?comp=metadata",
            [["x-ms-meta-foo-bar", "1"], ["x-ms-meta-foo_bar", "2"], ["x-ms-meta-foo2", "3"]] + xd),
    ]


# --------------------------------------------------------------------------
# SAS vectors
# --------------------------------------------------------------------------

def dt(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def jsonable(v):
    if isinstance(v, datetime.datetime):
        return {"datetime_utc": v.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return {"type": type(v).__name__, "str": str(v)}


def sas_fields(token):
    pairs = split_query(token)
    return pairs, {n: unquote(v) for n, v in pairs}


def service_layout(sv):
    if sv >= "2020-12-06":
        return "service-2020-12-06"
    if sv >= "2018-11-09":
        return "service-2018-11-09"
    if sv >= "2015-04-05":
        return "service-2015-04-05"
    raise ValueError(sv)


def account_layout(sv):
    return "account-2020-12-06" if sv >= "2020-12-06" else "account-2015-04-05"


SERVICE_LAYOUT_FIELDS = {
    "service-2020-12-06": ["sp", "st", "se", "@resource", "si", "sip", "spr", "sv", "sr", "@snapshot", "ses",
                           "rscc", "rscd", "rsce", "rscl", "rsct"],
    "service-2018-11-09": ["sp", "st", "se", "@resource", "si", "sip", "spr", "sv", "sr", "@snapshot",
                           "rscc", "rscd", "rsce", "rscl", "rsct"],
    "service-2015-04-05": ["sp", "st", "se", "@resource", "si", "sip", "spr", "sv",
                           "rscc", "rscd", "rsce", "rscl", "rsct"],
}
ACCOUNT_LAYOUT_FIELDS = {
    "account-2020-12-06": ["@account", "sp", "ss", "srt", "st", "se", "sip", "spr", "sv", "ses"],
    "account-2015-04-05": ["@account", "sp", "ss", "srt", "st", "se", "sip", "spr", "sv"],
}


def docs_service_sas_sts(fields, account, container, blob, snapshot):
    """Service SAS string-to-sign from decoded fields, per the docs (account-key SAS only)."""
    layout = service_layout(fields["sv"])
    resource = "/blob/" + account + "/" + container + ("/" + blob if blob is not None else "")
    values = []
    for f in SERVICE_LAYOUT_FIELDS[layout]:
        if f == "@resource":
            values.append(resource)
        elif f == "@snapshot":
            values.append(snapshot or "")
        else:
            values.append(fields.get(f, ""))
    return "\n".join(values), resource, layout


def docs_account_sas_sts(fields, account):
    layout = account_layout(fields["sv"])
    values = [account if f == "@account" else fields.get(f, "") for f in ACCOUNT_LAYOUT_FIELDS[layout]]
    return "".join(v + "\n" for v in values), layout


def sdk_sas_call(fn, **kwargs):
    seen = []
    token = fn(sts_hook=seen.append, **kwargs)
    assert len(seen) == 1
    return token, seen[0]


def sas_request(account, container, blob, token, snapshot=None, version_id=None):
    path = "/" + container + ("/" + quote(blob, safe="/~") if blob is not None else "")
    extra = ""
    if snapshot:
        extra = "snapshot=" + quote(snapshot, safe="") + "&"
    if version_id:
        extra = "versionid=" + quote(version_id, safe="") + "&"
    req = {
        "method": "GET",
        "host_style": {"host": f"{account}.blob.core.windows.net", "path": path},
        "path_style": {"host": "127.0.0.1:10000", "path": "/" + account + path},
        "query": extra + token,
    }
    if blob is None:
        req["query"] = "restype=container&comp=list&" + req["query"]
    return req


def make_sas_vector(vid, description, kind, source, call, inputs, token, sts, account,
                    container=None, blob=None, snapshot=None, version_id=None, verifiable=True, note=None):
    pairs, fields = sas_fields(token)
    assert fields["sig"] == hmac_b64(KEYS[account], sts), vid
    if kind == "account":
        docs_sts, layout = docs_account_sas_sts(fields, account)
        resource = None
    else:
        docs_sts, resource, layout = docs_service_sas_sts(
            fields, account, container, blob, snapshot if fields.get("sr") == "bs" else version_id)
    assert docs_sts == sts, f"{vid}: docs layout disagrees\n{docs_sts!r}\n{sts!r}"
    vec = {
        "id": vid,
        "description": description,
        "kind": kind,
        "source": source,
        "call": call,
        "inputs": {k: jsonable(v) for k, v in inputs.items()},
        "account": account,
        "sv": fields["sv"],
        "layout": layout,
        "token": token,
        "query": pairs,
        "fields": {k: v for k, v in fields.items() if k != "sig"},
        "signature": fields["sig"],
        "canonicalized_resource": resource,
        "string_to_sign": sts,
        "verifiable_locally": verifiable,
    }
    if kind != "account":
        vec["signed_snapshot_time_from"] = (
            "request query 'snapshot'" if fields.get("sr") == "bs"
            else "request query 'versionid'" if fields.get("sr") == "bv" else None)
        vec["request"] = sas_request(account, container, blob, token, snapshot, version_id)
    else:
        # A request the SAS's srt allows: object > container > service.
        srt = fields.get("srt", "")
        path, extra = ("/cont/any.txt", "") if "o" in srt else (
            ("/cont", "restype=container&comp=list&") if "c" in srt else ("/", "restype=service&comp=properties&"))
        vec["request"] = {
            "method": "GET",
            "host_style": {"host": f"{account}.blob.core.windows.net", "path": path},
            "path_style": {"host": "127.0.0.1:10000", "path": f"/{account}{path}"},
            "query": extra + token,
        }
    vec["azurite_3_35_0"] = azurite_observation("sas", vid)
    if note:
        vec["note"] = note
    return vec


def sas_vectors():
    out = []
    E, S = dt("2030-01-01T00:00:00Z"), dt("2026-01-01T00:00:00Z")

    # ---------- account SAS, SDK --------------------------------------------
    inp = dict(account_name=EMU_ACCOUNT, account_key=EMU_KEY, resource_types=ResourceTypes(service=True, container=True, object=True),
               permission=AccountSasPermissions(read=True, list=True), expiry=E)
    tok, sts = sdk_sas_call(generate_account_sas, **inp)
    out.append(make_sas_vector("sas-01-account-minimal", "Account SAS, blob service only (SDK default ss=b), "
                               "srt=sco, sp=rl, expiry only.", "account", "sdk", "generate_account_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, EMU_ACCOUNT))

    inp = dict(account_name=OTHER_ACCOUNT, account_key=OTHER_KEY, resource_types="sco",
               permission=AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True,
                                                update=True, process=True, delete_previous_version=True, tag=True,
                                                filter_by_tags=True, set_immutability_policy=True,
                                                permanent_delete=True),
               expiry=E, start=S, ip="168.1.5.60-168.1.5.70", services="bfqt", protocol="https")
    tok, sts = sdk_sas_call(generate_account_sas, **inp)
    out.append(make_sas_vector("sas-02-account-full", "Account SAS, ss=bfqt, every permission letter, start, "
                               "IP range, https only.", "account", "sdk", "generate_account_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, OTHER_ACCOUNT))

    seen = []
    sas = SharedAccessSignature(EMU_ACCOUNT, EMU_KEY, x_ms_version="2020-12-06")
    tok = sas.generate_account(services="b", resource_types="co", permission="rwl", expiry="2030-06-30T12:00:00Z",
                               protocol="https,http", encryption_scope="scope-1", sts_hook=seen.append)
    out.append(make_sas_vector("sas-03-account-sv2020-ses", "Account SAS pinned to sv=2020-12-06 with an "
                               "encryption scope (ses) and protocol 'https,http' (comma sent as %2C); expiry "
                               "given as a string.", "account", "sdk",
                               "SharedAccessSignature(account, key, x_ms_version='2020-12-06').generate_account",
                               dict(account_name=EMU_ACCOUNT, services="b", resource_types="co", permission="rwl",
                                    expiry="2030-06-30T12:00:00Z", protocol="https,http",
                                    encryption_scope="scope-1", x_ms_version="2020-12-06"),
                               tok, seen[0], EMU_ACCOUNT))

    # ---------- container SAS, SDK -------------------------------------------
    inp = dict(account_name=EMU_ACCOUNT, container_name="cont", account_key=EMU_KEY,
               permission=ContainerSasPermissions(read=True, list=True), expiry=E)
    tok, sts = sdk_sas_call(generate_container_sas, **inp)
    out.append(make_sas_vector("sas-04-container-minimal", "Container SAS (sr=c), sp=rl, expiry only. Used "
                               "here for List Blobs.", "service-container", "sdk", "generate_container_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, EMU_ACCOUNT,
                               container="cont"))

    inp = dict(account_name=OTHER_ACCOUNT, container_name="reports", account_key=OTHER_KEY,
               permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True,
                                                  list=True),
               expiry=E, start=S, ip="10.1.2.3", protocol="https", cache_control="max-age=3600",
               content_type="application/json")
    tok, sts = sdk_sas_call(generate_container_sas, **inp)
    out.append(make_sas_vector("sas-05-container-full", "Container SAS with start, single IP, https, rscc and "
                               "rsct overrides.", "service-container", "sdk", "generate_container_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, OTHER_ACCOUNT,
                               container="reports"))

    inp = dict(account_name=EMU_ACCOUNT, container_name="cont", account_key=EMU_KEY, policy_id="policy-1")
    tok, sts = sdk_sas_call(generate_container_sas, **inp)
    out.append(make_sas_vector("sas-06-container-stored-policy", "Container SAS bound to a stored access policy "
                               "(si): no sp/se in the token. The signature checks out with the key, but sp/st/se "
                               "live on the origin.", "service-container", "sdk", "generate_container_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, EMU_ACCOUNT,
                               container="cont", verifiable=False,
                               note="Permissions and expiry come from the container's stored policy: a gateway "
                                    "cannot authorize this alone (forward to origin)."))

    # ---------- blob SAS, SDK ------------------------------------------------
    name = "dir/a b\u20ac.txt"
    inp = dict(account_name=EMU_ACCOUNT, container_name="cont", blob_name=name, account_key=EMU_KEY,
               permission=BlobSasPermissions(read=True), expiry=E)
    tok, sts = sdk_sas_call(generate_blob_sas, **inp)
    out.append(make_sas_vector("sas-07-blob-minimal-unicode", "Blob SAS, sp=r, expiry only; blob name with a "
                               "space and U+20AC: the canonicalized resource holds the DECODED name "
                               "(unlike SharedKey, which keeps the encoded path).", "service-blob", "sdk",
                               "generate_blob_sas", {k: v for k, v in inp.items() if k != "account_key"}, tok, sts,
                               EMU_ACCOUNT, container="cont", blob=name))

    snap = "2026-01-02T03:04:05.1234567Z"
    inp = dict(account_name=OTHER_ACCOUNT, container_name="cont", blob_name="photo.jpg", snapshot=snap,
               account_key=OTHER_KEY, permission=BlobSasPermissions(read=True, delete=True), expiry=E, start=S)
    tok, sts = sdk_sas_call(generate_blob_sas, **inp)
    out.append(make_sas_vector("sas-08-blob-snapshot", "Blob snapshot SAS (sr=bs). The SDK signs the snapshot "
                               "time but leaves it out of the token: the request carries it as ?snapshot=.",
                               "service-blob", "sdk", "generate_blob_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, OTHER_ACCOUNT,
                               container="cont", blob="photo.jpg", snapshot=snap))

    inp = dict(account_name=OTHER_ACCOUNT, container_name="cont", blob_name="report final.pdf",
               account_key=OTHER_KEY, permission="racwd", expiry=E, start=S, ip="168.1.5.60-168.1.5.70",
               protocol="https", cache_control="no-cache, no-store",
               content_disposition='attachment; filename="r\u00e9sum\u00e9 final.pdf"',
               content_encoding="gzip", content_language="fr-CA", content_type="application/pdf; charset=binary")
    tok, sts = sdk_sas_call(generate_blob_sas, **inp)
    out.append(make_sas_vector("sas-09-blob-overrides", "Blob SAS with all five response overrides "
                               "(rscc/rscd/rsce/rscl/rsct, with spaces, quotes, ';', ',' and non-ASCII), IP range, "
                               "https only, start.", "service-blob", "sdk", "generate_blob_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, OTHER_ACCOUNT,
                               container="cont", blob="report final.pdf"))

    vid = "2026-01-03T04:05:06.7654321Z"
    inp = dict(account_name=EMU_ACCOUNT, container_name="cont", blob_name="versioned.txt", account_key=EMU_KEY,
               permission=BlobSasPermissions(read=True, delete_previous_version=True), expiry=E,
               version_id=vid)
    tok, sts = sdk_sas_call(generate_blob_sas, **inp)
    out.append(make_sas_vector("sas-10-blob-version", "Blob version SAS (sr=bv): the version id takes the "
                               "snapshot-time slot; not in the token, sent as ?versionid=.", "service-blob",
                               "sdk", "generate_blob_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, EMU_ACCOUNT,
                               container="cont", blob="versioned.txt", version_id=vid))

    seen = []
    bsas = BlobSharedAccessSignature(OTHER_ACCOUNT, account_key=OTHER_KEY)
    bsas.x_ms_version = "2020-12-06"
    tok = bsas.generate_blob("cont", "enc.bin", permission="rw", expiry="2030-01-01", start="2026-01-01T00:00Z",
                             encryption_scope="scope-1", sts_hook=seen.append)
    out.append(make_sas_vector("sas-11-blob-sv2020-ses-short-dates", "Blob SAS pinned to sv=2020-12-06 with ses; "
                               "expiry as a bare date and start without seconds (both documented ISO-8601 "
                               "forms, signed exactly as written).", "service-blob", "sdk",
                               "BlobSharedAccessSignature(account, key) with x_ms_version='2020-12-06', .generate_blob",
                               dict(account_name=OTHER_ACCOUNT, container_name="cont", blob_name="enc.bin",
                                    permission="rw", expiry="2030-01-01", start="2026-01-01T00:00Z",
                                    encryption_scope="scope-1", x_ms_version="2020-12-06"),
                               tok, seen[0], OTHER_ACCOUNT, container="cont", blob="enc.bin"))

    name = "100%/x+y z.txt"
    inp = dict(account_name=EMU_ACCOUNT, container_name="cont", blob_name=name, account_key=EMU_KEY,
               permission=BlobSasPermissions(read=True), expiry=E)
    tok, sts = sdk_sas_call(generate_blob_sas, **inp)
    out.append(make_sas_vector("sas-12-blob-name-percent-plus", "Blob name with '%', '+' and a space: the "
                               "request path is '/cont/100%25/x%2By%20z.txt' and the verifier must decode it "
                               "to rebuild the resource.", "service-blob", "sdk", "generate_blob_sas",
                               {k: v for k, v in inp.items() if k != "account_key"}, tok, sts, EMU_ACCOUNT,
                               container="cont", blob=name))

    # ---------- older sv: derived from docs ------------------------------------
    out.extend(old_sv_sas_vectors())
    return out


def _sas_token(pairs):
    return "&".join(f"{n}={quote(v, safe='/')}" for n, v in pairs if v)


def old_sv_sas_vectors():
    out = []
    # Inputs shared with the optional cross-check (see OLD_SV_CASES).
    for case in OLD_SV_CASES:
        account, key = case["account"], KEYS[case["account"]]
        f = case["fields"]
        if case["kind"] == "account":
            sts, layout = docs_account_sas_sts(f, account)
            order = ["st", "se", "sp", "sip", "spr", "sv", "ss", "srt"]
        else:
            snapshot = case.get("snapshot")
            sts, resource, layout = docs_service_sas_sts(f, account, case["container"], case.get("blob"), snapshot)
            order = ["st", "se", "sp", "sip", "spr", "sv", "sr", "rscc", "rscd", "rsce", "rscl", "rsct"]
        sig = hmac_b64(key, sts)
        token = _sas_token([(n, f.get(n, "")) for n in order] + [("sig", sig)])
        vec = make_sas_vector(case["id"], case["description"], case["kind"], "derived-from-docs",
                              "docs layout " + layout, dict(f), token, sts, account,
                              container=case.get("container"), blob=case.get("blob"),
                              snapshot=case.get("snapshot"))
        vec["crosscheck"] = case["crosscheck"]
        out.append(vec)
    return out


OLD_SV_CASES = [
    {
        "id": "sas-13-blob-sv2019-12-12", "kind": "service-blob", "account": EMU_ACCOUNT,
        "container": "cont", "blob": "dir/snap shot.txt", "snapshot": "2019-06-01T00:00:00.0000000Z",
        "description": "Blob snapshot SAS with sv=2019-12-12 (2018-11-09 layout: sr and snapshot time, no ses) "
                       "and two overrides.",
        "fields": {"sp": "rd", "st": "2026-01-01T00:00:00Z", "se": "2030-01-01T00:00:00Z", "sv": "2019-12-12",
                   "sr": "bs", "spr": "https", "rscd": "inline", "rsct": "text/plain"},
        "crosscheck": "azure-storage-blob==12.5.0 (its default sv is 2019-12-12): same signature",
    },
    {
        "id": "sas-14-container-sv2019-12-12", "kind": "service-container", "account": OTHER_ACCOUNT,
        "container": "reports",
        "description": "Container SAS with sv=2019-12-12 (2018-11-09 layout; empty snapshot line still present).",
        "fields": {"sp": "rl", "se": "2030-01-01T00:00:00Z", "sv": "2019-12-12", "sr": "c",
                   "sip": "168.1.5.60-168.1.5.70"},
        "crosscheck": "azure-storage-blob==12.5.0 (its default sv is 2019-12-12): same signature",
    },
    {
        "id": "sas-15-blob-sv2018-03-28", "kind": "service-blob", "account": OTHER_ACCOUNT,
        "container": "cont", "blob": "legacy file.txt",
        "description": "Blob SAS with sv=2018-03-28 (2015-04-05 layout: no sr, no snapshot, no ses lines; sr=b is "
                       "in the token but not signed).",
        "fields": {"sp": "r", "st": "2026-01-01T00:00:00Z", "se": "2030-01-01T00:00:00Z", "sv": "2018-03-28",
                   "sr": "b", "sip": "10.0.0.1", "spr": "https,http", "rscc": "no-cache",
                   "rscl": "en-US"},
        "crosscheck": "azure-storage-blob==1.5.0 (its default sv is 2018-03-28): same signature",
    },
    {
        "id": "sas-16-account-sv2019-12-12", "kind": "account", "account": EMU_ACCOUNT,
        "description": "Account SAS with sv=2019-12-12 (no ses line: ends 'sv\\n').",
        "fields": {"sp": "rwdlacup", "ss": "b", "srt": "sco", "st": "2026-01-01T00:00:00Z",
                   "se": "2030-01-01T00:00:00Z", "spr": "https", "sv": "2019-12-12"},
        "crosscheck": "azure-storage-blob==12.5.0 (its default sv is 2019-12-12): same signature",
    },
    {
        "id": "sas-17-account-sv2018-03-28", "kind": "account", "account": OTHER_ACCOUNT,
        "description": "Account SAS with sv=2018-03-28, ss=bfqt, IP range.",
        "fields": {"sp": "rl", "ss": "bfqt", "srt": "sc", "se": "2030-01-01T00:00:00Z",
                   "sip": "168.1.5.60-168.1.5.70", "sv": "2018-03-28"},
        "crosscheck": "azure-storage-blob==1.5.0 (its default sv is 2018-03-28): same signature",
    },
]


# Optional cross-check against old SDK releases (never changes azure.json).
_XCHECK_12_5 = r"""
import json, sys
from azure.storage.blob import generate_blob_sas, generate_container_sas
from azure.storage.blob._shared.shared_access_signature import SharedAccessSignature
from azure.storage.blob._shared.constants import X_MS_VERSION
c = json.loads(sys.argv[1]); f = c["fields"]; key = c["key"]
assert X_MS_VERSION == f["sv"], X_MS_VERSION
kw = dict(permission=f.get("sp"), expiry=f.get("se"), start=f.get("st"), ip=f.get("sip"), protocol=f.get("spr"),
          cache_control=f.get("rscc"), content_disposition=f.get("rscd"), content_encoding=f.get("rsce"),
          content_language=f.get("rscl"), content_type=f.get("rsct"))
if c["kind"] == "account":
    tok = SharedAccessSignature(c["account"], key).generate_account(
        services=f["ss"], resource_types=f["srt"], permission=f["sp"], expiry=f["se"], start=f.get("st"),
        ip=f.get("sip"), protocol=f.get("spr"))
elif c["kind"] == "service-container":
    tok = generate_container_sas(c["account"], c["container"], account_key=key, **kw)
else:
    tok = generate_blob_sas(c["account"], c["container"], c["blob"], snapshot=c.get("snapshot"), account_key=key, **kw)
print(tok)
"""

_XCHECK_1_5 = r"""
import json, sys
from azure.storage.blob.sharedaccesssignature import BlobSharedAccessSignature
from azure.storage.common.sharedaccesssignature import SharedAccessSignature
c = json.loads(sys.argv[1]); f = c["fields"]; key = c["key"]
kw = dict(permission=f.get("sp"), expiry=f.get("se"), start=f.get("st"), ip=f.get("sip"), protocol=f.get("spr"),
          cache_control=f.get("rscc"), content_disposition=f.get("rscd"), content_encoding=f.get("rsce"),
          content_language=f.get("rscl"), content_type=f.get("rsct"))
if c["kind"] == "account":
    tok = SharedAccessSignature(c["account"], key).generate_account(
        f["ss"], f["srt"], f["sp"], f["se"], start=f.get("st"), ip=f.get("sip"), protocol=f.get("spr"))
elif c["kind"] == "service-container":
    tok = BlobSharedAccessSignature(c["account"], key).generate_container(c["container"], **kw)
else:
    tok = BlobSharedAccessSignature(c["account"], key).generate_blob(c["container"], c["blob"], **kw)
print(tok)
"""


def crosscheck(py_12_5, py_1_5, sas_vecs):
    by_id = {v["id"]: v for v in sas_vecs}
    checked = 0
    for case in OLD_SV_CASES:
        if "12.5.0" in case["crosscheck"]:
            py, script = py_12_5, _XCHECK_12_5
        else:
            py, script = py_1_5, _XCHECK_1_5
        if not py:
            continue
        arg = dict(case, key=KEYS[case["account"]])
        tok = subprocess.run([py, "-c", script, json.dumps(arg)], check=True, capture_output=True,
                             text=True).stdout.strip()
        theirs = {n: unquote(v) for n, v in split_query(tok)}
        ours = by_id[case["id"]]
        assert theirs["sig"] == ours["signature"], (case["id"], tok, ours["token"])
        for n, v in ours["fields"].items():
            assert theirs.get(n) == v, (case["id"], n, theirs.get(n), v)
        checked += 1
        print(f"cross-check ok: {case['id']} == {case['crosscheck'].split(' ')[0]}", file=sys.stderr)
    return checked


# --------------------------------------------------------------------------
# What Azurite 3.35.0 (a real verifier) said about each vector
# --------------------------------------------------------------------------
# Recorded by hand with --probe-azurite (see main()); stored here so that
# azure.json stays reproducible without a running Azurite.  Forms: "sdk" =
# authorization / SAS as generated, "service" = service_authorization,
# "also_valid_0" = also_valid[0].
_COLLATION_WHY = ("Azurite sorts x-ms-* names with JavaScript localeCompare (ICU), not Azure's collation "
                  "(e.g. foo-bar < foo2_bar, test__ < test_-)")
AZURITE_3_35_0 = {
    "sk-02-put-blob-metadata-host-style": {"sdk": "rejected", "why": _COLLATION_WHY},
    "sk-06-set-metadata-collation": {"sdk": "rejected", "why": _COLLATION_WHY},
    "sk-11-range-header": {"sdk": "rejected", "service": "accepted"},
    "sk-12-duplicate-query-keys": {"sdk": "accepted", "service": "rejected",
                                   "why": "Azurite, like the SDK, keeps one value per query name"},
    "sk-13-date-and-x-ms-date": {"sdk": "accepted", "also_valid_0": "rejected",
                                 "why": "Azurite always signs the Date header value"},
    "sk-15-uppercase-x-ms-prefix": {"sdk": "rejected", "service": "accepted"},
    "sk-16-encoded-query-values": {"sdk": "rejected",
                                   "why": "Azurite turns a raw '+' in a query value into a space before "
                                          "decoding; the SDK keeps '+'"},
    "sk-17-uppercase-query-name": {"sdk": "rejected", "service": "accepted"},
    "sas-06-container-stored-policy": {"sdk": "rejected", "why": "signature matched; no such stored policy"},
    "sas-10-blob-version": {"sdk": "rejected", "why": "Azurite does not support sr=bv"},
}
AZURITE_DEFAULT = {"shared_key": {"sdk": "accepted"},
                   "shared_key_lite": {"sdk": "rejected",
                                       "why": "Azurite's blob service has no SharedKeyLite: any "
                                              "'SharedKey...' header is checked as SharedKey"},
                   "sas": {"sdk": "accepted"}}
AZURITE_REJECT_CODES = {"AuthorizationFailure", "AuthenticationFailed"}


def azurite_observation(section, vid):
    return dict(AZURITE_3_35_0.get(vid, AZURITE_DEFAULT[section]))


def probe_azurite(doc, hostport):
    """Send every vector to a running Azurite; report accepted/rejected per form.

    Start it with both accounts, e.g.
      AZURITE_ACCOUNTS="devstoreaccount1:<emulator key>;cisterntest:<key from azure.json>" \
        azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence \
        --skipApiVersionCheck --loose --disableTelemetry
    'accepted' = anything but a 403 AuthorizationFailure/AuthenticationFailed (404s are expected: the
    containers do not exist; a 403 for protocol/IP/resource-type comes after the signature check).
    """
    import http.client
    host, port = hostport.rsplit(":", 1)

    def send(method, path_query, headers, host_header):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.putrequest(method, path_query, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        body = b""
        for n, v in headers:
            conn.putheader(n, v)
            if n.lower() == "content-length":
                body = b"x" * int(v)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        resp.read()
        code = resp.headers.get("x-ms-error-code")
        return "rejected" if resp.status == 403 and code in AZURITE_REJECT_CODES else "accepted"

    mismatches = 0
    for section in ("shared_key", "shared_key_lite", "sas"):
        for v in doc[section]:
            if section == "sas":
                r = v["request"]
                got = {"sdk": send("GET", r["path_style"]["path"] + "?" + r["query"],
                                   [["x-ms-version", "2025-11-05"]], f"{host}:{port}")}
            else:
                pq = v["path"] + ("?" + v["raw_query"] if v["raw_query"] else "")
                forms = {"sdk": v["authorization"]}
                if "service_authorization" in v:
                    forms["service"] = v["service_authorization"]
                for i, alt in enumerate(v.get("also_valid", [])):
                    forms[f"also_valid_{i}"] = alt["authorization"]
                got = {f: send(v["method"], pq, v["headers"] + [["Authorization", a]], v["host"])
                       for f, a in forms.items()}
            want = {k: x for k, x in v["azurite_3_35_0"].items() if k != "why"}
            flag = "ok " if got == want else "DIFF"
            mismatches += got != want
            print(f"{flag} {v['id']}: {got}", file=sys.stderr)
    print(f"azurite probe: {mismatches} vector(s) differ from the recorded observations", file=sys.stderr)


# --------------------------------------------------------------------------
# Collation section
# --------------------------------------------------------------------------

def sdk_sorted(names):
    from functools import cmp_to_key
    return sorted(names, key=cmp_to_key(sdk_header_compare))


def collation_section():
    # 1) The independent key must agree with the SDK comparator everywhere that
    #    matters (lower-case HTTP token characters).
    from functools import cmp_to_key
    rng = random.Random(20260105)
    alphabet = "ab-_'0.~+z9!"
    for _ in range(4000):
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(12)]
        names = list(dict.fromkeys(names))
        assert sorted(names, key=azure_collation_key) == sorted(names, key=cmp_to_key(sdk_header_compare)), names

    example_sets = [
        ("Live-service order reported in Azure/azure-sdk-for-python PR #33951",
         ["x-ms-blob-type", "x-ms-client-request-id", "x-ms-date", "x-ms-meta-test", "x-ms-meta-test-",
          "x-ms-meta-test--", "x-ms-meta-test_-", "x-ms-meta-test-_", "x-ms-meta-test__", "x-ms-meta-test_a",
          "x-ms-meta-test_a-", "x-ms-meta-test-_a", "x-ms-meta-test_a_", "x-ms-meta-test_a-_", "x-ms-meta-test_z",
          "x-ms-meta-test-a", "x-ms-version"]),
        ("Azure/azure-sdk-for-python #10277: '_' sorts before digits", ["x-ms-meta-i0", "x-ms-meta-i_"]),
        ("Azure/azure-sdk-for-net #41328", ["x-ms-meta-foo2_bar", "x-ms-meta-foo_bar"]),
        ("'-' is ignored at first, then breaks ties", ["x-ms-meta-a-z", "x-ms-meta-ab", "x-ms-meta-a-b",
                                                        "x-ms-meta-a_b", "x-ms-meta-abc", "x-ms-meta-a"]),
        ("symbols: . ^ _ ` | ~ then + then digits then letters",
         ["x-ms-meta-a0", "x-ms-meta-a+", "x-ms-meta-a~", "x-ms-meta-a.", "x-ms-meta-a_", "x-ms-meta-aa"]),
        ("apostrophe before hyphen at the same position", ["x-ms-meta-a-b", "x-ms-meta-a'b", "x-ms-meta-ab"]),
        ("SDK-sent names agree with byte order", ["x-ms-version", "x-ms-date", "x-ms-client-request-id",
                                                   "x-ms-blob-type", "x-ms-blob-content-type", "x-ms-range",
                                                   "x-ms-blob-cache-control", "x-ms-access-tier"]),
    ]
    examples = []
    for title, names in example_sets:
        azure_order = sdk_sorted(names)
        assert azure_order == sorted(names, key=azure_collation_key)
        examples.append({
            "title": title,
            "azure_order": azure_order,
            "byte_order": sorted(names),
            "differs": azure_order != sorted(names),
        })
    return {
        "applies_to": "names of canonicalized x-ms-* headers (after lower-casing), SharedKey and SharedKeyLite",
        "rule": [
            "Lower-case every name first.",
            "Level 1: drop every '-' and \"'\" from both names; compare what remains character by character "
            "using this order (first = smallest): " + PRIMARY_ORDER + " ; a name that is a proper prefix of the "
            "other at this level sorts first.",
            "Level 2 (only when level 1 is equal): walk the two ORIGINAL lower-cased names from index 0 in "
            "lock-step. At the first index where their classes differ, decide: a character that is neither '-' "
            "nor \"'\" (class N) sorts before \"'\", which sorts before '-'; a name that has ended sorts before "
            "one that still has '-' or \"'\" at that index.",
            "Equivalent sort key: (tuple(rank[c] for c in name if c in PRIMARY_ORDER), "
            "tuple({\"'\":1,'-':2}.get(c,0) for c in name)), compared lexicographically, shorter tuple first.",
            "Characters outside PRIMARY_ORDER and not '-' or \"'\" (e.g. '\"(),/:;<=>?@[\\]{} ') have no weight at "
            "any level; none of them is legal in an HTTP header name, so a verifier can reject such names.",
        ],
        "primary_order": PRIMARY_ORDER,
        "source": "azure-storage-blob 12.31.1 azure/storage/blob/_shared/authentication.py compare() "
                  "(two weight tables: ASCII primary weights with '-' and \"'\" zero, and a second table "
                  "giving only \"'\" and '-' a weight); matches the live-service order in PR #33951. This is "
                  "the Windows/.NET culture-sensitive 'word sort' that the service uses; .NET SDK sorts with "
                  "CultureInfo('en-US').",
        "docs_say": "Microsoft's 'Authorize with Shared Key' page, CanonicalizedHeaders step 3: 'Sort the "
                    "headers lexicographically by header name, in ascending order. Each header may appear only "
                    "once in the string.' with a note 'Lexicographical ordering may not always coincide with "
                    "conventional alphabetical ordering.' It does not give the collation.",
        "examples": examples,
        "query_parameters": {
            "sdk": "Canonicalized-resource query parameters are NOT sorted with this collation. The Python SDK "
                   "parses the query into a dict (a repeated name keeps its LAST value), sorts (name, value) "
                   "pairs by Python code-point order of the name AS SENT (before lower-casing), then emits "
                   "'\\n' + name.lower() + ':' + urllib.parse.unquote(value). The name is not percent-decoded, "
                   "the value is ('+' stays '+'). .NET does the same ordinal-on-raw-name sort.",
            "docs": "Lower-case names, sort lexicographically by name, URL-decode names and values, "
                    "'name:value' lines each preceded by '\\n'; a repeated name gives one line with its values "
                    "sorted and comma-joined.",
            "in_practice": "Blob API query names are lower-case ASCII letters, so code-point, case-insensitive "
                           "and Azure collation orders all agree; repeated names only come from hand-made "
                           "URLs.",
        },
    }


# --------------------------------------------------------------------------

LAYOUTS = {
    "SharedKey": "VERB\\n Content-Encoding\\n Content-Language\\n Content-Length(empty if 0)\\n Content-MD5\\n "
                 "Content-Type\\n Date\\n If-Modified-Since\\n If-Match\\n If-None-Match\\n If-Unmodified-Since\\n "
                 "Range\\n CanonicalizedHeaders(each 'name:value\\n') CanonicalizedResource('/'+account+raw "
                 "path, then '\\nname:value' per query parameter)",
    "SharedKeyLite": "VERB\\n Content-MD5\\n Content-Type\\n Date(empty if x-ms-date present)\\n "
                     "CanonicalizedHeaders CanonicalizedResource('/'+account+raw path [+ '?comp='+value])",
    "service-2020-12-06": "\\n".join(SERVICE_LAYOUT_FIELDS["service-2020-12-06"]) + "  (no trailing newline)",
    "service-2018-11-09": "\\n".join(SERVICE_LAYOUT_FIELDS["service-2018-11-09"]) + "  (no trailing newline)",
    "service-2015-04-05": "\\n".join(SERVICE_LAYOUT_FIELDS["service-2015-04-05"]) + "  (no trailing newline)",
    "account-2020-12-06": "".join(f + "\\n" for f in ACCOUNT_LAYOUT_FIELDS["account-2020-12-06"])
                          + "  (every field, the last included, followed by \\n)",
    "account-2015-04-05": "".join(f + "\\n" for f in ACCOUNT_LAYOUT_FIELDS["account-2015-04-05"])
                          + "  (every field, the last included, followed by \\n)",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crosscheck-12-5", metavar="PYTHON",
                    help="python of a venv with azure-storage-blob==12.5.0 (+six)")
    ap.add_argument("--crosscheck-1-5", metavar="PYTHON", help="python of a venv with azure-storage-blob==1.5.0")
    ap.add_argument("--probe-azurite", metavar="HOST:PORT",
                    help="after writing, send every vector to a running Azurite and compare with the "
                         "recorded azurite_3_35_0 observations (prints only)")
    ap.add_argument("--allow-other-sdk", action="store_true")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()

    sdk_version = azure.storage.blob.__version__
    if sdk_version != EXPECTED_SDK and not args.allow_other_sdk:
        sys.exit(f"need azure-storage-blob=={EXPECTED_SDK}, found {sdk_version}")
    from azure.storage.blob._shared.constants import X_MS_VERSION

    sk = shared_key_vectors()
    skl = shared_key_lite_vectors()
    sas = sas_vectors()
    if args.crosscheck_12_5 or args.crosscheck_1_5:
        n = crosscheck(args.crosscheck_12_5, args.crosscheck_1_5, sas)
        print(f"cross-checked {n} derived-from-docs SAS vectors", file=sys.stderr)

    doc = {
        "generator": "auth/tests/vectors/gen_azure.py",
        "sdk": {
            "package": "azure-storage-blob", "version": sdk_version,
            "azure_core": azure.core.__version__, "default_sv": X_MS_VERSION,
        },
        "accounts": [
            {"name": EMU_ACCOUNT, "key": EMU_KEY, "note": "storage emulator well-known account"},
            {"name": OTHER_ACCOUNT, "key": OTHER_KEY, "note": "made up: base64(sha512('cistern-test-account-key'))"},
        ],
        "conventions": [
            "source 'sdk-client': a real BlobServiceClient/BlobClient call built the request (captured before the "
            "network; x-ms-date, x-ms-client-request-id and User-Agent then pinned) and the SDK's "
            "SharedKeyCredentialPolicy signed it. 'sdk-policy': hand-built request, signed by the same policy. "
            "'sdk': SAS produced by the SDK. 'derived-from-docs': computed by Microsoft's documented layout.",
            "path is the request path exactly as sent (percent-encoded); query is the list of [name, value] as "
            "sent (split on '&' then the first '=', nothing decoded); headers is the list of [name, value] as "
            "sent, in order.",
            "string_to_sign/authorization are the SDK's. When a vector has service_string_to_sign, the SDK "
            "deviates from the documented service behaviour (see divergence): a verifier that mimics Azure "
            "must accept service_authorization. also_valid lists further strings a lenient verifier should "
            "accept.",
            "parts splits the SDK's string_to_sign: verb, the 11 standard header lines, canonicalized headers, "
            "canonicalized resource.",
            "SAS: token is the query string the SDK returned (values percent-encoded with Python quote(), "
            "safe='/'); fields are the decoded values; string_to_sign is the SDK's (sts_hook) or the "
            "documented layout; signature = base64(HMAC-SHA256(base64decode(key), UTF-8 string_to_sign)). "
            "request shows how a client would use it (host- and path-style); for sr=bs / sr=bv the snapshot "
            "or version id comes from the request's own 'snapshot' / 'versionid' parameter.",
        ],
        "layouts": LAYOUTS,
        "collation": collation_section(),
        "shared_key": sk,
        "shared_key_lite": skl,
        "sas": sas,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {args.out}: {len(sk)} SharedKey, {len(skl)} SharedKeyLite, {len(sas)} SAS vectors",
          file=sys.stderr)
    if args.probe_azurite:
        probe_azurite(doc, args.probe_azurite)


if __name__ == "__main__":
    main()
