use super::*;

#[test]
fn jwt_expiry_is_read_from_the_payload() {
    use base64::Engine as _;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let t = format!(
        "{}.{}.sig",
        enc("{\"alg\":\"RS256\"}"),
        enc("{\"exp\":1700000000}")
    );
    assert_eq!(
        jwt_expiry(&t),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert_eq!(jwt_expiry("opaque-token"), None);
}

#[test]
fn sas_fields_are_forwarded_and_operation_parameters_are_not() {
    let q: Vec<(String, String)> = [
        ("restype", "container"),
        ("comp", "list"),
        ("sv", "2025-01-05"),
        ("si", "pol"),
        ("sig", "x"),
        ("snapshot", "t"),
        ("rsct", "text/plain"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let names: Vec<String> = sas_pairs(&q).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["sv", "si", "sig", "rsct"]);
}

#[test]
fn dates_within_fifteen_minutes() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut h = HeaderMap::new();
    let at = |t: SystemTime| http::HeaderValue::from_str(&httpdate::fmt_http_date(t)).expect("hv");
    h.insert("x-ms-date", at(now - Duration::from_secs(14 * 60)));
    assert!(check_date(&h, now).is_ok());
    h.insert("x-ms-date", at(now + Duration::from_secs(14 * 60)));
    assert!(check_date(&h, now).is_ok());
    h.insert("x-ms-date", at(now - Duration::from_secs(16 * 60)));
    assert!(check_date(&h, now).is_err());
    h.insert("x-ms-date", at(now + Duration::from_secs(16 * 60)));
    assert!(check_date(&h, now).is_err());
    assert!(check_date(&HeaderMap::new(), now).is_err());
}

#[test]
fn signed_identifiers_parse() {
    let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><SignedIdentifiers>\
<SignedIdentifier><Id>readpol</Id><AccessPolicy><Start>2026-01-01T00:00:00.0000000Z</Start>\
<Expiry>2026-02-01T00:00:00.0000000Z</Expiry><Permission>rl</Permission></AccessPolicy>\
</SignedIdentifier><SignedIdentifier><Id>bare</Id></SignedIdentifier></SignedIdentifiers>";
    assert_eq!(
        parse_signed_identifiers(xml),
        vec![
            (
                "readpol".to_string(),
                "2026-01-01T00:00:00.0000000Z".to_string(),
                "2026-02-01T00:00:00.0000000Z".to_string(),
                "rl".to_string()
            ),
            (
                "bare".to_string(),
                String::new(),
                String::new(),
                String::new()
            ),
        ]
    );
    assert!(parse_signed_identifiers("<SignedIdentifiers />").is_empty());
    assert!(parse_signed_identifiers("not xml").is_empty());
}
