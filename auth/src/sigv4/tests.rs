use super::*;

fn example_creds() -> Credentials {
    Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1".into(),
        service: "s3".into(),
    }
}

/// Our signature of AWS's published example "GET Object" from the S3 SigV4 documentation
/// (Authenticating Requests: Using the Authorization Header).
fn get_object_example() -> Signature {
    sign(
        &Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            encoded_path: "/test.txt",
            query: &[],
            headers: &[("Range", "bytes=0-9")],
            payload_sha256: EMPTY_SHA256,
            time: time::macros::datetime!(2013-05-24 00:00:00 UTC),
        },
        &example_creds(),
    )
}

#[test]
fn aws_documentation_get_object_example() {
    let sig = get_object_example();
    assert_eq!(sig.amz_date, "20130524T000000Z");
    assert_eq!(
        sig.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
}

/// AWS's published example "GET Bucket (List Objects)" with query parameters.
#[test]
fn aws_documentation_list_objects_example() {
    let t = time::macros::datetime!(2013-05-24 00:00:00 UTC);
    let sig = sign(
        &Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            encoded_path: "/",
            query: &[
                ("max-keys".into(), "2".into()),
                ("prefix".into(), "J".into()),
            ],
            headers: &[],
            payload_sha256: EMPTY_SHA256,
            time: t,
        },
        &example_creds(),
    );
    assert!(sig
        .authorization
        .ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
}

/// Our verifier accepts what our signer (checked against AWS's examples above) signs, and
/// nothing that differs in any signed part.
#[test]
fn verify_accepts_exactly_what_was_signed() {
    let creds = example_creds();
    let sig = get_object_example();
    let auth = parse_authorization(&sig.authorization).expect("parses");
    assert_eq!(
        (auth.access_key, auth.date, auth.region, auth.service),
        ("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3")
    );
    assert_eq!(
        auth.signed_headers,
        "host;range;x-amz-content-sha256;x-amz-date"
    );
    let values = [
        "examplebucket.s3.amazonaws.com",
        "bytes=0-9",
        EMPTY_SHA256,
        "20130524T000000Z",
    ];
    let inbound = |path: &'static str, values: &'static [&'static str]| Inbound {
        method: "GET",
        encoded_path: path,
        canonical_query: "",
        header_values: values,
        payload_sha256: EMPTY_SHA256,
        amz_date: "20130524T000000Z",
    };
    let good: &'static [&'static str] = Box::leak(Box::new(values));
    let key = |secret: &Secret| signing_key(secret, auth.date, auth.region, auth.service);
    let k = key(&creds.secret_access_key);
    assert!(verify(&auth, &k, &inbound("/test.txt", good)));
    assert!(!verify(&auth, &k, &inbound("/test.txx", good)));
    assert!(!verify(
        &auth,
        &key(&Secret::new("another")),
        &inbound("/test.txt", good)
    ));
    let other_range: &'static [&'static str] = Box::leak(Box::new([
        "examplebucket.s3.amazonaws.com",
        "bytes=0-99",
        EMPTY_SHA256,
        "20130524T000000Z",
    ]));
    assert!(!verify(&auth, &k, &inbound("/test.txt", other_range)));
    assert!(!verify(&auth, &k, &inbound("/test.txt", &good[..3])));
    // Values are compared as SigV4 normalizes them (trimmed, inner runs of spaces as one).
    let spaced: &'static [&'static str] = Box::leak(Box::new([
        " examplebucket.s3.amazonaws.com",
        "bytes=0-9\t ",
        EMPTY_SHA256,
        "20130524T000000Z",
    ]));
    assert!(verify(&auth, &k, &inbound("/test.txt", spaced)));
    let split: &'static [&'static str] = Box::leak(Box::new([
        "examplebucket.s3.amazonaws.com",
        "bytes=0 -9",
        EMPTY_SHA256,
        "20130524T000000Z",
    ]));
    assert!(!verify(&auth, &k, &inbound("/test.txt", split)));
}

/// AWS's published presigned-URL example (S3 SigV4 documentation, "Authenticating
/// Requests: Using Query Parameters"), signed by [`presign`] and verified back.
#[test]
fn aws_documentation_presigned_url_example() {
    let req = Request {
        method: "GET",
        host: "examplebucket.s3.amazonaws.com",
        encoded_path: "/test.txt",
        query: &[],
        headers: &[],
        payload_sha256: "UNSIGNED-PAYLOAD",
        time: time::macros::datetime!(2013-05-24 00:00:00 UTC),
    };
    let q = presign(&req, &example_creds(), 86_400);
    assert_eq!(
        q,
        "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
    let p = parse_presigned(&q).expect("parses");
    let auth = p.authorization().expect("scope");
    assert_eq!(
        (auth.access_key, auth.date, auth.region, auth.service),
        ("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3")
    );
    assert_eq!(p.expires, 86_400);
    let k = signing_key(
        &example_creds().secret_access_key,
        auth.date,
        auth.region,
        auth.service,
    );
    let inbound = |path, query| Inbound {
        method: "GET",
        encoded_path: path,
        canonical_query: query,
        header_values: &["examplebucket.s3.amazonaws.com"],
        payload_sha256: "UNSIGNED-PAYLOAD",
        amz_date: p.amz_date,
    };
    assert!(verify(
        &auth,
        &k,
        &inbound("/test.txt", p.canonical_query())
    ));
    assert!(!verify(
        &auth,
        &k,
        &inbound("/test.txx", p.canonical_query())
    ));
    let longer = p.canonical_query().replace("86400", "86401");
    assert!(!verify(&auth, &k, &inbound("/test.txt", &longer)));
    // Valid from 15 minutes before its time to the end of its 24 hours, not after.
    let t = p.signed_at;
    assert!(p.valid_at(t) && p.valid_at(t - 900) && p.valid_at(t + 86_400));
    assert!(!p.valid_at(t - 901) && !p.valid_at(t + 86_401));
    // The same parameters in another order mean the same canonical query.
    let mut pairs: Vec<&str> = q.split('&').collect();
    pairs.reverse();
    let reordered = pairs.join("&");
    let r = parse_presigned(&reordered).expect("any order");
    assert_eq!(r.canonical_query(), p.canonical_query());
}

#[test]
fn only_plain_presigned_queries_parse() {
    let good = presign(
        &Request {
            method: "GET",
            host: "h",
            encoded_path: "/b/k",
            query: &[],
            headers: &[],
            payload_sha256: "UNSIGNED-PAYLOAD",
            time: time::macros::datetime!(2013-05-24 00:00:00 UTC),
        },
        &example_creds(),
        3600,
    );
    assert!(parse_presigned(&good).is_some());
    let week = good.replace("X-Amz-Expires=3600", "X-Amz-Expires=604800");
    assert!(parse_presigned(&week).is_some());
    for bad in [
        format!("{good}&response-content-type=text%2Fplain"),
        format!("{good}&x-id=GetObject"),
        format!("{good}&X-Amz-Date=20130524T000000Z"),
        format!("{good}&X-Amz-Security-Token=t"),
        good.replace("X-Amz-Expires=3600", "X-Amz-Expires=604801"),
        good.replace("X-Amz-Expires=3600", "X-Amz-Expires=-1"),
        good.replace("X-Amz-Expires=3600", "X-Amz-Expires="),
        good.replace("%2F", "/"),
        good.replace("%2F", "%2f"),
        good.replace("HMAC-SHA256", "HMAC-SHA1"),
        good.replace("X-Amz-Date=20130524T", "X-Amz-Date=20130525T"),
        good.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130524"),
        good.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=Host"),
        good.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders"),
        good.replace("X-Amz-Signature=", "X-Amz-Signature=A"),
        good.replace("X-Amz-Signature", "x-amz-signature"),
        good.replace("X-Amz-Algorithm=", "X-Amz-Algorithm=%41"),
    ] {
        assert!(parse_presigned(&bad).is_none(), "{bad}");
    }
}

#[test]
fn only_well_formed_v4_authorizations_parse() {
    let ok = "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, \
                  SignedHeaders=host;x-amz-date, Signature=";
    let hex64 = "a".repeat(64);
    assert!(parse_authorization(&format!("{ok}{hex64}")).is_some());
    for bad in [
            "AWS AK:sig".to_string(),
            format!("{ok}{}", "a".repeat(63)),
            format!("{ok}{}", "g".repeat(64)),
            format!("{ok}{hex64}, Signature={hex64}"),
            format!("{ok}{}", "A".repeat(64)),
            format!("AWS4-HMAC-SHA256 Signature={hex64}, Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request , SignedHeaders=host, Signature={hex64}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/x, SignedHeaders=host, Signature={hex64}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date;host, Signature={hex64}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=Host, Signature={hex64}"),
        ] {
            assert!(parse_authorization(&bad).is_none(), "{bad}");
        }
}

#[test]
fn uri_encoding_follows_sigv4_rules() {
    assert_eq!(uri_encode("a b+c/d~e", true), "a%20b%2Bc/d~e");
    assert_eq!(uri_encode("a/b", false), "a%2Fb");
    assert_eq!(uri_encode("é", true), "%C3%A9");
}
