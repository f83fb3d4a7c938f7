//! Authentication of peer traffic between Cistern nodes: HMAC-SHA256 with the cluster secret.
//!
//! A request carries `x-cistern-peer: v1 <unix seconds> <hex mac>`, the MAC over the method,
//! the path with its query, the time and the SHA-256 of its body; a receiver accepts it within
//! [`MAX_SKEW_SECS`] of its own clock. The answer carries a MAC over the request's MAC, its
//! status, the SHA-256 of its body and the answer headers that say what the body is, so a
//! front knows the bytes came, unaltered, from a member of its own cluster (a recycled pod
//! address now held by another cluster's node is refused, not trusted). Traffic is not
//! encrypted, and a captured request can be replayed within the skew window (it can only
//! repeat what it asked: no bytes can be changed).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Secret;

/// The header carrying the MAC, on requests and answers.
pub const HEADER: &str = "x-cistern-peer";

/// How far a request's time may be from the receiver's clock.
pub const MAX_SKEW_SECS: u64 = 300;

/// The shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a peer request or answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    /// No `x-cistern-peer` header.
    #[error("missing peer signature")]
    Missing,
    /// The header is not `v1 <secs> <hex>`.
    #[error("malformed peer signature")]
    Malformed,
    /// The time is too far from ours.
    #[error("peer signature expired or from the future")]
    Skewed,
    /// The MAC does not match.
    #[error("peer signature does not match")]
    Mismatch,
}

fn mac(secret: &Secret, parts: &[&[u8]]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut m = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The SHA-256 of a body, as the MACs cover it.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    Sha256::digest(body).into()
}

fn request_mac(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    secs: u64,
    body: &[u8; 32],
) -> [u8; 32] {
    mac(
        secret,
        &[
            b"cistern-peer-v2 request",
            method.as_bytes(),
            path_and_query.as_bytes(),
            secs.to_string().as_bytes(),
            body,
        ],
    )
}

/// The header value for a request sent at `now_secs` with a body of digest `body`
/// ([`body_digest`]), and its MAC (to check the answer with).
pub fn sign_request(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    now_secs: u64,
    body: &[u8; 32],
) -> (String, [u8; 32]) {
    let m = request_mac(secret, method, path_and_query, now_secs, body);
    (format!("v1 {now_secs} {}", hex::encode(m)), m)
}

/// Checks a request's header value against its body's digest. On success returns the request
/// MAC, which the answer's MAC binds to.
pub fn verify_request(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    header: Option<&str>,
    now_secs: u64,
    body: &[u8; 32],
) -> Result<[u8; 32], PeerAuthError> {
    let header = header.ok_or(PeerAuthError::Missing)?;
    let mut it = header.split(' ');
    let (Some("v1"), Some(secs), Some(given), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(PeerAuthError::Malformed);
    };
    let secs: u64 = secs.parse().map_err(|_| PeerAuthError::Malformed)?;
    let given = hex::decode(given).map_err(|_| PeerAuthError::Malformed)?;
    if secs.abs_diff(now_secs) > MAX_SKEW_SECS {
        return Err(PeerAuthError::Skewed);
    }
    let want = request_mac(secret, method, path_and_query, secs, body);
    if bool::from(want.as_slice().ct_eq(&given)) {
        Ok(want)
    } else {
        Err(PeerAuthError::Mismatch)
    }
}

fn answer_mac(
    secret: &Secret,
    request: &[u8; 32],
    status: u16,
    body: &[u8; 32],
    described: &str,
) -> [u8; 32] {
    mac(
        secret,
        &[
            b"cistern-peer-v2 answer",
            request,
            &status.to_be_bytes(),
            body,
            described.as_bytes(),
        ],
    )
}

/// The header value for an answer to the request whose MAC is `request`: its status, its
/// body's digest, and `described` — the answer headers that say what the body is, in a fixed
/// order (the receiver rebuilds the same string from what it got).
pub fn sign_answer(
    secret: &Secret,
    request: &[u8; 32],
    status: u16,
    body: &[u8; 32],
    described: &str,
) -> String {
    hex::encode(answer_mac(secret, request, status, body, described))
}

/// Checks an answer's header value.
pub fn verify_answer(
    secret: &Secret,
    request: &[u8; 32],
    status: u16,
    body: &[u8; 32],
    described: &str,
    header: Option<&str>,
) -> Result<(), PeerAuthError> {
    let given =
        hex::decode(header.ok_or(PeerAuthError::Missing)?).map_err(|_| PeerAuthError::Malformed)?;
    let want = answer_mac(secret, request, status, body, described);
    if bool::from(want.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(PeerAuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Secret {
        Secret::new(v)
    }

    #[test]
    fn requests_verify_only_with_the_same_secret_path_time_and_body() {
        let k = s("0123456789abcdef0123");
        let empty = body_digest(b"");
        let p = "/v1/chunk?b=x&i=3";
        let (h, sent) = sign_request(&k, "GET", p, 1_000_000, &empty);
        let m = verify_request(&k, "GET", p, Some(&h), 1_000_100, &empty).expect("ok");
        assert_eq!(sent, m);
        let bad = |m: &str, p: &str, h: Option<&str>, now: u64, k: &Secret, b: &[u8; 32]| {
            verify_request(k, m, p, h, now, b).expect_err("refused")
        };
        assert_eq!(
            bad("GET", p, None, 1_000_000, &k, &empty),
            PeerAuthError::Missing
        );
        assert_eq!(
            bad("PUT", p, Some(&h), 1_000_000, &k, &empty),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad("GET", "/v1/chunk?b=x&i=4", Some(&h), 1_000_000, &k, &empty),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad(
                "GET",
                p,
                Some(&h),
                1_000_000,
                &s("another secret!!"),
                &empty
            ),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad(
                "GET",
                p,
                Some(&h),
                1_000_000,
                &k,
                &body_digest(b"other bytes")
            ),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad("GET", p, Some(&h), 1_000_400, &k, &empty),
            PeerAuthError::Skewed
        );
        assert_eq!(
            bad("GET", p, Some("v1 x y"), 1_000_000, &k, &empty),
            PeerAuthError::Malformed
        );
        assert_eq!(
            bad("GET", p, Some("v2 1 00"), 1_000_000, &k, &empty),
            PeerAuthError::Malformed
        );
        // The time is inside the MAC: changing it breaks the signature.
        let forged = h.replacen("1000000", "1000300", 1);
        assert_eq!(
            bad("GET", p, Some(&forged), 1_000_300, &k, &empty),
            PeerAuthError::Mismatch
        );
    }

    #[test]
    fn answers_bind_request_status_body_and_description() {
        let k = s("0123456789abcdef0123");
        let empty = body_digest(b"");
        let req = verify_request(
            &k,
            "GET",
            "/v1/meta",
            Some(&sign_request(&k, "GET", "/v1/meta", 5, &empty).0),
            5,
            &empty,
        )
        .expect("ok");
        let body = body_digest(b"chunk bytes");
        let a = sign_answer(&k, &req, 200, &body, "memory|3|");
        verify_answer(&k, &req, 200, &body, "memory|3|", Some(&a)).expect("ok");
        assert!(verify_answer(
            &k,
            &req,
            200,
            &body_digest(b"chunk bytez"),
            "memory|3|",
            Some(&a)
        )
        .is_err());
        assert!(verify_answer(&k, &req, 200, &body, "memory|4|", Some(&a)).is_err());
        assert!(verify_answer(&k, &req, 404, &body, "memory|3|", Some(&a)).is_err());
        assert!(verify_answer(&k, &[0; 32], 200, &body, "memory|3|", Some(&a)).is_err());
        assert!(verify_answer(
            &s("another secret!!"),
            &req,
            200,
            &body,
            "memory|3|",
            Some(&a)
        )
        .is_err());
        assert!(verify_answer(&k, &req, 200, &body, "memory|3|", None).is_err());
    }
}
