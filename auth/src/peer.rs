//! Authentication of peer traffic between Cistern nodes: HMAC-SHA256 with the cluster secret.
//!
//! A request carries `x-cistern-peer: v1 <unix seconds> <hex mac>`, the MAC over the method,
//! the path with its query, the time and the digest of its body; a receiver accepts it within
//! [`MAX_SKEW_SECS`] of its own clock. The answer carries a MAC over the request's MAC, its
//! status, the digest of its body and the answer headers that say what the body is, so a
//! front knows the bytes came, unaltered, from a member of its own cluster (a recycled pod
//! address now held by another cluster's node is refused, not trusted). Traffic is not
//! encrypted, and a captured request can be replayed within the skew window (it can only
//! repeat what it asked: no bytes can be changed).
//!
//! The body digest ([`BodyKey::digest`]) is GHASH — AES-GCM's universal hash, here AES-256-GCM
//! over the body as associated data with nothing encrypted — under a key derived from the
//! cluster secret. It is never sent: it only enters the HMACs above. Changing a body without
//! changing its digest means finding a GHASH collision under an unknown key, which succeeds
//! with probability at most (blocks + 1) / 2¹²⁸ per try; so the digest needs no collision
//! resistance of its own, and it runs at three times SHA-256's speed (PCLMULQDQ; `macbench`
//! below prints both), which is most of the peer path's authentication cost per byte.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
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

/// A body's digest, as the MACs cover it ([`BodyKey::digest`]).
pub type Digest = [u8; 16];

/// The key bodies are digested under, derived from the cluster secret (make it once: it holds
/// the AES key schedule).
pub struct BodyKey(LessSafeKey);

impl BodyKey {
    /// The body key of the cluster whose secret is `secret`.
    pub fn new(secret: &Secret) -> Self {
        let k = mac(secret, &[b"cistern-peer-v3 body key"]);
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(&AES_256_GCM, &k).expect("AES-256 takes a 32-byte key");
        Self(LessSafeKey::new(key))
    }

    /// The digest of `body`: AES-256-GCM's tag over `body` as associated data (GHASH of it,
    /// masked by a constant block). A fixed nonce is sound here because the tag is never
    /// revealed (see the module documentation).
    pub fn digest(&self, body: &[u8]) -> Digest {
        let nonce = Nonce::assume_unique_for_key([0; 12]);
        match self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(body), &mut [])
        {
            Ok(tag) => {
                let mut d = [0; 16];
                d.copy_from_slice(tag.as_ref());
                d
            }
            // Only past GCM's length limit (2⁶¹ bytes): never for a peer body. A digest no
            // answer can match makes it a refusal, not an acceptance.
            Err(_) => [0xff; 16],
        }
    }
}

impl std::fmt::Debug for BodyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyKey(..)")
    }
}

fn request_mac(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    secs: u64,
    body: &Digest,
) -> [u8; 32] {
    mac(
        secret,
        &[
            b"cistern-peer-v3 request",
            method.as_bytes(),
            path_and_query.as_bytes(),
            secs.to_string().as_bytes(),
            body,
        ],
    )
}

/// The header value for a request sent at `now_secs` with a body of digest `body`
/// ([`BodyKey::digest`]), and its MAC (to check the answer with).
pub fn sign_request(
    secret: &Secret,
    method: &str,
    path_and_query: &str,
    now_secs: u64,
    body: &Digest,
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
    body: &Digest,
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
    body: &Digest,
    described: &str,
) -> [u8; 32] {
    mac(
        secret,
        &[
            b"cistern-peer-v3 answer",
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
    body: &Digest,
    described: &str,
) -> String {
    hex::encode(answer_mac(secret, request, status, body, described))
}

/// Checks an answer's header value.
pub fn verify_answer(
    secret: &Secret,
    request: &[u8; 32],
    status: u16,
    body: &Digest,
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

    fn body_digest(b: &[u8]) -> Digest {
        BodyKey::new(&s("0123456789abcdef0123")).digest(b)
    }

    #[test]
    fn requests_verify_only_with_the_same_secret_path_time_and_body() {
        let k = s("0123456789abcdef0123");
        let empty = body_digest(b"");
        let p = "/v1/chunk?b=x&i=3";
        let (h, sent) = sign_request(&k, "GET", p, 1_000_000, &empty);
        let m = verify_request(&k, "GET", p, Some(&h), 1_000_100, &empty).expect("ok");
        assert_eq!(sent, m);
        let bad = |m: &str, p: &str, h: Option<&str>, now: u64, k: &Secret, b: &Digest| {
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

    #[test]
    fn body_digests_depend_on_every_byte_the_length_and_the_secret() {
        let k = BodyKey::new(&s("0123456789abcdef0123"));
        let chunk: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
        let d = k.digest(&chunk);
        assert_eq!(d, k.digest(&chunk), "deterministic");
        for at in [0, 1, 4095, 4096, chunk.len() / 2, chunk.len() - 1] {
            let mut other = chunk.clone();
            other[at] ^= 1;
            assert_ne!(k.digest(&other), d, "a flipped bit at {at}");
        }
        assert_ne!(k.digest(&chunk[..chunk.len() - 1]), d, "shorter");
        let mut longer = chunk.clone();
        longer.push(0);
        assert_ne!(k.digest(&longer), d, "a zero byte more");
        assert_ne!(
            k.digest(b""),
            k.digest(&[0; 16]),
            "empty against a zero block"
        );
        assert_ne!(BodyKey::new(&s("another secret!!")).digest(&chunk), d);
    }

    /// Prints the body digest's throughput beside SHA-256's (the digest it replaced), for a
    /// 4 MiB chunk: `cargo test --release -p cistern-auth macbench -- --ignored --nocapture`.
    /// Figures only.
    #[test]
    #[ignore]
    fn macbench() {
        use sha2::Digest as _;
        let body = vec![7u8; 4 << 20];
        let k = BodyKey::new(&s("0123456789abcdef0123"));
        let n = 100;
        let gb = (n * body.len()) as f64 / 1e9;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(k.digest(std::hint::black_box(&body)));
        }
        let ghash = gb / t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(Sha256::digest(std::hint::black_box(&body)));
        }
        let sha = gb / t.elapsed().as_secs_f64();
        println!(
            "body digest (GHASH): {ghash:.2} GB/s, {:.3} s/GB; SHA-256: {sha:.2} GB/s, {:.3} s/GB",
            1.0 / ghash,
            1.0 / sha
        );
    }
}
