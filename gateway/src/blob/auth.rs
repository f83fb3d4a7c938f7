//! Authentication (Shared Key, Shared Key Lite, account and service SAS, anonymous) and
//! authorization (the policy, then the SAS's own limits) for the Blob front, on every
//! request, cache hits included.
//!
//! A Blob account is a principal: its access key is the account name and its secret, base64
//! decoded, the account key. Every account sees the same containers (Cistern's buckets),
//! filtered by the principal's scope.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cistern_auth::policy::{Decision, Permission, Policy};
use cistern_auth::sas::{self, Kind, ResourceType, Sas, Target};
use cistern_auth::sharedkey::{self, Request as SkRequest};
use http::HeaderMap;

use super::error::BlobError;
use super::router::{is_account_name, Operation, Routed};
use crate::error::ErrorKind;
use crate::pipeline::Pipeline;

/// How far a Shared Key request's date may be from ours, as Azure allows.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// Signed with the account key: the principal's full grant.
    Key,
    /// A verified SAS: the principal's grant, narrowed by the SAS.
    Sas(Box<Sas>),
}

/// What an operation needs.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// The policy permission, or `None` when authentication alone suffices.
    pub permission: Option<Permission>,
    /// SAS `sp` letters, any one of which allows it (`None`: any valid SAS).
    pub sas_letters: Option<&'static str>,
    /// The SAS resource type.
    pub level: ResourceType,
}

/// What each operation needs; `None` for the operations Cistern does not implement.
pub fn needs(op: Operation) -> Option<Needs> {
    use Operation::*;
    let n = |permission, sas_letters, level| {
        Some(Needs {
            permission,
            sas_letters,
            level,
        })
    };
    match op {
        ListContainers => n(Some(Permission::List), Some("l"), ResourceType::Service),
        GetAccountInformation => n(None, None, ResourceType::Service),
        GetContainerProperties | GetContainerMetadata => {
            n(Some(Permission::List), Some("rl"), ResourceType::Container)
        }
        ListBlobs => n(Some(Permission::List), Some("l"), ResourceType::Container),
        GetBlob | GetBlobProperties | GetBlobMetadata | GetBlockList => {
            n(Some(Permission::Read), Some("r"), ResourceType::Object)
        }
        Unsupported(_) => None,
    }
}

/// Decoded account keys by account name, from the policy's principals.
pub struct Accounts {
    keys: HashMap<String, Vec<Vec<u8>>>,
}

impl Accounts {
    /// Every principal whose access key is a valid account name and whose secret is base64
    /// is a Blob account.
    pub fn from_policy(policy: &Policy) -> Self {
        let keys = policy
            .principals()
            .filter(|p| is_account_name(&p.access_key))
            .filter_map(|p| {
                sharedkey::decode_key(p.secret.expose()).map(|k| (p.access_key.clone(), vec![k]))
            })
            .collect();
        Self { keys }
    }

    /// Whether `account` is known.
    pub fn contains(&self, account: &str) -> bool {
        self.keys.contains_key(account)
    }

    fn keys(&self, account: &str) -> &[Vec<u8>] {
        self.keys.get(account).map_or(&[], Vec::as_slice)
    }
}

/// The request facts authentication looks at.
pub struct Incoming<'a> {
    /// Method.
    pub method: &'a http::Method,
    /// Raw path.
    pub raw_path: &'a str,
    /// Raw query.
    pub raw_query: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The caller's address.
    pub peer: Option<IpAddr>,
}

/// Authenticates a routed request against the account it addresses.
pub fn authenticate(
    accounts: &Accounts,
    r: &Routed,
    req: &Incoming<'_>,
    now: SystemTime,
) -> Result<Caller, BlobError> {
    if let Some(value) = req.headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| BlobError::auth_failed("The Authorization header is not ASCII."))?;
        if value.starts_with("Bearer ") {
            return Err(BlobError::auth_failed(
                "Bearer tokens are not accepted by this Cistern; sign with the account key or a SAS.",
            ));
        }
        let auth = sharedkey::parse_authorization(value).ok_or_else(|| {
            BlobError::auth_failed(
                "The Authorization header is not a SharedKey or SharedKeyLite header.",
            )
        })?;
        if auth.account != r.account {
            return Err(BlobError::auth_failed(
                "The account in the Authorization header does not match the account in the URL.",
            ));
        }
        if !accounts.contains(&r.account) {
            return Err(BlobError::auth_failed(
                "The account is not known to this Cistern.",
            ));
        }
        check_date(req.headers, now)?;
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let sk = SkRequest {
            method: req.method.as_str(),
            account: &r.account,
            raw_path: req.raw_path,
            raw_query: req.raw_query,
            headers: &headers,
        };
        if !sharedkey::verify(&sk, auth.scheme, auth.signature, accounts.keys(&r.account)) {
            return Err(BlobError::auth_failed(
                "The MAC signature found in the HTTP request is not the same as any computed signature.",
            ));
        }
        return Ok(Caller::Key);
    }
    if sas::present(req.query) {
        if !accounts.contains(&r.account) {
            return Err(BlobError::auth_failed(
                "The account is not known to this Cistern.",
            ));
        }
        let s = Sas::parse(req.query)?;
        match s.kind()? {
            Kind::UserDelegation => {
                return Err(BlobError::auth_failed(
                    "User delegation SAS cannot be verified by this Cistern.",
                ))
            }
            Kind::StoredPolicy => {
                return Err(BlobError::auth_failed(
                    "SAS bound to a stored access policy (si) cannot be verified by this Cistern.",
                ))
            }
            Kind::Account | Kind::Container | Kind::Blob => {}
        }
        s.verify(
            &r.account,
            r.container.as_deref().unwrap_or(""),
            r.blob.as_deref().unwrap_or(""),
            accounts.keys(&r.account),
        )?;
        return Ok(Caller::Sas(Box::new(s)));
    }
    Ok(Caller::Anonymous)
}

/// Shared Key requests carry `x-ms-date` (or `Date`) within [`MAX_SKEW`] of now.
fn check_date(h: &HeaderMap, now: SystemTime) -> Result<(), BlobError> {
    let raw = h
        .get("x-ms-date")
        .or_else(|| h.get(http::header::DATE))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| BlobError::auth_failed("x-ms-date or Date header is required."))?;
    let t = httpdate::parse_http_date(raw).map_err(|_| {
        BlobError::auth_failed("The x-ms-date or Date header is not a valid RFC 1123 date.")
    })?;
    let skew = now
        .duration_since(t)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(BlobError::auth_failed(format!(
            "Request date header too old or too far in the future: '{raw}'"
        )));
    }
    Ok(())
}

/// Decides whether `caller` may perform the routed operation.
pub async fn authorize(
    policy: &Policy,
    pipeline: &Arc<Pipeline>,
    caller: &Caller,
    r: &Routed,
    peer: Option<IpAddr>,
    now: SystemTime,
) -> Result<(), BlobError> {
    let Some(need) = needs(r.op) else {
        // Unimplemented operations: authenticated callers learn it is not implemented.
        return match caller {
            Caller::Anonymous => Err(BlobError::resource_not_found()),
            _ => Ok(()),
        };
    };
    if let Caller::Sas(s) = caller {
        s.check(&Target {
            container: r.container.as_deref(),
            blob: r.blob.as_deref(),
            resource_type: need.level,
            permission: need.sas_letters,
            client_ip: peer,
            https: false,
            now: time::OffsetDateTime::from(now),
        })?;
    }
    let Some(perm) = need.permission else {
        return match caller {
            Caller::Anonymous => Err(BlobError::resource_not_found()),
            _ => Ok(()),
        };
    };
    let Some(container) = r.container.as_deref() else {
        // Account-level listing: any authenticated caller; filtered by scope.
        return match caller {
            Caller::Anonymous => Err(BlobError::resource_not_found()),
            _ => Ok(()),
        };
    };
    match caller {
        Caller::Key | Caller::Sas(_) => {
            match policy.authorize(Some(&r.account), container, perm, false) {
                Decision::Allow => Ok(()),
                _ => Err(BlobError::authorization_failure()),
            }
        }
        Caller::Anonymous => {
            if !pipeline.catalog().could_be_public(container) {
                return Err(BlobError::resource_not_found());
            }
            match pipeline.catalog().resolve(container).await {
                Ok(b)
                    if policy.authorize(None, container, perm, b.public_read)
                        == Decision::Allow =>
                {
                    Ok(())
                }
                Ok(_) => Err(BlobError::resource_not_found()),
                Err(e) if e.kind() == ErrorKind::NoSuchBucket => {
                    Err(BlobError::resource_not_found())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_within_fifteen_minutes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        let at =
            |t: SystemTime| http::HeaderValue::from_str(&httpdate::fmt_http_date(t)).expect("hv");
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
}
