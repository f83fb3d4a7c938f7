//! SigV4 as the S3 front verifies it: the strict `Authorization` header and presigned-query
//! parsers on arbitrary text, and agreement between Cistern's signer and its verifier for
//! arbitrary paths, queries, headers, scopes and times.
#![no_main]

use cistern_auth::sigv4::{self, Credentials, Inbound, Request};
use cistern_auth::Secret;
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    header: &'a str,
    query: &'a str,
    date: &'a str,
    path: &'a str,
    params: Vec<(&'a str, &'a str)>,
    range: &'a str,
    region: &'a str,
    secs: u32,
    expires: u32,
}

fn simple(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fuzz_target!(|i: Input<'_>| {
    // Arbitrary text: the parsers return None or a consistent view, never panic.
    if let Some(a) = sigv4::parse_authorization(i.header) {
        assert_eq!(a.signature.len(), 64);
        let key = sigv4::signing_key(&Secret::new("s"), a.date, a.region, a.service);
        let values: Vec<&str> = a.signed_headers.split(';').map(|_| "v").collect();
        let req = Inbound {
            method: "GET",
            encoded_path: i.path,
            canonical_query: i.query,
            header_values: &values,
            payload_sha256: "UNSIGNED-PAYLOAD",
            amz_date: i.date,
        };
        let _ = sigv4::verify(&a, &key, &req);
    }
    if let Some(p) = sigv4::parse_presigned(i.query) {
        assert!(p.expires <= sigv4::MAX_PRESIGNED_EXPIRES);
        let _ = p.valid_at(i64::from(i.secs));
        let _ = p.authorization();
    }
    let _ = sigv4::parse_amz_date(i.date);

    // What Cistern signs, Cistern verifies.
    let region = if simple(i.region) {
        i.region
    } else {
        "us-east-1"
    };
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("secret"),
        region: region.into(),
        service: "s3".into(),
    };
    let time = time::OffsetDateTime::from_unix_timestamp(i64::from(i.secs)).expect("u32 seconds");
    let path = format!("/{}", sigv4::uri_encode(i.path, true));
    let query: Vec<(String, String)> = i
        .params
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let range = i.range.trim();
    let headers: Vec<(&str, &str)> = if range.is_empty() || range.contains(['\r', '\n', '\0']) {
        vec![]
    } else {
        vec![("range", range)]
    };
    let req = Request {
        method: "GET",
        host: "cistern.test:9000",
        encoded_path: &path,
        query: &query,
        headers: &headers,
        payload_sha256: "UNSIGNED-PAYLOAD",
        time,
    };
    let key = sigv4::signing_key(
        &creds.secret_access_key,
        &sigv4::amz_date(time)[..8],
        region,
        "s3",
    );
    let sig = sigv4::sign(&req, &creds);
    let auth = sigv4::parse_authorization(&sig.authorization).expect("our own header parses");
    let mut canonical: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (sigv4::uri_encode(k, false), sigv4::uri_encode(v, false)))
        .collect();
    canonical.sort();
    let canonical = canonical
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    // Signed headers in sorted order: host, range?, x-amz-content-sha256, x-amz-date.
    let mut values = vec!["cistern.test:9000"];
    let normalized;
    if let Some((_, r)) = headers.first() {
        normalized = r.split_whitespace().collect::<Vec<_>>().join(" ");
        values.push(&normalized);
    }
    values.extend(["UNSIGNED-PAYLOAD", sig.amz_date.as_str()]);
    let inbound = Inbound {
        method: "GET",
        encoded_path: &path,
        canonical_query: &canonical,
        header_values: &values,
        payload_sha256: "UNSIGNED-PAYLOAD",
        amz_date: &sig.amz_date,
    };
    assert!(sigv4::verify(&auth, &key, &inbound), "{sig:?}");

    if query.is_empty() {
        let expires = i.expires % sigv4::MAX_PRESIGNED_EXPIRES + 1;
        let url = sigv4::presign(&req, &creds, expires);
        let p = sigv4::parse_presigned(&url).expect("our own presigned URL parses");
        assert!(p.valid_at(i64::from(i.secs)));
        let auth = p.authorization().expect("its scope parses");
        let inbound = Inbound {
            method: "GET",
            encoded_path: &path,
            canonical_query: p.canonical_query(),
            header_values: &["cistern.test:9000"],
            payload_sha256: "UNSIGNED-PAYLOAD",
            amz_date: p.amz_date,
        };
        assert!(sigv4::verify(&auth, &key, &inbound), "{url}");
    }
});
