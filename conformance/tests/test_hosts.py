"""Virtual-hosted addressing: only configured domains carry a bucket in the Host header; any
other host name is path-style, never taken as a bucket."""

from __future__ import annotations

import http.client

import s3util
from conftest import TESTER


def _get(c, host_header: str, path: str) -> s3util.Resp:
    hdrs = s3util.sign_headers("GET", f"http://{host_header}{path}", {}, TESTER)
    conn = http.client.HTTPConnection("127.0.0.1", c.s3_port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        for k, v in hdrs.items():
            if k.lower() != "host":
                conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return s3util.Resp(r.status, r.reason, r.getheaders(), r.read(), None)
    finally:
        conn.close()


def test_virtual_host_under_a_configured_domain(cistern_factory, fs_data):
    c = cistern_factory.with_config("vhost", with_moto=False,
                                    extra='[s3]\nvirtual_host_domains = ["s3.test"]\n')
    port = c.s3_port
    r = _get(c, f"fsb.s3.test:{port}", "/hello.txt")
    assert r.status == 200, r
    assert r.body == fs_data.files["fsb/hello.txt"]
    # The bare domain and unknown host names are path-style.
    r = _get(c, f"s3.test:{port}", "/fsb/hello.txt")
    assert r.status == 200 and r.body == fs_data.files["fsb/hello.txt"], r
    r = _get(c, f"fsb.evil.example:{port}", "/hello.txt")
    assert r.status in (403, 404), r  # bucket "hello.txt"? no: key-less path, never bucket fsb
    assert r.body != fs_data.files["fsb/hello.txt"]
    r = _get(c, f"fsb.evil.example:{port}", "/fsb/hello.txt")
    assert r.status == 200 and r.body == fs_data.files["fsb/hello.txt"], r
