use super::*;

fn names(query: &str) -> Names<'_> {
    Names::parse(query).expect("test query")
}

/// A query string of `pairs`, unescaped.
fn q(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, http::HeaderValue::from_static(v));
    }
    m
}

#[test]
fn relays_what_the_pipeline_has_no_model_of() {
    let none = HeaderMap::new();
    let c = |m: Method, key: &str, query: &[(&str, &str)], hd: &HeaderMap| {
        classify(&m, key, &names(&q(query)), hd, &Placement::default())
    };
    assert_eq!(
        c(Method::PUT, "", &[("policy", "")], &none),
        Some((Permission::Admin, "PutBucketPolicy".into()))
    );
    assert_eq!(
        c(Method::GET, "", &[("versioning", "")], &none),
        Some((Permission::List, "GetBucketVersioning".into()))
    );
    assert_eq!(
        c(Method::PUT, "", &[("object-lock", "")], &none),
        Some((Permission::Admin, "PutBucketObjectLock".into()))
    );
    assert_eq!(
        c(Method::GET, "k", &[("legal-hold", "")], &none),
        Some((Permission::Read, "GetObjectLegalHold".into()))
    );
    assert_eq!(
        c(Method::PUT, "k", &[("acl", "")], &none),
        Some((Permission::Admin, "PutObjectAcl".into()))
    );
    assert_eq!(
        c(Method::GET, "k", &[("versionId", "v1")], &none),
        Some((Permission::Read, "GetObject".into()))
    );
    assert_eq!(
        c(
            Method::PUT,
            "k",
            &[],
            &h(&[("x-amz-server-side-encryption", "AES256")])
        ),
        Some((Permission::Write, "PutObject".into()))
    );
    assert_eq!(
        c(Method::PUT, "k", &[], &h(&[("x-amz-acl", "public-read")])),
        Some((Permission::Admin, "PutObject".into()))
    );
    // What the pipeline serves stays with it.
    for (m, key, query) in [
        (Method::GET, "k", vec![]),
        (Method::PUT, "k", vec![]),
        (Method::GET, "k", vec![("tagging", "")]),
        (Method::GET, "", vec![("list-type", "2")]),
        (Method::GET, "", vec![("versions", "")]),
        (Method::GET, "", vec![("location", "")]),
        (Method::DELETE, "k", vec![("versionId", "v1")]),
        (Method::POST, "", vec![("delete", "")]),
    ] {
        assert_eq!(
            c(m.clone(), key, &query, &none),
            None,
            "{m} {key} {query:?}"
        );
    }
    // A copy with SSE headers stays a CopyObject (its source names an exposed bucket).
    assert_eq!(
        c(
            Method::PUT,
            "k",
            &[],
            &h(&[
                ("x-amz-server-side-encryption", "AES256"),
                ("x-amz-copy-source", "/b/k")
            ])
        ),
        None
    );
}

#[test]
fn over_an_s3_origin_more_is_the_origins() {
    let s3 = Placement {
        s3_origin: true,
        ..Placement::default()
    };
    let home = Placement {
        s3_home: true,
        ..Placement::default()
    };
    let c = |m: Method, key: &str, query: &[(&str, &str)], hd: &HeaderMap, at: &Placement| {
        classify(&m, key, &names(&q(query)), hd, at)
    };
    let none = HeaderMap::new();
    assert_eq!(
        c(Method::PUT, "", &[], &none, &home),
        Some((Permission::Write, "CreateBucket".into()))
    );
    assert_eq!(
        c(
            Method::PUT,
            "",
            &[],
            &h(&[("x-amz-bucket-object-lock-enabled", "true")]),
            &s3
        ),
        Some((Permission::Admin, "CreateBucket".into()))
    );
    // Elsewhere CreateBucket is the pipeline's.
    assert_eq!(c(Method::PUT, "", &[], &none, &Placement::default()), None);
    for hd in [
        h(&[("x-amz-tagging", "a=b")]),
        h(&[("expires", "Thu, 01 Jan 2030 00:00:00 GMT")]),
        h(&[("if-match", "\"e\"")]),
        h(&[("if-none-match", "\"e\"")]),
    ] {
        assert_eq!(
            c(Method::PUT, "k", &[], &hd, &s3),
            Some((Permission::Write, "PutObject".into())),
            "{hd:?}"
        );
        assert_eq!(c(Method::PUT, "k", &[], &hd, &Placement::default()), None);
    }
    assert_eq!(
        c(
            Method::PUT,
            "k",
            &[("uploadId", "u"), ("partNumber", "1")],
            &none,
            &s3
        ),
        Some((Permission::Write, "UploadPart".into()))
    );
    let bypass = h(&[("x-amz-bypass-governance-retention", "true")]);
    assert_eq!(
        c(Method::DELETE, "k", &[("versionId", "v")], &bypass, &s3),
        Some((Permission::Delete, "DeleteObject".into()))
    );
    assert_eq!(
        c(Method::POST, "", &[("delete", "")], &bypass, &s3),
        Some((Permission::Delete, "DeleteObjects".into()))
    );
    assert_eq!(
        c(
            Method::POST,
            "",
            &[("delete", "")],
            &bypass,
            &Placement::default()
        ),
        None
    );
    assert_eq!(
        deleted_keys(
            b"<Delete><Object><Key>a&amp;b</Key></Object><Object><Key>c</Key></Object></Delete>"
        ),
        vec!["a&b".to_string(), "c".to_string()]
    );
    // Create-only stays the pipeline's (it answers it atomically everywhere).
    assert_eq!(
        c(Method::PUT, "k", &[], &h(&[("if-none-match", "*")]), &s3),
        None
    );
    assert_eq!(
        c(
            Method::POST,
            "k",
            &[("uploads", "")],
            &h(&[("x-amz-tagging", "a=b")]),
            &s3
        ),
        Some((Permission::Write, "CreateMultipartUpload".into()))
    );
}

#[test]
fn copy_sources_parse_with_versions() {
    assert_eq!(
        copy_source("/b/a%20b/c?versionId=v%2B1"),
        Some(("b".into(), "a b/c".into(), Some("v+1".into())))
    );
    assert_eq!(copy_source("b/k"), Some(("b".into(), "k".into(), None)));
    assert_eq!(copy_source("b"), None);
    assert_eq!(copy_source("/b/k?other=1"), None);
}

#[test]
fn finds_bucket_and_key_in_either_addressing_style() {
    let hosts = Hosts::new(vec!["s3.example.com".into()]);
    let uri: Uri = "/b/a%20b/c?acl".parse().expect("uri");
    assert_eq!(
        target_of(&hosts, &uri, &h(&[("host", "127.0.0.1:9000")])),
        Some(("b".into(), "a b/c".into()))
    );
    let uri: Uri = "/a%20b?acl".parse().expect("uri");
    assert_eq!(
        target_of(&hosts, &uri, &h(&[("host", "data.s3.example.com")])),
        Some(("data".into(), "a b".into()))
    );
    assert_eq!(
        target_of(&hosts, &"/".parse().expect("uri"), &HeaderMap::new()),
        None
    );
    assert_eq!(
        query_pairs(&"/b?versionId=x%2By&acl".parse().expect("uri")),
        Some(vec![
            ("versionId".to_string(), "x+y".to_string()),
            ("acl".to_string(), String::new())
        ])
    );
    // Names are matched as decoded, values never looked at.
    let n = names("X-Amz-Signature=ab%2F&upload%49d=1&&tagging");
    assert!(has(&n, "uploadId") && has(&n, "tagging") && has(&n, "X-Amz-Signature"));
    assert!(!has(&n, "ab/") && !has(&n, "versionId"));
    assert!(names("").is_empty() && names("&&").is_empty() && !names("acl").is_empty());
    assert!(Names::parse("a%FF=1").is_none(), "not UTF-8");
}
