#!/usr/bin/env python3
"""Pre-formatted GET requests for the signed benchmark rows (and bench/callgrind).

    sigv4_requests.py MODE HOST PREFIX COUNT OBJ_SIZE RANGE_SIZE N SEED > requests.tsv

MODE is `anon` (unsigned), `header` (SigV4 `Authorization` header signing host, range,
x-amz-content-sha256 and x-amz-date, as botocore signs a ranged GET) or `presigned` (a SigV4
presigned URL signing `host`, with the Range header sent alongside, unsigned, as a client that
fetches ranges of one presigned URL sends it). Each of the N lines is one request: a random
object `PREFIX%03d` of COUNT and a random RANGE_SIZE-aligned range (no Range when 0), written
as `PATH<TAB>Name: value<TAB>…` for requests.lua. Every request carries its own signature, so
the server verifies a different one each time.

Credentials come from the environment: BENCH_AK, BENCH_SECRET, BENCH_REGION (default
us-east-1); BENCH_EXPIRES (presigned, default 3600 s); BENCH_METHOD (presigned: the method
signed, default GET; bench/kv presigns PUTs). Signatures are made at the current time:
header-signed requests stay valid for 15 minutes (S3's clock-skew window), so make the file
just before the run. Standard library only; the signer follows AWS's SigV4 documentation
(checked below against its published GET Object example).
"""

import hashlib
import hmac
import os
import random
import sys
import time
import urllib.parse

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, "s3")
    return _hmac(k, "aws4_request")


def enc(s, keep_slash):
    return urllib.parse.quote(s, safe="-_.~" + ("/" if keep_slash else ""))


def signature(key, amz_date, scope, canonical):
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def header_signed(ak, key, region, host, path, headers, amz_date):
    """Authorization, x-amz-date and x-amz-content-sha256 for a GET of `path` with `headers`."""
    date = amz_date[:8]
    hs = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    hs.update({"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date})
    names = sorted(hs)
    canonical = "\n".join(
        ["GET", path, ""] + [f"{n}:{hs[n]}" for n in names] + ["", ";".join(names), EMPTY_SHA256]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    sig = signature(key, amz_date, scope, canonical)
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}",
        "x-amz-date": amz_date,
        "x-amz-content-sha256": EMPTY_SHA256,
    }


def presigned_path(ak, key, region, host, path, amz_date, expires, method="GET"):
    """`path?X-Amz-…` signing `host` only, with an unsigned payload, for `method`."""
    date = amz_date[:8]
    scope = f"{date}/{region}/s3/aws4_request"
    q = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{ak}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    cq = "&".join(f"{enc(k, False)}={enc(v, False)}" for k, v in sorted(q.items()))
    canonical = "\n".join([method, path, cq, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])
    return f"{path}?{cq}&X-Amz-Signature={signature(key, amz_date, scope, canonical)}"


def _self_check():
    # AWS's published example (S3 SigV4 documentation, "GET Object").
    key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1")
    h = header_signed("AKIAIOSFODNN7EXAMPLE", key, "us-east-1", "examplebucket.s3.amazonaws.com",
                      "/test.txt", {"Range": "bytes=0-9"}, "20130524T000000Z")
    want = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    assert h["Authorization"].endswith(want), h
    # AWS's published presigned-URL example (S3 SigV4 documentation, "Query String Auth").
    p = presigned_path("AKIAIOSFODNN7EXAMPLE", key, "us-east-1", "examplebucket.s3.amazonaws.com",
                       "/test.txt", "20130524T000000Z", 86400)
    want = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    assert p.endswith(want), p


def main(argv):
    _self_check()
    mode, host, prefix = argv[1], argv[2], argv[3]
    count, obj_size, range_size, n, seed = (int(x) for x in argv[4:9])
    ak = os.environ.get("BENCH_AK", "")
    secret = os.environ.get("BENCH_SECRET", "")
    region = os.environ.get("BENCH_REGION", "us-east-1")
    expires = int(os.environ.get("BENCH_EXPIRES", "3600"))
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    key = signing_key(secret, amz_date[:8], region) if mode != "anon" else b""
    rnd = random.Random(seed * 7919)
    slots = obj_size // range_size if range_size > 0 else 1
    out = sys.stdout
    for _ in range(n):
        path = f"{prefix}{rnd.randrange(count):03d}"
        headers = {}
        if range_size > 0:
            off = rnd.randrange(slots) * range_size
            headers["Range"] = f"bytes={off}-{off + range_size - 1}"
        if mode == "header":
            headers.update(header_signed(ak, key, region, host, path, headers, amz_date))
        elif mode == "presigned":
            path = presigned_path(ak, key, region, host, path, amz_date, expires,
                                  os.environ.get("BENCH_METHOD", "GET"))
        elif mode != "anon":
            sys.exit(f"unknown mode {mode}")
        out.write("\t".join([path] + [f"{k}: {v}" for k, v in headers.items()]) + "\n")


if __name__ == "__main__":
    main(sys.argv)
