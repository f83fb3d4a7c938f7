//! Azure shared access signatures (SAS) signed with an account key: parsing the query,
//! the string-to-sign per signed version (`sv`), and signature verification. Whether a
//! valid SAS allows a given request (time window, IP, protocol, permissions, scope) is
//! answered by [`Sas::check`] from facts the caller supplies.
//!
//! User-delegation SAS (`skoid`…) and SAS bound to a stored access policy (`si`) cannot be
//! verified with the account key; [`Sas::kind`] says so, and the caller decides.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// What a SAS grants access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Account SAS (`ss`, `srt`).
    Account,
    /// Service SAS on a container (`sr=c`).
    Container,
    /// Service SAS on one blob (`sr=b`), a snapshot of it (`sr=bs`) or a version (`sr=bv`).
    Blob,
    /// Signed with a user-delegation key: only the origin can judge it.
    UserDelegation,
    /// Bound to a stored access policy (`si`): only the origin knows the policy.
    StoredPolicy,
}

/// Why a SAS does not authorize a request, mapped by the front to an Azure error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// Malformed or missing fields (AuthenticationFailed).
    #[error("{0}")]
    Malformed(&'static str),
    /// The signature does not match (AuthenticationFailed).
    #[error("Signature did not match")]
    BadSignature,
    /// Not yet valid or expired (AuthenticationFailed).
    #[error("{0}")]
    Time(&'static str),
    /// `spr` excludes the request's protocol (AuthorizationProtocolMismatch).
    #[error("This request is not authorized to perform this operation using this protocol")]
    Protocol,
    /// `sip` excludes the caller (AuthorizationSourceIPMismatch).
    #[error("This request is not authorized to perform this operation using this source IP")]
    SourceIp,
    /// `sp` lacks the permission (AuthorizationPermissionMismatch).
    #[error("This request is not authorized to perform this operation using this permission")]
    Permission,
    /// `ss` lacks the blob service (AuthorizationServiceMismatch).
    #[error("This request is not authorized to perform this operation using this service")]
    Service,
    /// `srt` lacks the resource type (AuthorizationResourceTypeMismatch).
    #[error("This request is not authorized to perform this operation using this resource type")]
    ResourceType,
    /// The request is outside the signed container or blob (AuthorizationFailure).
    #[error("This request is not authorized to perform this operation")]
    Scope,
}

/// The level a request works at, for an account SAS's `srt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    /// The account: list containers, account information (`s`).
    Service,
    /// A container: properties, list blobs (`c`).
    Container,
    /// A blob (`o`).
    Object,
}

impl ResourceType {
    fn letter(self) -> char {
        match self {
            Self::Service => 's',
            Self::Container => 'c',
            Self::Object => 'o',
        }
    }
}

/// Facts about a request that a SAS is checked against.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The container, unless the request is at account level.
    pub container: Option<&'a str>,
    /// The blob name (decoded), for blob requests.
    pub blob: Option<&'a str>,
    /// The level of the operation.
    pub resource_type: ResourceType,
    /// The `sp` letters of which the operation needs one (`r`, `l`, `w`, `d`, …), or `None`
    /// when any valid SAS will do.
    pub permission: Option<&'a str>,
    /// The caller's address.
    pub client_ip: Option<IpAddr>,
    /// Whether the request came over HTTPS.
    pub https: bool,
    /// Now.
    pub now: OffsetDateTime,
}

/// A SAS as found in a query string.
#[derive(Debug, Clone, Default)]
pub struct Sas {
    /// `sv`.
    pub version: String,
    /// `sp`.
    pub permissions: String,
    /// `st`, as sent.
    pub start: String,
    /// `se`, as sent.
    pub expiry: String,
    /// `sip`.
    pub ip: String,
    /// `spr`.
    pub protocol: String,
    /// `sr`.
    pub resource: String,
    /// `ss`.
    pub services: String,
    /// `srt`.
    pub resource_types: String,
    /// `si`.
    pub identifier: String,
    /// `ses`.
    pub encryption_scope: String,
    /// The signed snapshot time (`snapshot`, for `sr=bs`) or version id (`versionid`, for
    /// `sr=bv`).
    pub snapshot: String,
    /// `rscc`, `rscd`, `rsce`, `rscl`, `rsct`.
    pub overrides: [String; 5],
    /// `skoid` is present: a user-delegation SAS.
    pub delegated: bool,
    /// `sig`, decoded from base64.
    pub signature: Vec<u8>,
}

/// Whether the decoded query pairs carry a SAS at all (a `sig` parameter).
pub fn present(query: &[(String, String)]) -> bool {
    query.iter().any(|(k, _)| k == "sig")
}

impl Sas {
    /// Parses a SAS from decoded query pairs.
    pub fn parse(query: &[(String, String)]) -> Result<Self, SasError> {
        let mut s = Sas::default();
        let mut sig = None;
        let mut version_id = None;
        for (k, v) in query {
            let v = v.clone();
            match k.as_str() {
                "sv" => s.version = v,
                "sp" => s.permissions = v,
                "st" => s.start = v,
                "se" => s.expiry = v,
                "sip" => s.ip = v,
                "spr" => s.protocol = v,
                "sr" => s.resource = v,
                "ss" => s.services = v,
                "srt" => s.resource_types = v,
                "si" => s.identifier = v,
                "ses" => s.encryption_scope = v,
                "snapshot" => s.snapshot = v,
                "versionid" => version_id = Some(v),
                "rscc" => s.overrides[0] = v,
                "rscd" => s.overrides[1] = v,
                "rsce" => s.overrides[2] = v,
                "rscl" => s.overrides[3] = v,
                "rsct" => s.overrides[4] = v,
                "skoid" => s.delegated = true,
                "sig" => sig = Some(v),
                _ => {}
            }
        }
        // Only a snapshot SAS signs the snapshot time, and a version SAS the version id in its
        // place; other SAS may be used on a request that names a snapshot without signing it.
        match s.resource.as_str() {
            "bs" => {}
            "bv" => s.snapshot = version_id.unwrap_or_default(),
            _ => s.snapshot.clear(),
        }
        let sig = sig.ok_or(SasError::Malformed("sig is missing"))?;
        s.signature = B64
            .decode(sig.trim())
            .map_err(|_| SasError::Malformed("sig is not base64"))?;
        if s.version.is_empty() {
            return Err(SasError::Malformed("sv is missing"));
        }
        Ok(s)
    }

    /// What kind of SAS this is.
    pub fn kind(&self) -> Result<Kind, SasError> {
        if self.delegated {
            return Ok(Kind::UserDelegation);
        }
        if !self.identifier.is_empty() {
            return Ok(Kind::StoredPolicy);
        }
        if !self.services.is_empty() || !self.resource_types.is_empty() {
            if self.services.is_empty() || self.resource_types.is_empty() {
                return Err(SasError::Malformed("an account SAS needs ss and srt"));
            }
            return Ok(Kind::Account);
        }
        match self.resource.as_str() {
            "c" => Ok(Kind::Container),
            "b" | "bs" | "bv" => Ok(Kind::Blob),
            "" => Err(SasError::Malformed("sr is missing")),
            _ => Err(SasError::Malformed("sr names an unsupported resource")),
        }
    }

    /// The resource a service SAS signs (`sr`), for a stored-policy SAS too (which is a
    /// service SAS whose window and permissions the container's policy holds).
    fn service_kind(&self) -> Result<Kind, SasError> {
        match self.kind()? {
            Kind::StoredPolicy => match self.resource.as_str() {
                "c" => Ok(Kind::Container),
                "b" | "bs" | "bv" => Ok(Kind::Blob),
                "" => Err(SasError::Malformed("sr is missing")),
                _ => Err(SasError::Malformed("sr names an unsupported resource")),
            },
            k => Ok(k),
        }
    }

    /// This SAS with what its stored access policy (`si`) holds: the start, expiry and
    /// permissions the SAS itself leaves out. (Azure's documentation refuses a field given in
    /// both; the emulator, which clients test against, takes the SAS's own: so does this. It
    /// grants nothing the key holder could not sign without a policy.)
    pub fn with_policy(&self, start: &str, expiry: &str, permissions: &str) -> Sas {
        let mut out = self.clone();
        for (mine, theirs) in [
            (&mut out.start, start),
            (&mut out.expiry, expiry),
            (&mut out.permissions, permissions),
        ] {
            if mine.is_empty() {
                *mine = theirs.to_string();
            }
        }
        out
    }

    /// Checks the SAS's time window only (`st` ≤ now < `se`).
    pub fn check_window(&self, now: OffsetDateTime) -> Result<(), SasError> {
        if !self.start.is_empty() {
            let st =
                parse_time(&self.start).ok_or(SasError::Malformed("st is not a valid time"))?;
            if now < st {
                return Err(SasError::Time("Signed start time is in the future"));
            }
        }
        let se = parse_time(&self.expiry).ok_or(SasError::Malformed("se is not a valid time"))?;
        if now >= se {
            return Err(SasError::Time("Signed expiry time has passed"));
        }
        Ok(())
    }

    /// The string-to-sign for an account- or service-key SAS of `account`. `container` and
    /// `blob` are the signed resource's names (decoded) for a service SAS.
    pub fn string_to_sign(
        &self,
        account: &str,
        container: &str,
        blob: &str,
    ) -> Result<String, SasError> {
        let sv = self.version.as_str();
        // `sv` values are ISO dates, so string comparison orders them.
        let with_scope = sv >= "2020-12-06";
        match self.service_kind()? {
            Kind::Account => {
                let mut s = [
                    account,
                    &self.permissions,
                    &self.services,
                    &self.resource_types,
                    &self.start,
                    &self.expiry,
                    &self.ip,
                    &self.protocol,
                    sv,
                ]
                .join("\n");
                s.push('\n');
                if with_scope {
                    s.push_str(&self.encryption_scope);
                    s.push('\n');
                }
                Ok(s)
            }
            Kind::Container | Kind::Blob => {
                if sv < "2015-04-05" {
                    return Err(SasError::Malformed("sv is older than 2015-04-05"));
                }
                let resource = if self.resource == "c" {
                    format!("/blob/{account}/{container}")
                } else {
                    format!("/blob/{account}/{container}/{blob}")
                };
                let mut fields: Vec<&str> = vec![
                    &self.permissions,
                    &self.start,
                    &self.expiry,
                    &resource,
                    &self.identifier,
                    &self.ip,
                    &self.protocol,
                    sv,
                ];
                if sv >= "2018-11-09" {
                    fields.push(&self.resource);
                    fields.push(&self.snapshot);
                }
                if with_scope {
                    fields.push(&self.encryption_scope);
                }
                fields.extend(self.overrides.iter().map(String::as_str));
                Ok(fields.join("\n"))
            }
            Kind::UserDelegation | Kind::StoredPolicy => Err(SasError::Malformed(
                "a user delegation SAS cannot be verified with the account key",
            )),
        }
    }

    /// Whether the signature is an HMAC of the string-to-sign under one of `keys`.
    pub fn verify(
        &self,
        account: &str,
        container: &str,
        blob: &str,
        keys: &[Vec<u8>],
    ) -> Result<(), SasError> {
        let sts = self.string_to_sign(account, container, blob)?;
        for key in keys {
            let mac = crate::sharedkey::hmac_b64(key, &sts);
            let mac = B64.decode(mac).unwrap_or_default();
            if bool::from(mac.ct_eq(&self.signature)) {
                return Ok(());
            }
        }
        Err(SasError::BadSignature)
    }

    /// Checks what only the server facing the client can see: the caller's address (`sip`)
    /// and the protocol (`spr`). Run first, and alone for a SAS whose other limits live in a
    /// stored access policy at the origin.
    pub fn check_network(&self, t: &Target<'_>) -> Result<(), SasError> {
        if !self.ip.is_empty() {
            let ok = t.client_ip.is_some_and(|ip| ip_in(&self.ip, ip));
            if !ok {
                return Err(SasError::SourceIp);
            }
        }
        match self.protocol.as_str() {
            "" | "https,http" | "http,https" => Ok(()),
            "https" if t.https => Ok(()),
            "https" => Err(SasError::Protocol),
            _ => Err(SasError::Malformed("spr is not https or https,http")),
        }
    }

    /// Checks a verified SAS against the request: IP and protocol, time window, service,
    /// resource type, permission and scope, in that order.
    pub fn check(&self, t: &Target<'_>) -> Result<(), SasError> {
        self.check_network(t)?;
        self.check_window(t.now)?;
        let kind = self.kind()?;
        if kind == Kind::Account {
            if !self.services.contains('b') {
                return Err(SasError::Service);
            }
            if !self.resource_types.contains(t.resource_type.letter()) {
                return Err(SasError::ResourceType);
            }
        }
        if let Some(any) = t.permission {
            if !any.chars().any(|c| self.permissions.contains(c)) {
                return Err(SasError::Permission);
            }
        }
        match self.service_kind()? {
            Kind::Container if t.container.is_none() => Err(SasError::Scope),
            Kind::Blob if t.blob.is_none() => Err(SasError::Scope),
            _ => Ok(()),
        }
    }
}

/// Parses a SAS time: ISO 8601 UTC with or without seconds' fraction, or a bare date.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    // `YYYY-MM-DDTHH:MMZ` (no seconds) and `YYYY-MM-DD` are also accepted by the service.
    if let Some(hm) = s.strip_suffix('Z') {
        if hm.len() == 16 {
            return OffsetDateTime::parse(&format!("{hm}:00Z"), &Rfc3339).ok();
        }
    }
    if s.len() == 10 {
        return OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339).ok();
    }
    None
}

/// Whether `ip` is the single address or within the inclusive range `a-b` of `spec`.
fn ip_in(spec: &str, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match spec.split_once('-') {
        Some((a, b)) => match (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) {
            (Ok(a), Ok(b)) => a <= ip && ip <= b,
            _ => false,
        },
        None => spec.trim().parse::<IpAddr>().is_ok_and(|a| a == ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn target(perm: &'static str) -> Target<'static> {
        Target {
            container: Some("c"),
            blob: Some("b"),
            resource_type: ResourceType::Object,
            permission: Some(perm),
            client_ip: Some("127.0.0.1".parse().expect("ip")),
            https: false,
            now: time::macros::datetime!(2026-11-25 12:00 UTC),
        }
    }

    #[test]
    fn kinds() {
        let k = |s: &str| Sas::parse(&q(s)).and_then(|s| s.kind());
        assert_eq!(k("sv=2020-12-06&sr=c&sig=AA=="), Ok(Kind::Container));
        assert_eq!(k("sv=2020-12-06&sr=b&sig=AA=="), Ok(Kind::Blob));
        assert_eq!(k("sv=2020-12-06&ss=b&srt=sco&sig=AA=="), Ok(Kind::Account));
        assert_eq!(
            k("sv=2020-12-06&sr=b&skoid=x&sig=AA=="),
            Ok(Kind::UserDelegation)
        );
        assert_eq!(
            k("sv=2020-12-06&sr=b&si=pol&sig=AA=="),
            Ok(Kind::StoredPolicy)
        );
        assert!(k("sv=2020-12-06&sr=b").is_err());
        assert!(k("sr=b&sig=AA==").is_err());
    }

    #[test]
    fn checks_time_ip_protocol_permission() {
        let s = Sas::parse(&q(
            "sv=2025-01-05&sr=b&sp=r&st=2026-11-25T11:00:00Z&se=2026-11-25T13:00:00Z&sip=127.0.0.1&sig=AA==",
        ))
        .expect("parse");
        assert_eq!(s.check(&target("r")), Ok(()));
        assert_eq!(s.check(&target("w")), Err(SasError::Permission));
        let mut late = target("r");
        late.now = time::macros::datetime!(2026-11-25 13:00 UTC);
        assert!(matches!(s.check(&late), Err(SasError::Time(_))));
        let mut early = target("r");
        early.now = time::macros::datetime!(2026-11-25 10:59 UTC);
        assert!(matches!(s.check(&early), Err(SasError::Time(_))));
        let mut elsewhere = target("r");
        elsewhere.client_ip = Some("10.0.0.1".parse().expect("ip"));
        assert_eq!(s.check(&elsewhere), Err(SasError::SourceIp));
        let https = Sas::parse(&q(
            "sv=2025-01-05&sr=b&sp=r&se=2027-01-01&spr=https&sig=AA==",
        ))
        .expect("parse");
        assert_eq!(https.check(&target("r")), Err(SasError::Protocol));
    }

    #[test]
    fn network_limits_are_checked_without_a_time_window() {
        // A stored-policy SAS carries no se: its IP limit still holds.
        let s = Sas::parse(&q(
            "sv=2025-01-05&sr=c&si=pol&sip=10.0.0.0-10.255.255.255&sig=AA==",
        ))
        .expect("parse");
        assert_eq!(s.check_network(&target("r")), Err(SasError::SourceIp));
        let mut inside = target("r");
        inside.client_ip = Some("10.1.2.3".parse().expect("ip"));
        assert_eq!(s.check_network(&inside), Ok(()));
    }

    #[test]
    fn ip_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(ip_in("10.0.0.1-10.0.0.9", ip("10.0.0.5")));
        assert!(!ip_in("10.0.0.1-10.0.0.9", ip("10.0.1.5")));
        assert!(ip_in("127.0.0.1", ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn times() {
        assert!(parse_time("2026-11-25T10:00:00Z").is_some());
        assert!(parse_time("2026-11-25T10:00:00.1234567Z").is_some());
        assert!(parse_time("2026-11-25T10:00Z").is_some());
        assert!(parse_time("2026-11-25").is_some());
        assert!(parse_time("tomorrow").is_none());
    }

    #[test]
    fn stored_policy_sas_verifies_with_the_key_and_takes_the_policy() {
        // azure-storage-blob 12.31.1: generate_blob_sas("acct", "data", "dir/obj.bin",
        // account_key=base64(b"stored-policy-test-key-0123456789"), policy_id="readpol")
        let s = Sas::parse(&q(
            "sv=2026-10-06&si=readpol&sr=b&sig=aADnYpSegG6TjRboHoOq5gvpPvnZVwIEVFXfYt1vMWs=",
        ))
        .expect("parse");
        let key = b"stored-policy-test-key-0123456789".to_vec();
        assert_eq!(s.kind(), Ok(Kind::StoredPolicy));
        assert_eq!(
            s.verify("acct", "data", "dir/obj.bin", std::slice::from_ref(&key)),
            Ok(())
        );
        assert_eq!(
            s.verify("acct", "data", "dir/other", &[key]),
            Err(SasError::BadSignature)
        );
        // Without its policy the SAS has no window.
        assert!(s.check(&target("r")).is_err());
        let p = s.with_policy("2026-11-25T11:00:00Z", "2026-11-25T13:00:00Z", "r");
        assert_eq!(p.check(&target("r")), Ok(()));
        assert_eq!(p.check(&target("w")), Err(SasError::Permission));
        // A field the SAS gives is its own.
        let own = Sas {
            permissions: "w".into(),
            ..s.clone()
        };
        let p = own.with_policy("", "2026-11-25T13:00:00Z", "r");
        assert_eq!(p.check(&target("w")), Ok(()));
        // Outside the policy's window.
        let late = s.with_policy("", "2026-11-25T11:00:00Z", "r");
        assert!(matches!(
            late.check_window(time::macros::datetime!(2026-11-25 12:00 UTC)),
            Err(SasError::Time(_))
        ));
    }
}
