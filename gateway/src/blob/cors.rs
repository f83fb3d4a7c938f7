//! CORS for the Blob front, as Azure Storage applies it. The rules are the `<Cors>` of the Blob
//! service properties of the one Azure origin, fetched with the origin's credentials, cached
//! for [`CORS_TTL`] and dropped when a Set Blob Service Properties through this front
//! succeeds (another front sees the change within the TTL). Without an Azure origin there are
//! no rules.
//!
//! - A preflight (`OPTIONS`, any URL, unauthenticated) needs `Origin` and
//!   `Access-Control-Request-Method` (else `400 InvalidHeaderValue`); the first rule that
//!   allows the origin, the method and every requested header answers it (`200` with
//!   `Access-Control-Allow-Origin/-Methods/-Headers/-Max-Age/-Credentials`), else
//!   `403 CorsPreflightFailure`.
//! - Any other response to a request with an `Origin` — errors and cache hits included — gets
//!   the first rule allowing that origin and method: `Access-Control-Allow-Origin` (`*` for a
//!   rule of any origin, else the origin, then with `Vary: Origin` and
//!   `Access-Control-Allow-Credentials: true`) and `Access-Control-Expose-Headers`; with rules
//!   but none matching, only `Vary: Origin`. Requests without `Origin` cost nothing here.
//!
//! Matching follows Azure (and Azurite's tests of it): origins and methods case-insensitively,
//! origins with `*` wildcards (`*` alone for any, `https://*.contoso.com` for subdomains),
//! allowed and exposed headers by name or by prefix (`x-ms-meta-*`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::error::BlobError;
use super::{header, set, BlobFront, Reply};
use crate::origin::{Dialect, Passthrough};

/// How long fetched rules are used.
pub const CORS_TTL: Duration = Duration::from_secs(10);

/// How long a failed fetch is remembered (the origin is not asked on every request meanwhile).
const FAILURE_TTL: Duration = Duration::from_secs(2);

/// The largest service properties document read.
const MAX_PROPERTIES: usize = 1 << 20;

/// One `<CorsRule>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsRule {
    /// `AllowedOrigins` is `*`: any origin, answered with `*`.
    any_origin: bool,
    /// `AllowedOrigins`, lower-cased; entries may hold `*` wildcards.
    origins: Vec<String>,
    /// `AllowedMethods`, upper-cased.
    methods: Vec<String>,
    /// `AllowedHeaders`, lower-cased; a trailing `*` makes a prefix.
    allowed_headers: Vec<String>,
    /// `ExposedHeaders`, as written; a trailing `*` makes a prefix.
    exposed_headers: Vec<String>,
    /// `MaxAgeInSeconds`.
    max_age: u64,
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl CorsRule {
    fn set(&mut self, field: &str, v: &str) {
        match field {
            "AllowedOrigins" => {
                self.any_origin = v.trim() == "*";
                self.origins = list(v).map(str::to_ascii_lowercase).collect();
            }
            "AllowedMethods" => self.methods = list(v).map(str::to_ascii_uppercase).collect(),
            "AllowedHeaders" => {
                self.allowed_headers = list(v).map(str::to_ascii_lowercase).collect();
            }
            "ExposedHeaders" => self.exposed_headers = list(v).map(str::to_string).collect(),
            "MaxAgeInSeconds" => self.max_age = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }

    fn allows_origin(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        self.origins.iter().any(|o| {
            if o.contains('*') {
                wildcard(o.as_bytes(), origin.as_bytes())
            } else {
                *o == origin
            }
        })
    }

    fn allows_method(&self, method: &str) -> bool {
        let method = method.trim();
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether every header of an `Access-Control-Request-Headers` list is allowed.
    fn allows_headers(&self, requested: &str) -> bool {
        list(requested).all(|h| {
            let h = h.to_ascii_lowercase();
            self.allowed_headers
                .iter()
                .any(|a| match a.strip_suffix('*') {
                    Some(prefix) => h.starts_with(prefix),
                    None => *a == h,
                })
        })
    }

    /// `Access-Control-Expose-Headers`: the response's headers that a rule names or whose
    /// prefix it names, then the names it lists that the response does not have.
    fn exposed(&self, response: &HeaderMap) -> String {
        let prefixes: Vec<String> = self
            .exposed_headers
            .iter()
            .filter_map(|e| e.strip_suffix('*'))
            .map(str::to_ascii_lowercase)
            .collect();
        let names: Vec<&String> = self
            .exposed_headers
            .iter()
            .filter(|e| !e.ends_with('*'))
            .collect();
        let mut out: Vec<&str> = response
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|k| {
                prefixes.iter().any(|p| k.starts_with(p.as_str()))
                    || names.iter().any(|n| n.eq_ignore_ascii_case(k))
            })
            .collect();
        for n in names {
            if !out.iter().any(|k| k.eq_ignore_ascii_case(n)) {
                out.push(n.as_str());
            }
        }
        out.join(",")
    }
}

/// Whether `s` matches `pattern`, whose `*` match any run of bytes (both lower-cased).
fn wildcard(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(c) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// The `<Cors>` rules of a Get Blob Service Properties answer, in order; `None` when it is not
/// XML.
pub fn parse_rules(xml: &[u8]) -> Option<Vec<CorsRule>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut rules = Vec::new();
    let mut in_cors = false;
    let mut rule: Option<CorsRule> = None;
    let mut field: Option<String> = None;
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match name.as_str() {
                    "Cors" => in_cors = true,
                    "CorsRule" if in_cors => rule = Some(CorsRule::default()),
                    _ if rule.is_some() => {
                        field = Some(name);
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if field.is_some() => text.push_str(&t.unescape().ok()?),
            Event::End(e) => match e.local_name().as_ref() {
                b"Cors" => in_cors = false,
                b"CorsRule" => rules.extend(rule.take()),
                _ => {
                    if let (Some(f), Some(r)) = (field.take(), rule.as_mut()) {
                        r.set(&f, &text);
                    }
                }
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Some(rules)
}

/// The headers that answer a preflight, from the first rule allowing it; `None` when none
/// does.
pub fn preflight_headers(
    rules: &[CorsRule],
    origin: &str,
    method: &str,
    requested_headers: Option<&str>,
) -> Option<Vec<(&'static str, String)>> {
    let rule = rules.iter().find(|r| {
        r.allows_origin(origin)
            && r.allows_method(method)
            && requested_headers.is_none_or(|h| r.allows_headers(h))
    })?;
    let mut out = vec![
        ("access-control-allow-origin", origin.to_string()),
        ("access-control-allow-methods", method.to_string()),
    ];
    if let Some(h) = requested_headers {
        out.push(("access-control-allow-headers", h.to_string()));
    }
    out.push(("access-control-max-age", rule.max_age.to_string()));
    out.push(("access-control-allow-credentials", "true".to_string()));
    Some(out)
}

/// Adds to a response the CORS headers the first rule allowing `origin` and `method` grants
/// (see the module docs).
pub fn add_response_headers(rules: &[CorsRule], origin: &str, method: &str, h: &mut HeaderMap) {
    let Some(rule) = rules
        .iter()
        .find(|r| r.allows_origin(origin) && r.allows_method(method))
    else {
        if !rules.is_empty() {
            set(h, "vary", "Origin");
        }
        return;
    };
    let exposed = rule.exposed(h);
    set(h, "access-control-expose-headers", &exposed);
    if rule.any_origin {
        set(h, "access-control-allow-origin", "*");
    } else {
        set(h, "access-control-allow-origin", origin);
        set(h, "vary", "Origin");
        set(h, "access-control-allow-credentials", "true");
    }
}

type Rules = Arc<Vec<CorsRule>>;

/// The cached rules.
#[derive(Default)]
pub struct CorsCache {
    state: Mutex<CacheState>,
    /// One fetch at a time; the others wait for its answer.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct CacheState {
    /// Bumped by [`CorsCache::forget`]: a fetch begun before it is not kept.
    epoch: u64,
    /// When fetched, and the rules (`None`: the fetch failed).
    cached: Option<(Instant, Option<Rules>)>,
}

impl CorsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached answer while fresh: `Some(None)` a recent failure.
    fn fresh(&self) -> Option<Option<Rules>> {
        let st = self.lock();
        let (at, rules) = st.cached.as_ref()?;
        let ttl = if rules.is_some() {
            CORS_TTL
        } else {
            FAILURE_TTL
        };
        (at.elapsed() < ttl).then(|| rules.clone())
    }

    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    fn store(&self, epoch: u64, rules: Option<Rules>) {
        let mut st = self.lock();
        if st.epoch == epoch {
            st.cached = Some((Instant::now(), rules));
        }
    }

    /// Drops the rules (the service properties changed).
    pub fn forget(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.cached = None;
    }
}

fn unavailable() -> BlobError {
    crate::error::Error::new(
        crate::error::ErrorKind::OriginUnavailable,
        "The origin's CORS rules could not be read",
    )
    .into()
}

impl BlobFront {
    /// The CORS rules, from the cache or the Azure origin.
    async fn cors_rules(&self) -> Result<Rules, BlobError> {
        if let Some(r) = self.cors.fresh() {
            return r.ok_or_else(unavailable);
        }
        let _one = self.cors.refresh.lock().await;
        if let Some(r) = self.cors.fresh() {
            return r.ok_or_else(unavailable);
        }
        let epoch = self.cors.epoch();
        let fetched = self.fetch_cors_rules().await;
        if let Err(e) = &fetched {
            tracing::warn!(code = %e.code, "cors rules could not be read from the origin");
        }
        self.cors
            .store(epoch, fetched.as_ref().ok().map(Arc::clone));
        fetched
    }

    /// Get Blob Service Properties at the one Azure origin, with its credentials.
    async fn fetch_cors_rules(&self) -> Result<Rules, BlobError> {
        let Some(origin) = self.pipeline.catalog().sole_origin(Dialect::Blob) else {
            return Ok(Arc::new(Vec::new()));
        };
        let req = Passthrough {
            method: Method::GET,
            bucket: String::new(),
            key: String::new(),
            query: vec![
                ("restype".to_string(), "service".to_string()),
                ("comp".to_string(), "properties".to_string()),
            ],
            headers: Vec::new(),
            body: Bytes::new(),
            verbatim: false,
        };
        let mut resp = origin.passthrough(&req).await?;
        if !resp.status.is_success() {
            return Err(unavailable());
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = resp.body.try_next().await? {
            if buf.len() + chunk.len() > MAX_PROPERTIES {
                return Err(unavailable());
            }
            buf.extend_from_slice(&chunk);
        }
        parse_rules(&buf).map(Arc::new).ok_or_else(unavailable)
    }

    /// Answers a preflight (see the module docs).
    pub(super) async fn preflight(&self, h: &HeaderMap) -> Result<Reply, BlobError> {
        let origin = header(h, "origin").ok_or_else(|| BlobError::cors_header_missing("Origin"))?;
        let method = header(h, "access-control-request-method")
            .ok_or_else(|| BlobError::cors_header_missing("Access-Control-Request-Method"))?;
        let requested = header(h, "access-control-request-headers");
        let rules = self.cors_rules().await?;
        let granted = preflight_headers(&rules, origin, method, requested)
            .ok_or_else(BlobError::cors_preflight_failure)?;
        let mut out = HeaderMap::new();
        for (k, v) in granted {
            set(&mut out, k, &v);
        }
        Ok(Reply::empty(StatusCode::OK, out))
    }

    /// Adds the CORS headers a response to a request from `origin` gets; nothing when the
    /// rules cannot be read (that failure is logged).
    pub(super) async fn add_cors_headers(
        &self,
        origin: &HeaderValue,
        method: &Method,
        h: &mut HeaderMap,
    ) {
        let Ok(origin) = origin.to_str() else { return };
        if let Ok(rules) = self.cors_rules().await {
            add_response_headers(&rules, origin, method.as_str(), h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azurite's answer to Get Blob Service Properties with two rules (one with empty lists).
    const PROPERTIES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<StorageServiceProperties><Logging><Version>1.0</Version><Delete>true</Delete></Logging>\
<Cors><CorsRule><AllowedOrigins>http://a.com,*.contoso.com</AllowedOrigins>\
<AllowedMethods>GET,PUT</AllowedMethods><AllowedHeaders>x-ms-meta-*,content-type</AllowedHeaders>\
<ExposedHeaders>x-ms-meta-*,x-ms-request-id</ExposedHeaders><MaxAgeInSeconds>60</MaxAgeInSeconds>\
</CorsRule><CorsRule><AllowedOrigins>*</AllowedOrigins><AllowedMethods>HEAD</AllowedMethods>\
<AllowedHeaders/><ExposedHeaders/><MaxAgeInSeconds>0</MaxAgeInSeconds></CorsRule></Cors>\
<DefaultServiceVersion>2026-06-06</DefaultServiceVersion></StorageServiceProperties>";

    fn rules() -> Vec<CorsRule> {
        parse_rules(PROPERTIES.as_bytes()).expect("parse")
    }

    fn rule(origins: &str, methods: &str, headers: &str, exposed: &str) -> CorsRule {
        let mut r = CorsRule::default();
        r.set("AllowedOrigins", origins);
        r.set("AllowedMethods", methods);
        r.set("AllowedHeaders", headers);
        r.set("ExposedHeaders", exposed);
        r.set("MaxAgeInSeconds", "8888");
        r
    }

    #[test]
    fn parses_service_properties() {
        let r = rules();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].origins, ["http://a.com", "*.contoso.com"]);
        assert_eq!(r[0].methods, ["GET", "PUT"]);
        assert_eq!(r[0].allowed_headers, ["x-ms-meta-*", "content-type"]);
        assert_eq!(r[0].exposed_headers, ["x-ms-meta-*", "x-ms-request-id"]);
        assert_eq!(r[0].max_age, 60);
        assert!(!r[0].any_origin);
        assert!(r[1].any_origin);
        assert!(r[1].allowed_headers.is_empty());
        assert_eq!(
            parse_rules(b"<StorageServiceProperties><Cors/></StorageServiceProperties>"),
            Some(vec![])
        );
        assert_eq!(
            parse_rules(b"<StorageServiceProperties></StorageServiceProperties>"),
            Some(vec![])
        );
        assert_eq!(parse_rules(b"<a><b></a>"), None);
    }

    #[test]
    fn origins_with_wildcards_as_azurite_tests_them() {
        let r = rule("*.contoso.com", "GET", "header", "*");
        for (origin, ok) in [
            ("undefined", false),
            ("contoso.com", false),
            ("bar.notcontoso.com", false),
            ("foo.contoso.com", true),
            ("foo.bar.baz.contoso.com", true),
            ("foo.CONTOSO.com", true),
        ] {
            assert_eq!(r.allows_origin(origin), ok, "{origin}");
        }
        assert!(rule("*", "GET", "", "").allows_origin("anyOrigin"));
        assert!(rule("http://a.com, https://*.b.com:8443", "GET", "", "")
            .allows_origin("https://x.b.com:8443"));
        assert!(!rule("http://a.com", "GET", "", "").allows_origin("http://a.com.evil"));
        assert!(wildcard(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard(b"a*b*c", b"axxbyy"));
        assert!(wildcard(b"**", b""));
    }

    #[test]
    fn preflights_as_azurite_tests_them() {
        let rules = vec![
            rule("test", "GET", "header", "*"),
            rule("test", "PUT", "*", "*"),
            rule("test", "POST", "head*", "*"),
        ];
        let ok = |o, m, h| preflight_headers(&rules, o, m, h).is_some();
        assert!(!ok("Origin", "GET", None));
        assert!(ok("test", "GET", None));
        assert!(!ok("test", "DELETE", None));
        assert!(!ok("test", "GET", Some("head")));
        assert!(ok("test", "GET", Some("header")));
        assert!(ok("test", "PUT", Some("head")));
        assert!(!ok("test", "POST", Some("hea")));
        assert!(ok("test", "POST", Some("headerheader, head-2")));
        assert!(preflight_headers(&[], "test", "GET", None).is_none());
        let got = preflight_headers(
            &self::rules(),
            "http://A.com",
            "get",
            Some("x-ms-meta-a,Content-Type"),
        );
        assert_eq!(
            got,
            Some(vec![
                ("access-control-allow-origin", "http://A.com".to_string()),
                ("access-control-allow-methods", "get".to_string()),
                (
                    "access-control-allow-headers",
                    "x-ms-meta-a,Content-Type".to_string()
                ),
                ("access-control-max-age", "60".to_string()),
                ("access-control-allow-credentials", "true".to_string()),
            ])
        );
        assert!(preflight_headers(
            &self::rules(),
            "http://a.com",
            "GET",
            Some("x-ms-blob-type")
        )
        .is_none());
    }

    fn response() -> HeaderMap {
        let mut h = HeaderMap::new();
        set(&mut h, "content-length", "1");
        set(&mut h, "x-ms-meta-color", "blue");
        set(&mut h, "x-ms-request-id", "r1");
        h
    }

    fn cors_of(h: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("access-control-") || k.as_str() == "vary")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn responses_get_what_the_matching_rule_grants() {
        let rules = rules();
        let mut h = response();
        add_response_headers(&rules, "http://a.com", "GET", &mut h);
        assert_eq!(
            cors_of(&h),
            [
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-origin", "http://a.com"),
                (
                    "access-control-expose-headers",
                    "x-ms-meta-color,x-ms-request-id"
                ),
                ("vary", "Origin"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // The any-origin rule: `*`, no credentials, no Vary; nothing exposed.
        let mut h = response();
        add_response_headers(&rules, "http://zz.com", "HEAD", &mut h);
        assert_eq!(
            cors_of(&h),
            [
                ("access-control-allow-origin", "*"),
                ("access-control-expose-headers", "")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // Rules, none matching: Vary only.
        let mut h = response();
        add_response_headers(&rules, "http://zz.com", "GET", &mut h);
        assert_eq!(cors_of(&h), [("vary".to_string(), "Origin".to_string())]);
        // No rules: nothing.
        let mut h = response();
        add_response_headers(&[], "http://a.com", "GET", &mut h);
        assert!(cors_of(&h).is_empty());
        // Exposed names the response lacks are listed too; `*` exposes everything.
        let r = rule("x", "GET", "", "x-ms-absent,*");
        assert_eq!(
            r.exposed(&response()),
            "content-length,x-ms-meta-color,x-ms-request-id,x-ms-absent"
        );
    }

    #[test]
    fn the_cache_keeps_no_fetch_that_began_before_a_change() {
        let c = CorsCache::default();
        assert!(c.fresh().is_none());
        let epoch = c.epoch();
        c.forget();
        c.store(epoch, Some(Arc::new(vec![])));
        assert!(c.fresh().is_none());
        c.store(c.epoch(), Some(Arc::new(rules())));
        assert_eq!(c.fresh().flatten().map(|r| r.len()), Some(2));
        c.forget();
        assert!(c.fresh().is_none());
    }
}
