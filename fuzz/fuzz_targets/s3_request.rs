//! Whole S3 requests through the front's s3s path, signed with SigV4 so that they get past
//! authentication: arbitrary methods, keys, query strings (subresources), headers and bodies —
//! XML bodies (DeleteObjects, CompleteMultipartUpload, tagging…) and `aws-chunked` uploads,
//! either framed from arbitrary bytes under a valid seed signature or well formed with valid
//! chunk signatures. No request may get a 500 (but a malformed aws-chunked body: see
//! `s3_call`).
#![no_main]

use cistern_auth::sigv4::{self, Credentials, Request};
use cistern_auth::Secret;
use cistern_gateway::fuzzing::{s3_call, S3_ACCESS_KEY, S3_REGION, S3_SECRET};
use hmac::{Hmac, Mac};
use libfuzzer_sys::{arbitrary, fuzz_target};
use sha2::{Digest, Sha256};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    method: u8,
    bucket: bool,
    key: u8,
    query: Vec<(&'a str, &'a str)>,
    headers: Vec<(&'a str, &'a str)>,
    mode: u8,
    chunk: u16,
    body: &'a [u8],
}

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
/// Headers the harness sets itself.
const OWN: [&str; 8] = [
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "x-amz-decoded-content-length",
];
const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `body` as an aws-chunked stream of `size`-byte chunks, each signed after `seed`.
fn chunked(body: &[u8], size: usize, key: &[u8], date: &str, scope: &str, seed: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = seed.to_string();
    let empty = hex::encode(Sha256::digest(b""));
    let mut pieces: Vec<&[u8]> = body.chunks(size.max(1)).collect();
    pieces.push(&[]);
    for piece in pieces {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{date}\n{scope}\n{prev}\n{empty}\n{}",
            hex::encode(Sha256::digest(piece))
        );
        let sig = hex::encode(hmac(key, sts.as_bytes()));
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
        prev = sig;
    }
    out
}

fuzz_target!(|i: Input<'_>| {
    let method = METHODS[usize::from(i.method) % METHODS.len()];
    let bucket = if i.bucket { "b" } else { "nobucket" };
    let key = match i.key % 10 {
        8 => String::new(),
        9 => "d/k".into(),
        n => format!("k{n}"),
    };
    let path = if key.is_empty() {
        format!("/{bucket}")
    } else {
        format!("/{bucket}/{key}")
    };
    let query: Vec<(String, String)> = i
        .query
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let headers: Vec<(String, String)> = i
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, v)| {
            http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                && http::HeaderValue::from_str(v).is_ok()
                && !OWN.contains(&k.as_str())
        })
        .collect();
    let streaming = i.mode % 4 >= 2;
    let payload = match i.mode % 4 {
        0 => hex::encode(Sha256::digest(i.body)),
        1 => "UNSIGNED-PAYLOAD".to_string(),
        _ => STREAMING.to_string(),
    };
    let decoded_len = i.body.len().to_string();
    let mut signed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if streaming {
        signed.push(("content-encoding", "aws-chunked"));
        signed.push(("x-amz-decoded-content-length", &decoded_len));
    }
    let host = "cistern.fuzz:9000";
    let now = time::OffsetDateTime::now_utc();
    let creds = Credentials {
        access_key_id: S3_ACCESS_KEY.into(),
        secret_access_key: Secret::new(S3_SECRET),
        region: S3_REGION.into(),
        service: "s3".into(),
    };
    let encoded_path = sigv4::uri_encode(&path, true);
    let sig = sigv4::sign(
        &Request {
            method,
            host,
            encoded_path: &encoded_path,
            query: &query,
            headers: &signed,
            payload_sha256: &payload,
            time: now,
        },
        &creds,
    );
    let body = if streaming {
        let date = &sig.amz_date[..8];
        let key = sigv4::signing_key(&creds.secret_access_key, date, S3_REGION, "s3");
        let scope = format!("{date}/{S3_REGION}/s3/aws4_request");
        let seed = sig.authorization.rsplit('=').next().unwrap_or_default();
        if i.mode % 4 == 2 {
            // Arbitrary framing under a valid seed signature: the decoder's parser.
            i.body.to_vec()
        } else {
            let size = usize::from(i.chunk % 8192) + 1;
            chunked(i.body, size, &key, &sig.amz_date, &scope, seed)
        }
    } else {
        i.body.to_vec()
    };
    let mut q = String::new();
    for (k, v) in &query {
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(&sigv4::uri_encode(k, false));
        q.push('=');
        q.push_str(&sigv4::uri_encode(v, false));
    }
    let uri = if q.is_empty() {
        encoded_path.clone()
    } else {
        format!("{encoded_path}?{q}")
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .header("authorization", &sig.authorization)
        .header("x-amz-date", &sig.amz_date)
        .header("x-amz-content-sha256", &payload)
        .header("content-length", body.len().to_string());
    for (k, v) in &signed {
        req = req.header(*k, *v);
    }
    let Ok(req) = req.body(bytes::Bytes::from(body)) else {
        return;
    };
    s3_call(req, i.mode % 4 == 2);
});
