//! Shared Key as the Blob front checks it: the `Authorization` parser, key decoding and the
//! string-to-sign over arbitrary requests; what Cistern's signer produces its verifier accepts
//! (both flavours), and a different key is refused.
#![no_main]

use cistern_auth::sharedkey::{self, Request, Scheme};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    header: &'a str,
    key: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

fuzz_target!(|i: Input<'_>| {
    if let Some(a) = sharedkey::parse_authorization(i.header) {
        assert!(!a.account.is_empty() && !a.signature.is_empty());
    }
    let _ = sharedkey::decode_key(i.key);
    let mut names: Vec<&str> = i.headers.iter().map(|(k, _)| *k).collect();
    names.sort_by(|a, b| sharedkey::azure_cmp(a, b));
    let req = Request {
        method: i.method,
        account: "acct",
        raw_path: i.path,
        raw_query: i.query,
        headers: &i.headers,
    };
    let key = b"fuzzing-account-key".to_vec();
    for scheme in [Scheme::SharedKey, Scheme::SharedKeyLite] {
        let header = sharedkey::authorization(&req, scheme, &key);
        let a = sharedkey::parse_authorization(&header).expect("our own header parses");
        assert_eq!(a.scheme, scheme);
        assert!(sharedkey::verify(
            &req,
            scheme,
            a.signature,
            std::slice::from_ref(&key)
        ));
        assert!(!sharedkey::verify(
            &req,
            scheme,
            a.signature,
            &[b"other".to_vec()]
        ));
    }
});
