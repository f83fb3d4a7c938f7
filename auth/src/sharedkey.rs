//! Azure Storage Shared Key and Shared Key Lite: the string-to-sign, signing (Cistern → an
//! Azure origin) and verification (a Blob client → Cistern).
//!
//! Layouts follow Microsoft's "Authorize with Shared Key" reference for version 2009-09-19
//! and later: twelve standard header lines, the canonicalized `x-ms-*` headers, and the
//! canonicalized resource `/<account><raw path>` with each query parameter on its own line.
//!
//! The canonicalized headers are sorted by Azure's own collation ([`azure_cmp`]), not byte
//! order. Some clients sort by byte order and some leave the `Range` header out of the
//! string-to-sign (the Python SDK signs `x-ms-range` only), so [`verify`] accepts a signature
//! computed under any of those variants: each variant is still an HMAC with the account key.

use std::cmp::Ordering;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Which Shared Key flavour signs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: SharedKey account:signature`.
    SharedKey,
    /// `Authorization: SharedKeyLite account:signature`.
    SharedKeyLite,
}

impl Scheme {
    /// The scheme word in the `Authorization` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedKey => "SharedKey",
            Self::SharedKeyLite => "SharedKeyLite",
        }
    }
}

/// The parts of a request Shared Key covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// The storage account the request is signed for.
    pub account: &'a str,
    /// The URI path exactly as sent (percent-encoded), e.g. `/devstoreaccount1/c/b` for an
    /// emulator-style URL or `/c/b` for a host-style one.
    pub raw_path: &'a str,
    /// The raw query string as sent (without `?`), or empty.
    pub raw_query: &'a str,
    /// Every request header (name in any case, value as sent).
    pub headers: &'a [(&'a str, &'a str)],
}

/// A parsed `Authorization: SharedKey[Lite] account:signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// The flavour.
    pub scheme: Scheme,
    /// The account named in the header.
    pub account: &'a str,
    /// The base64 signature.
    pub signature: &'a str,
}

/// Parses an `Authorization` header value; `None` when it is not a Shared Key header.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let scheme = match scheme {
        "SharedKey" => Scheme::SharedKey,
        "SharedKeyLite" => Scheme::SharedKeyLite,
        _ => return None,
    };
    let (account, signature) = rest.trim().split_once(':')?;
    (!account.is_empty() && !signature.is_empty()).then_some(Authorization {
        scheme,
        account,
        signature,
    })
}

/// Decodes a base64 account key.
pub fn decode_key(key: &str) -> Option<Vec<u8>> {
    B64.decode(key.trim()).ok().filter(|k| !k.is_empty())
}

/// Base64 HMAC-SHA256 of `string_to_sign` under `key` (the decoded account key).
pub fn hmac_b64(key: &[u8], string_to_sign: &str) -> String {
    B64.encode(hmac_raw(key, string_to_sign))
}

fn hmac_raw(key: &[u8], msg: &str) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().into()
}

/// How the `x-ms-*` headers are ordered in the string-to-sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderOrder {
    /// Azure's collation (what the service and the .NET/Python SDKs use).
    Azure,
    /// Plain byte order (what some other clients use).
    Bytes,
}

/// Which variant of the string-to-sign to build.
#[derive(Debug, Clone, Copy)]
struct Variant {
    order: HeaderOrder,
    /// Put the `Range` header's value on the Range line (Microsoft's layout) or leave the
    /// line empty (the Python SDK, which signs only `x-ms-range`).
    range_line: bool,
}

const CANONICAL: Variant = Variant {
    order: HeaderOrder::Azure,
    range_line: true,
};

fn header<'a>(req: &Request<'a>, name: &str) -> &'a str {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("", |(_, v)| v.trim())
}

/// Azure's collation for header names: a fixed character weight table in which `-` sorts
/// first and punctuation before digits before letters; shorter names sort before longer
/// ones sharing their prefix. Characters outside the table sort after it, by code point.
pub fn azure_cmp(a: &str, b: &str) -> Ordering {
    let wa = a.chars().map(weight);
    let wb = b.chars().map(weight);
    wa.cmp(wb)
}

/// The position of `c` in Azure's header-name weight table.
fn weight(c: char) -> u32 {
    // Punctuation in the service's order, then digits, `:;<=>?@`, upper case, `[\]`,
    // lower case and `{}`.
    const TABLE: &str = "-!#$%&*.^_|~+\"'(),/`0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]abcdefghijklmnopqrstuvwxyz{}";
    match TABLE.find(c) {
        Some(i) => i as u32,
        None => 0x1000 + c as u32,
    }
}

fn canonicalized_headers(req: &Request<'_>, order: HeaderOrder) -> String {
    let mut xms: Vec<(String, &str)> = req
        .headers
        .iter()
        .filter(|(n, _)| n.len() > 5 && n[..5].eq_ignore_ascii_case("x-ms-"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .collect();
    match order {
        HeaderOrder::Azure => xms.sort_by(|a, b| azure_cmp(&a.0, &b.0)),
        HeaderOrder::Bytes => xms.sort_by(|a, b| a.0.cmp(&b.0)),
    }
    let mut out = String::with_capacity(xms.len() * 40);
    for (n, v) in xms {
        out.push_str(&n);
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Decoded query pairs with lower-case names, grouped: `(name, values sorted)`, by name.
fn query_groups(raw_query: &str) -> Vec<(String, Vec<String>)> {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n).to_ascii_lowercase(), decode(v))
        })
        .collect();
    pairs.sort();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (n, v) in pairs {
        match groups.last_mut() {
            Some((last, vals)) if *last == n => vals.push(v),
            _ => groups.push((n, vec![v])),
        }
    }
    groups
}

fn decode(s: &str) -> String {
    // Query strings may carry `+` for a space.
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

fn canonicalized_resource(req: &Request<'_>, scheme: Scheme) -> String {
    let mut out = format!("/{}{}", req.account, req.raw_path);
    let groups = query_groups(req.raw_query);
    match scheme {
        Scheme::SharedKey => {
            for (n, vals) in groups {
                out.push('\n');
                out.push_str(&n);
                out.push(':');
                out.push_str(&vals.join(","));
            }
        }
        Scheme::SharedKeyLite => {
            if let Some((_, vals)) = groups.iter().find(|(n, _)| n == "comp") {
                out.push_str("?comp=");
                out.push_str(&vals.join(","));
            }
        }
    }
    out
}

fn build(req: &Request<'_>, scheme: Scheme, v: Variant) -> String {
    let h = |n| header(req, n);
    let headers = canonicalized_headers(req, v.order);
    let resource = canonicalized_resource(req, scheme);
    match scheme {
        Scheme::SharedKey => {
            let content_length = match h("content-length") {
                "0" => "",
                other => other,
            };
            let range = if v.range_line { h("range") } else { "" };
            let lines = [
                req.method,
                h("content-encoding"),
                h("content-language"),
                content_length,
                h("content-md5"),
                h("content-type"),
                h("date"),
                h("if-modified-since"),
                h("if-match"),
                h("if-none-match"),
                h("if-unmodified-since"),
                range,
            ];
            let mut s = lines.join("\n");
            s.push('\n');
            s.push_str(&headers);
            s.push_str(&resource);
            s
        }
        Scheme::SharedKeyLite => {
            let lines = [req.method, h("content-md5"), h("content-type"), h("date")];
            let mut s = lines.join("\n");
            s.push('\n');
            s.push_str(&headers);
            s.push_str(&resource);
            s
        }
    }
}

/// The string-to-sign as Microsoft's reference defines it (Azure collation, `Range` signed).
pub fn string_to_sign(req: &Request<'_>, scheme: Scheme) -> String {
    build(req, scheme, CANONICAL)
}

/// The `Authorization` header value for `req` signed with `key` (the decoded account key).
pub fn authorization(req: &Request<'_>, scheme: Scheme, key: &[u8]) -> String {
    format!(
        "{} {}:{}",
        scheme.as_str(),
        req.account,
        hmac_b64(key, &string_to_sign(req, scheme))
    )
}

/// Whether `signature` (base64) signs `req` under any of `keys`, for any string-to-sign
/// variant real clients produce. Comparisons are constant-time.
pub fn verify(req: &Request<'_>, scheme: Scheme, signature: &str, keys: &[Vec<u8>]) -> bool {
    let Ok(given) = B64.decode(signature.trim()) else {
        return false;
    };
    let has_range = !header(req, "range").is_empty();
    let mut variants = vec![CANONICAL];
    variants.push(Variant {
        order: HeaderOrder::Bytes,
        range_line: true,
    });
    if has_range && scheme == Scheme::SharedKey {
        variants.push(Variant {
            order: HeaderOrder::Azure,
            range_line: false,
        });
        variants.push(Variant {
            order: HeaderOrder::Bytes,
            range_line: false,
        });
    }
    let mut seen: Vec<String> = Vec::with_capacity(variants.len());
    for v in variants {
        let sts = build(req, scheme, v);
        if seen.contains(&sts) {
            continue;
        }
        for key in keys {
            if bool::from(hmac_raw(key, &sts).ct_eq(given.as_slice())) {
                return true;
            }
        }
        seen.push(sts);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collation_puts_dash_and_underscore_before_digits_and_letters() {
        let mut names = vec![
            "x-ms-meta-a1",
            "x-ms-meta-a_b",
            "x-ms-meta-a-b",
            "x-ms-meta-ab",
            "x-ms-meta-a",
        ];
        names.sort_by(|a, b| azure_cmp(a, b));
        assert_eq!(
            names,
            [
                "x-ms-meta-a",
                "x-ms-meta-a-b",
                "x-ms-meta-a_b",
                "x-ms-meta-a1",
                "x-ms-meta-ab"
            ]
        );
        // Byte order disagrees about `_` against digits and letters.
        let mut bytes = names.clone();
        bytes.sort();
        assert_ne!(bytes, names);
    }

    #[test]
    fn parses_authorization_headers() {
        assert_eq!(
            parse_authorization("SharedKey acct:c2ln"),
            Some(Authorization {
                scheme: Scheme::SharedKey,
                account: "acct",
                signature: "c2ln"
            })
        );
        assert_eq!(
            parse_authorization("SharedKeyLite acct:c2ln").map(|a| a.scheme),
            Some(Scheme::SharedKeyLite)
        );
        assert!(parse_authorization("Bearer xyz").is_none());
        assert!(parse_authorization("SharedKey acct").is_none());
        assert!(parse_authorization("SharedKey :sig").is_none());
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = decode_key("a2V5LWJ5dGVz").expect("key");
        let headers = [
            ("x-ms-date", "Wed, 25 Nov 2026 10:00:00 GMT"),
            ("x-ms-version", "2026-10-06"),
            ("Range", "bytes=0-9"),
        ];
        let req = Request {
            method: "GET",
            account: "acct",
            raw_path: "/acct/c/b%20x",
            raw_query: "",
            headers: &headers,
        };
        let auth = authorization(&req, Scheme::SharedKey, &key);
        let parsed = parse_authorization(&auth).expect("parse");
        assert!(verify(
            &req,
            Scheme::SharedKey,
            parsed.signature,
            &[key.clone()]
        ));
        let other = Request {
            raw_path: "/acct/c/b%20y",
            ..req
        };
        assert!(!verify(&other, Scheme::SharedKey, parsed.signature, &[key]));
    }
}
