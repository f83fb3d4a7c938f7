//! The peer protocol as a cache node reads it: chunk and metadata queries, error answers, and
//! the request/answer MAC headers (which must refuse everything they did not sign).
#![no_main]

use cistern_auth::{peer, Secret};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    query: &'a str,
    error: &'a [u8],
    header: &'a str,
    body: &'a [u8],
    now: u64,
    status: u16,
}

fuzz_target!(|i: Input<'_>| {
    cistern_gateway::fuzzing::peer_wire(i.query, i.error);
    let secret = Secret::new("a-cluster-secret-of-enough-length");
    let digest = peer::BodyKey::new(&secret).digest(i.body);
    let path = format!("/v1/chunk?{}", i.query);
    // A header someone else wrote never verifies (a guess at a 256-bit MAC aside).
    let forged = peer::verify_request(&secret, "GET", &path, Some(i.header), i.now, &digest);
    assert!(forged.is_err());
    // One Cistern wrote does, for that request and body only.
    let (header, mac) = peer::sign_request(&secret, "GET", &path, i.now, &digest);
    let ok = peer::verify_request(&secret, "GET", &path, Some(&header), i.now, &digest);
    assert_eq!(ok.ok(), Some(mac));
    let other = peer::BodyKey::new(&secret).digest(&[i.body, b"x"].concat());
    assert!(peer::verify_request(&secret, "GET", &path, Some(&header), i.now, &other).is_err());
    let answer = peer::sign_answer(&secret, &mac, i.status, &digest, "mem||");
    assert!(peer::verify_answer(&secret, &mac, i.status, &digest, "mem||", Some(&answer)).is_ok());
    assert!(peer::verify_answer(&secret, &mac, i.status, &digest, "ssd||", Some(&answer)).is_err());
    assert!(peer::verify_answer(&secret, &mac, i.status, &digest, "", Some(i.header)).is_err());
});
