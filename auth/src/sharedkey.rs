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

/// Which variant of the string-to-sign to build. Real clients differ on details Microsoft's
/// reference leaves open or that their SDK gets wrong; each variant is one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    order: HeaderOrder,
    /// Put the `Range` header's value on the Range line (Microsoft's layout) or leave the
    /// line empty (the Python SDK, which signs only `x-ms-range`).
    range_line: bool,
    /// Sign the `Date` value even when `x-ms-date` is present (Python SDK, Azurite) or leave
    /// the line empty then (.NET and Go clients; the reference allows both).
    date_with_xms: bool,
    /// Keep a raw `+` in query values (the SDKs) or read it as a space (Azurite).
    plus_is_space: bool,
    /// The reference's query handling (lower-case names, then sort; join repeated names'
    /// values) or the Python SDK's (sort names as sent, then lower-case; keep the last value).
    sdk_query: bool,
}

const CANONICAL: Variant = Variant {
    order: HeaderOrder::Azure,
    range_line: true,
    date_with_xms: true,
    plus_is_space: false,
    sdk_query: false,
};

fn header<'a>(req: &Request<'a>, name: &str) -> &'a str {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("", |(_, v)| v.trim())
}

/// Azure's collation for header names (the order the service and the .NET and Python SDKs
/// use, a culture-aware "word sort"): names are compared first with `-` and `'` removed, by
/// the rank of each character in [`PRIMARY`] (a name that is a prefix of another sorts first);
/// ties are broken by where the `'` and `-` were, an ordinary character sorting before `'`
/// before `-`. Characters outside the table carry no weight (none is legal in a header name).
pub fn azure_cmp(a: &str, b: &str) -> Ordering {
    azure_key(a).cmp(&azure_key(b))
}

/// The sort key of [`azure_cmp`]: primary weights, then the positions of `'` and `-`.
fn azure_key(s: &str) -> (Vec<u8>, Vec<u8>) {
    let primary = s
        .chars()
        .filter_map(|c| PRIMARY.find(c.to_ascii_lowercase()).map(|i| i as u8))
        .collect();
    let secondary = s
        .chars()
        .map(|c| match c {
            '\'' => 1,
            '-' => 2,
            _ => 0,
        })
        .collect();
    (primary, secondary)
}

/// The primary weights of Azure's header-name collation, lowest first.
const PRIMARY: &str = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz";

fn canonicalized_headers(req: &Request<'_>, order: HeaderOrder) -> String {
    let mut xms: Vec<(String, &str)> = req
        .headers
        .iter()
        .filter(|(n, _)| n.len() > 5 && n.as_bytes()[..5].eq_ignore_ascii_case(b"x-ms-"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .collect();
    match order {
        HeaderOrder::Azure => xms.sort_by_cached_key(|(n, _)| azure_key(n)),
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

/// Decoded query pairs with lower-case names, grouped by name: `(name, values)`, in the
/// order the variant sorts them.
fn query_groups(raw_query: &str, v: Variant) -> Vec<(String, Vec<String>)> {
    let pairs = raw_query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (n, val) = p.split_once('=').unwrap_or((p, ""));
        (decode(n, v.plus_is_space), decode(val, v.plus_is_space))
    });
    if v.sdk_query {
        // A dict by name as sent: later values win; sorted as sent, lower-cased after.
        let mut map = std::collections::BTreeMap::new();
        for (n, val) in pairs {
            map.insert(n, val);
        }
        return map
            .into_iter()
            .map(|(n, val)| (n.to_ascii_lowercase(), vec![val]))
            .collect();
    }
    let mut pairs: Vec<(String, String)> = pairs
        .map(|(n, val)| (n.to_ascii_lowercase(), val))
        .collect();
    pairs.sort();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (n, val) in pairs {
        match groups.last_mut() {
            Some((last, vals)) if *last == n => vals.push(val),
            _ => groups.push((n, vec![val])),
        }
    }
    groups
}

fn decode(s: &str, plus_is_space: bool) -> String {
    if plus_is_space {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    } else {
        percent_decode_str(s).decode_utf8_lossy().into_owned()
    }
}

fn canonicalized_resource(req: &Request<'_>, scheme: Scheme, v: Variant) -> String {
    let mut out = format!("/{}{}", req.account, req.raw_path);
    let groups = query_groups(req.raw_query, v);
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
    let resource = canonicalized_resource(req, scheme, v);
    let date = if !v.date_with_xms && !h("x-ms-date").is_empty() {
        ""
    } else {
        h("date")
    };
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
                date,
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
            let lines = [req.method, h("content-md5"), h("content-type"), date];
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
    // The canonical form first; then every combination of the client differences this
    // request can show. A difference the request cannot show is not tried, so nothing the
    // signer left out can be added or changed: `Range` may be left unsigned only when
    // `x-ms-range` (which wins over it) is present.
    let h = |n| !header(req, n).is_empty();
    let names: Vec<String> = req
        .raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(""))
        .map(|n| decode(n, false))
        .collect();
    let mut lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    lower.sort();
    lower.dedup();
    let query_differs = lower.len() != names.len()
        || names
            .iter()
            .any(|n| n.bytes().any(|b| b.is_ascii_uppercase()));
    let orders_differ = canonicalized_headers(req, HeaderOrder::Azure)
        != canonicalized_headers(req, HeaderOrder::Bytes);
    let dims = [
        orders_differ,
        scheme == Scheme::SharedKey && h("range") && h("x-ms-range"),
        h("date") && h("x-ms-date"),
        req.raw_query.contains('+'),
        query_differs,
    ];
    let mut variants = Vec::with_capacity(32);
    for bits in 0u8..32 {
        // Only combinations of the dimensions that can differ.
        if (0..5).any(|i| bits & (1 << i) != 0 && !dims[i]) {
            continue;
        }
        variants.push(Variant {
            order: if bits & 1 == 0 {
                HeaderOrder::Azure
            } else {
                HeaderOrder::Bytes
            },
            range_line: bits & 2 == 0,
            date_with_xms: bits & 4 == 0,
            plus_is_space: bits & 8 != 0,
            sdk_query: bits & 16 != 0,
        });
    }
    debug_assert_eq!(variants[0], CANONICAL);
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

    /// Found by `scripts/fuzz run sharedkey`: a header name with a multi-byte character where
    /// the `x-ms-` prefix would end sliced inside it.
    #[test]
    fn header_names_that_are_not_ascii_are_signed_without_panicking() {
        let headers = [("x-m\u{424d}", "v"), ("x-ms-\u{e9}t\u{e9}", "w")];
        let req = Request {
            method: "GET",
            account: "a",
            raw_path: "/a/c",
            raw_query: "",
            headers: &headers,
        };
        let header = authorization(&req, Scheme::SharedKey, b"key");
        let auth = parse_authorization(&header).expect("parses");
        assert!(verify(
            &req,
            Scheme::SharedKey,
            auth.signature,
            &[b"key".to_vec()]
        ));
    }

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
                "x-ms-meta-a_b",
                "x-ms-meta-a1",
                "x-ms-meta-ab",
                "x-ms-meta-a-b",
            ]
        );
        // The helper's published examples.
        let mut v = vec!["a", "a-b", "a-z", "a_b", "ab", "abc"];
        v.sort_by(|a, b| azure_cmp(a, b));
        assert_eq!(v, ["a", "a_b", "ab", "a-b", "abc", "a-z"]);
        let mut v = vec!["ab", "a-b", "a'b"];
        v.sort_by(|a, b| azure_cmp(a, b));
        assert_eq!(v, ["ab", "a'b", "a-b"]);
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
            std::slice::from_ref(&key)
        ));
        let other = Request {
            raw_path: "/acct/c/b%20y",
            ..req
        };
        assert!(!verify(&other, Scheme::SharedKey, parsed.signature, &[key]));
    }
}
