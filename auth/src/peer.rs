//! Authentication of peer traffic between Cistern nodes: HMAC-SHA256 with the cluster secret.
//!
//! A request carries `x-cistern-peer: v1 <unix seconds> <hex mac>`, the MAC over the method,
//! the path with its query, and the time; a receiver accepts it within [`MAX_SKEW_SECS`] of its
//! own clock. The answer carries a MAC over the request's MAC and the CRC32C of its body, so a
//! front also knows the bytes came from a member of its own cluster (a recycled pod address
//! now held by another cluster's node is refused, not trusted).

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

fn request_mac(secret: &Secret, method: &str, path_and_query: &str, secs: u64) -> [u8; 32] {
    mac(
        secret,
        &[
            b"cistern-peer-v1 request",
            method.as_bytes(),
            path_and_query.as_bytes(),
            secs.to_string().as_bytes(),
        ],
    )
}

/// The header value for a request sent at `now_secs`, and its MAC (to check the answer with).
pub fn sign_request(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    now_secs: u64,
) -> (String, [u8; 32]) {
    let m = request_mac(secret, method, path_and_query, now_secs);
    (format!("v1 {now_secs} {}", hex::encode(m)), m)
}

/// Checks a request's header value. On success returns the request MAC, which the answer's
/// MAC binds to.
pub fn verify_request(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    header: Option<&str>,
    now_secs: u64,
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
    let want = request_mac(secret, method, path_and_query, secs);
    if bool::from(want.as_slice().ct_eq(&given)) {
        Ok(want)
    } else {
        Err(PeerAuthError::Mismatch)
    }
}

/// The header value for an answer to the request whose MAC is `request`, with `body_crc` the
/// CRC32C of the answer's body (0 for no body).
pub fn sign_answer(secret: &Secret, request: &[u8; 32], status: u16, body_crc: u32) -> String {
    hex::encode(mac(
        secret,
        &[
            b"cistern-peer-v1 answer",
            request,
            &status.to_be_bytes(),
            &body_crc.to_be_bytes(),
        ],
    ))
}

/// Checks an answer's header value.
pub fn verify_answer(
    secret: &Secret,
    request: &[u8; 32],
    status: u16,
    body_crc: u32,
    header: Option<&str>,
) -> Result<(), PeerAuthError> {
    let given =
        hex::decode(header.ok_or(PeerAuthError::Missing)?).map_err(|_| PeerAuthError::Malformed)?;
    let want = mac(
        secret,
        &[
            b"cistern-peer-v1 answer",
            request,
            &status.to_be_bytes(),
            &body_crc.to_be_bytes(),
        ],
    );
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
    fn requests_verify_only_with_the_same_secret_path_and_time() {
        let k = s("0123456789abcdef0123");
        let (h, sent) = sign_request(&k, "GET", "/v1/chunk?b=x&i=3", 1_000_000);
        let m = verify_request(&k, "GET", "/v1/chunk?b=x&i=3", Some(&h), 1_000_100).expect("ok");
        assert_eq!(sent, m);
        let bad = |m: &str, p: &str, h: Option<&str>, now: u64, k: &Secret| {
            verify_request(k, m, p, h, now).expect_err("refused")
        };
        let p = "/v1/chunk?b=x&i=3";
        assert_eq!(bad("GET", p, None, 1_000_000, &k), PeerAuthError::Missing);
        assert_eq!(
            bad("PUT", p, Some(&h), 1_000_000, &k),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad("GET", "/v1/chunk?b=x&i=4", Some(&h), 1_000_000, &k),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad("GET", p, Some(&h), 1_000_000, &s("another secret!!")),
            PeerAuthError::Mismatch
        );
        assert_eq!(
            bad("GET", p, Some(&h), 1_000_400, &k),
            PeerAuthError::Skewed
        );
        assert_eq!(
            bad("GET", p, Some("v1 x y"), 1_000_000, &k),
            PeerAuthError::Malformed
        );
        assert_eq!(
            bad("GET", p, Some("v2 1 00"), 1_000_000, &k),
            PeerAuthError::Malformed
        );
        // The time is inside the MAC: changing it breaks the signature.
        let forged = h.replacen("1000000", "1000300", 1);
        assert_eq!(
            bad("GET", p, Some(&forged), 1_000_300, &k),
            PeerAuthError::Mismatch
        );
    }

    #[test]
    fn answers_bind_request_status_and_body() {
        let k = s("0123456789abcdef0123");
        let req = verify_request(
            &k,
            "GET",
            "/v1/meta",
            Some(&sign_request(&k, "GET", "/v1/meta", 5).0),
            5,
        )
        .expect("ok");
        let a = sign_answer(&k, &req, 200, 77);
        verify_answer(&k, &req, 200, 77, Some(&a)).expect("ok");
        assert!(verify_answer(&k, &req, 200, 78, Some(&a)).is_err());
        assert!(verify_answer(&k, &req, 404, 77, Some(&a)).is_err());
        assert!(verify_answer(&k, &[0; 32], 200, 77, Some(&a)).is_err());
        assert!(verify_answer(&s("another secret!!"), &req, 200, 77, Some(&a)).is_err());
        assert!(verify_answer(&k, &req, 200, 77, None).is_err());
    }
}
