use super::*;

#[test]
fn a_content_md5_must_be_sixteen_bytes_of_base64() {
    let with = |v: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("content-md5", http::HeaderValue::from_str(v).expect("hv"));
        content_md5_is_valid(&h).map_err(|e| e.code().as_str().to_string())
    };
    assert!(content_md5_is_valid(&http::HeaderMap::new()).is_ok());
    assert_eq!(with("XUFAKrxLKna5cZ2REBfFkg=="), Ok(()));
    for bad in [
        "YWJyYWNhZGFicmE=",
        "",
        "AWS HAHAHA",
        "XUFAKrxLKna5cZ2REBfFkg",
    ] {
        assert_eq!(with(bad), Err("InvalidDigest".into()), "{bad:?}");
    }
}

#[test]
fn listings_show_the_origins_owner_or_cisterns() {
    let entry = |key: &str, owner: Option<crate::origin::Owner>| crate::origin::ListEntry {
        key: key.into(),
        size: 1,
        etag: "e".into(),
        last_modified: std::time::SystemTime::UNIX_EPOCH,
        owner,
    };
    let page = ListPage {
        entries: vec![
            entry(
                "a b",
                Some(crate::origin::Owner {
                    id: "origin-id".into(),
                    display_name: Some("origin-name".into()),
                }),
            ),
            entry("c", None),
        ],
        ..Default::default()
    };
    let (objs, _) = objects(&page, true, true);
    assert_eq!(objs[0].key.as_deref(), Some("a%20b"));
    let o = objs[0].owner.as_ref().expect("owner");
    assert_eq!(
        (o.id.as_deref(), o.display_name.as_deref()),
        (Some("origin-id"), Some("origin-name"))
    );
    let o = objs[1].owner.as_ref().expect("owner");
    assert_eq!(
        (o.id.as_deref(), o.display_name.as_deref()),
        (Some(CISTERN_OWNER), Some(CISTERN_OWNER))
    );
    let (objs, _) = objects(&page, false, false);
    assert!(objs.iter().all(|o| o.owner.is_none()));
}
