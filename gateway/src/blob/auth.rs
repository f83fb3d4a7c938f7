//! Authentication (Shared Key, Shared Key Lite, account and service SAS, anonymous) and
//! authorization (the policy, then the SAS's own limits) for the Blob front, on every
//! request, cache hits included.
//!
//! A Blob account is a principal: its access key is the account name and its secret, base64
//! decoded, the account key. Every account sees the same containers (Cistern's buckets),
//! filtered by the principal's scope.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cistern_auth::policy::{Decision, Permission, Policy};
use cistern_auth::sas::{self, Kind, ResourceType, Sas, Target};
use cistern_auth::sharedkey::{self, Request as SkRequest};
use http::HeaderMap;

use super::error::BlobError;
use super::router::{is_account_name, Operation, Routed};
use crate::error::ErrorKind;
use crate::origin::{Access, ForeignCredential};
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
    /// A credential only the origin can judge (an Entra ID bearer token, a user-delegation or
    /// stored-policy SAS): asked once per token and scope, the answer cached until the token
    /// expires (at most [`JUDGEMENT_TTL`]).
    Delegated(Box<Delegated>),
}

/// A credential the origin judges.
#[derive(Debug, Clone)]
pub struct Delegated {
    /// What is forwarded to the origin.
    pub cred: ForeignCredential,
    /// When it expires, when that can be read from it.
    pub expires: Option<SystemTime>,
    /// The SAS fields, to check what only Cistern can see (the caller's IP, the protocol).
    pub sas: Option<Sas>,
}

/// The longest an origin's judgement is trusted.
pub const JUDGEMENT_TTL: Duration = Duration::from_secs(300);
/// How long a refusal is remembered (so a flood of bad tokens does not reach the origin).
const REFUSAL_TTL: Duration = Duration::from_secs(30);
/// Most judgements kept.
const MAX_JUDGEMENTS: usize = 100_000;

type JudgementKey = ([u8; 32], String, Option<String>, Access);

/// Cached origin judgements, by token digest and scope.
#[derive(Default)]
pub struct Judgements {
    map: Mutex<HashMap<JudgementKey, (bool, Instant)>>,
    /// Containers' stored access policies, as their origin lists them, briefly.
    policies: Mutex<HashMap<String, (Instant, Policies)>>,
}

/// One stored access policy (a container ACL's signed identifier): id, start, expiry,
/// permissions (each may be empty).
type StoredPolicy = (String, String, String, String);

/// A container's stored access policies.
type Policies = Arc<Vec<StoredPolicy>>;

/// How long a container's stored access policies are reused (Azure: a change takes effect
/// within 30 seconds). A Set Container ACL through this front drops them at once.
const POLICY_TTL: Duration = Duration::from_secs(30);

impl Judgements {
    /// The stored access policy `id` of `container` as (start, expiry, permissions), from the
    /// container's origin (only an Azure origin keeps them); `None` when it has none so named.
    pub async fn stored_policy(
        &self,
        pipeline: &Arc<Pipeline>,
        container: &str,
        id: &str,
    ) -> Result<Option<(String, String, String)>, BlobError> {
        let cached = {
            let map = self.policies.lock().unwrap_or_else(|e| e.into_inner());
            map.get(container)
                .filter(|(at, _)| at.elapsed() < POLICY_TTL)
                // A policy not known yet may have just been set at the origin: asked again.
                // (Only a SAS signed with the account key gets here.)
                .filter(|(_, p)| p.iter().any(|(pid, ..)| pid == id))
                .map(|(_, p)| Arc::clone(p))
        };
        let all = match cached {
            Some(p) => p,
            None => {
                let b = match pipeline.catalog().resolve(container).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == ErrorKind::NoSuchBucket => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if b.origin.dialect() != crate::origin::Dialect::Blob {
                    return Ok(None);
                }
                let mut req = crate::origin::Passthrough::read(
                    http::Method::GET,
                    container.to_string(),
                    String::new(),
                );
                req.query = vec![
                    ("restype".into(), "container".into()),
                    ("comp".into(), "acl".into()),
                ];
                let resp = pipeline.relay(&b, req).await?;
                let mut body = Vec::new();
                let mut stream = resp.body;
                while let Some(piece) = futures::StreamExt::next(&mut stream).await {
                    body.extend_from_slice(&piece?);
                }
                let p = Arc::new(parse_signed_identifiers(&String::from_utf8_lossy(&body)));
                let mut map = self.policies.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() >= MAX_JUDGEMENTS {
                    map.clear();
                }
                map.insert(container.to_string(), (Instant::now(), Arc::clone(&p)));
                p
            }
        };
        Ok(all
            .iter()
            .find(|(pid, ..)| pid == id)
            .map(|(_, st, se, sp)| (st.clone(), se.clone(), sp.clone())))
    }

    /// Forgets a container's stored access policies (after Set Container ACL).
    pub fn forget_policies(&self, container: &str) {
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(container);
    }

    fn get(&self, k: &JudgementKey) -> Option<bool> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(ok, _)| *ok)
    }

    fn put(&self, k: JudgementKey, ok: bool, until: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_JUDGEMENTS {
            // Expired entries go first; only a map full of live ones is dropped whole.
            let now = Instant::now();
            map.retain(|_, (_, t)| *t > now);
            if map.len() >= MAX_JUDGEMENTS {
                map.clear();
            }
        }
        map.insert(k, (ok, until));
    }
}

/// The signed identifiers of a Get Container ACL answer.
pub(crate) fn parse_signed_identifiers(xml: &str) -> Vec<StoredPolicy> {
    #[derive(serde::Deserialize, Default)]
    struct Doc {
        #[serde(rename = "SignedIdentifier", default)]
        ids: Vec<Ident>,
    }
    #[derive(serde::Deserialize)]
    struct Ident {
        #[serde(rename = "Id", default)]
        id: String,
        #[serde(rename = "AccessPolicy", default)]
        policy: Option<Policy>,
    }
    #[derive(serde::Deserialize, Default)]
    struct Policy {
        #[serde(rename = "Start", default)]
        start: String,
        #[serde(rename = "Expiry", default)]
        expiry: String,
        #[serde(rename = "Permission", default)]
        permission: String,
    }
    let doc: Doc = quick_xml::de::from_str(xml).unwrap_or_default();
    doc.ids
        .into_iter()
        .map(|i| {
            let p = i.policy.unwrap_or_default();
            (i.id, p.start, p.expiry, p.permission)
        })
        .collect()
}

/// A digest of the credential that identifies it unambiguously (every field length-prefixed,
/// so no two different credentials share it).
fn digest(cred: &ForeignCredential) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    match cred {
        ForeignCredential::Bearer(t) => {
            field(b"bearer");
            field(t.as_bytes());
        }
        ForeignCredential::Sas(pairs) => {
            field(b"sas");
            for (k, v) in pairs {
                field(k.as_bytes());
                field(v.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// The `exp` claim of a JWT, read without verifying it (the origin verifies the token; this
/// only bounds how long its answer is cached).
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
}

/// The SAS fields of a query (everything a SAS adds: `s…` and `rsc…` parameters), forwarded
/// to the origin as they came.
fn sas_pairs(query: &[(String, String)]) -> Vec<(String, String)> {
    query
        .iter()
        .filter(|(k, _)| is_sas_parameter(k))
        .cloned()
        .collect()
}

/// Whether a query parameter belongs to a SAS (`sv`, `sig`, `sp`, … and the `rsc*` overrides).
pub fn is_sas_parameter(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    (n.starts_with('s') && n != "snapshot") || n.starts_with("rsc")
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
        CreateContainer => n(Some(Permission::Write), Some("cw"), ResourceType::Container),
        DeleteContainer => n(Some(Permission::Delete), Some("d"), ResourceType::Container),
        GetBlob | GetBlobProperties | GetBlobMetadata | GetBlockList => {
            n(Some(Permission::Read), Some("r"), ResourceType::Object)
        }
        // A SAS with `c` but not `w` creates new blobs only (see [`create_only`]).
        PutBlob | CopyBlob => n(Some(Permission::Write), Some("wc"), ResourceType::Object),
        PutBlock | PutBlockFromUrl | PutBlockList | SetBlobMetadata | SetBlobProperties => {
            n(Some(Permission::Write), Some("w"), ResourceType::Object)
        }
        DeleteBlob => n(Some(Permission::Delete), Some("d"), ResourceType::Object),
        AppendBlock => n(Some(Permission::Write), Some("aw"), ResourceType::Object),
        // The batch itself only needs an authenticated caller (any SAS, of any resource type:
        // see `authorize`); each sub-request is authenticated and authorized on its own.
        BlobBatch => n(None, None, ResourceType::Service),
        // Preflights are answered before authentication, as Azure answers them.
        Preflight => None,
        Unsupported(name) => relayed_needs(name),
    }
}

/// What the operations Cistern relays to an Azure origin need (see `relay::RELAYED`); `None`
/// for the ones it neither serves nor relays.
fn relayed_needs(name: &str) -> Option<Needs> {
    use ResourceType::{Container, Object, Service};
    let (permission, letters, level) = match name {
        "GetBlobServiceProperties" | "GetBlobServiceStats" => (Permission::List, "r", Service),
        "SetBlobServiceProperties" => (Permission::Admin, "w", Service),
        "FindBlobsByTags" => (Permission::List, "f", Container),
        "SetContainerMetadata" => (Permission::Write, "w", Container),
        "GetContainerACL" => (Permission::List, "r", Container),
        "SetContainerACL" | "RestoreContainer" => (Permission::Admin, "w", Container),
        "LeaseContainer" => (Permission::Write, "w", Container),
        "GetPageRanges" | "QueryBlobContents" => (Permission::Read, "r", Object),
        "GetBlobTags" => (Permission::Read, "t", Object),
        "SetBlobTags" => (Permission::Write, "t", Object),
        "PutPage" | "AppendBlobSeal" | "LeaseBlob" | "SnapshotBlob" | "AbortCopyBlob"
        | "SetBlobTier" | "UndeleteBlob" | "SetBlobExpiry" => (Permission::Write, "w", Object),
        "SetBlobImmutabilityPolicy" => (Permission::Admin, "i", Object),
        "SetBlobLegalHold" => (Permission::Admin, "l", Object),
        _ => return None,
    };
    Some(Needs {
        permission: Some(permission),
        sas_letters: Some(letters),
        level,
    })
}

/// Whether the caller may only create the blob, not replace one: a SAS with `c` (create) but
/// not `w` (write), on the operations that create blobs. The write is then sent create-only,
/// and an existing blob refuses it as Azure does (`AuthorizationPermissionMismatch`).
pub fn create_only(caller: &Caller, op: Operation) -> bool {
    matches!(op, Operation::PutBlob | Operation::CopyBlob)
        && matches!(caller, Caller::Sas(s) if !s.permissions.contains('w'))
}

/// Container-level operations a service SAS (`sr=c`, `sr=b`) may make: only listing and
/// filtering the blobs within. Azure refuses it the container's own properties, metadata,
/// ACL, lease, creation and deletion.
fn service_sas_allows(op: Operation) -> bool {
    match op {
        Operation::ListBlobs | Operation::GetAccountInformation => true,
        Operation::Unsupported(name) => matches!(name, "FindBlobsByTags" | "BlobBatch"),
        _ => false,
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
        if let Some(token) = value.strip_prefix("Bearer ") {
            let token = token.trim();
            if token.is_empty() {
                return Err(BlobError::auth_failed("The bearer token is empty."));
            }
            return Ok(Caller::Delegated(Box::new(Delegated {
                expires: jwt_expiry(token),
                cred: ForeignCredential::Bearer(token.to_string()),
                sas: None,
            })));
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
        let s = Sas::parse(req.query)?;
        if s.kind()? == Kind::StoredPolicy && accounts.contains(&r.account) {
            // Signed with this Cistern's account key: verified here, its window and
            // permissions taken from the container's policy when authorizing. A SAS that
            // this key did not sign may be the origin account's own: the origin judges it.
            let signed = s.verify(
                &r.account,
                r.container.as_deref().unwrap_or(""),
                r.blob.as_deref().unwrap_or(""),
                accounts.keys(&r.account),
            );
            if signed.is_ok() {
                return Ok(Caller::Sas(Box::new(s)));
            }
        }
        if matches!(s.kind()?, Kind::UserDelegation | Kind::StoredPolicy) {
            return Ok(Caller::Delegated(Box::new(Delegated {
                expires: sas::parse_time(&s.expiry).map(SystemTime::from),
                cred: ForeignCredential::Sas(sas_pairs(req.query)),
                sas: Some(s),
            })));
        }
        if !accounts.contains(&r.account) {
            return Err(BlobError::auth_failed(
                "The account is not known to this Cistern.",
            ));
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
#[allow(clippy::too_many_arguments)] // reason: the request's facts, passed as they are
pub async fn authorize(
    policy: &Policy,
    pipeline: &Arc<Pipeline>,
    judgements: &Judgements,
    caller: &Caller,
    r: &Routed,
    peer: Option<IpAddr>,
    now: SystemTime,
) -> Result<(), BlobError> {
    if let Caller::Delegated(d) = caller {
        return judged(pipeline, judgements, d, r, peer, now).await;
    }
    let Some(need) = needs(r.op) else {
        // Unimplemented operations: authenticated callers learn it is not implemented.
        return match caller {
            Caller::Anonymous => Err(BlobError::resource_not_found()),
            _ => Ok(()),
        };
    };
    // A stored-policy SAS takes its window and permissions from the container's policy.
    let with_policy;
    let caller = match caller {
        Caller::Sas(s) if !s.identifier.is_empty() => {
            // What only Cistern sees first (the caller's address and protocol).
            s.check_network(&Target {
                container: r.container.as_deref(),
                blob: r.blob.as_deref(),
                resource_type: need.level,
                permission: None,
                client_ip: peer,
                https: false,
                now: time::OffsetDateTime::from(now),
            })?;
            let container = r.container.as_deref().unwrap_or("");
            let (start, expiry, perms) = judgements
                .stored_policy(pipeline, container, &s.identifier)
                .await?
                .ok_or_else(BlobError::authorization_failure)?;
            let merged = s.with_policy(&start, &expiry, &perms);
            // Outside the policy's window the policy grants nothing (Azure: 403
            // AuthorizationFailure, not an authentication failure).
            if merged
                .check_window(time::OffsetDateTime::from(now))
                .is_err()
            {
                return Err(BlobError::authorization_failure());
            }
            with_policy = Caller::Sas(Box::new(merged));
            &with_policy
        }
        c => c,
    };
    if let Caller::Sas(s) = caller {
        if need.level == ResourceType::Container
            && !s.resource.is_empty()
            && !service_sas_allows(r.op)
        {
            return Err(BlobError::permission_mismatch());
        }
        let level = if r.op == Operation::BlobBatch {
            any_level(s, need.level)
        } else {
            need.level
        };
        s.check(&Target {
            container: r.container.as_deref(),
            blob: r.blob.as_deref(),
            resource_type: level,
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
        return match caller {
            Caller::Anonymous => Err(BlobError::resource_not_found()),
            // Relayed account-wide requests (service properties, Find Blobs by Tags) answer
            // for every container: only a principal granted everywhere may make them.
            _ if matches!(r.op, Operation::Unsupported(_))
                && !policy.authorize_everywhere(&r.account, perm) =>
            {
                Err(BlobError::authorization_failure())
            }
            // Account-level listing: any authenticated caller; filtered by scope.
            _ => Ok(()),
        };
    };
    match caller {
        Caller::Key | Caller::Sas(_) | Caller::Delegated(_) => {
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

/// A resource type an account SAS grants (`srt`), for operations that accept any (a Blob
/// Batch: Azure takes an account SAS of any resource type for the batch itself).
fn any_level(s: &Sas, default: ResourceType) -> ResourceType {
    [
        ('o', ResourceType::Object),
        ('c', ResourceType::Container),
        ('s', ResourceType::Service),
    ]
    .into_iter()
    .find(|(c, _)| s.resource_types.contains(*c))
    .map_or(default, |(_, t)| t)
}

/// Asks the bucket's origin (once per token and scope) whether a delegated credential may do
/// what the request asks. What only Cistern sees — the caller's IP and protocol, and for a
/// user-delegation SAS its own time window and permissions — is checked here first: the
/// origin would see Cistern's address, not the client's.
async fn judged(
    pipeline: &Arc<Pipeline>,
    judgements: &Judgements,
    d: &Delegated,
    r: &Routed,
    peer: Option<IpAddr>,
    now: SystemTime,
) -> Result<(), BlobError> {
    let refused = || {
        BlobError::new(
            http::StatusCode::FORBIDDEN,
            "AuthorizationFailure",
            "This request is not authorized to perform this operation.",
        )
    };
    let Some(need) = needs(r.op) else {
        return Ok(()); // authenticated enough to learn it is not implemented
    };
    if let Some(s) = &d.sas {
        let target = Target {
            container: r.container.as_deref(),
            blob: r.blob.as_deref(),
            resource_type: need.level,
            permission: need.sas_letters,
            client_ip: peer,
            https: false,
            now: time::OffsetDateTime::from(now),
        };
        if s.kind().ok() == Some(Kind::UserDelegation) {
            s.check(&target)?;
        } else {
            // A stored policy holds the window and permissions (the origin checks those); the
            // caller's IP and protocol only Cistern can see.
            s.check_network(&target)?;
        }
    }
    if d.expires.is_some_and(|t| t <= now) {
        return Err(BlobError::auth_failed("The token has expired."));
    }
    let Some(container) = r.container.as_deref() else {
        return Err(BlobError::auth_failed(
            "Account-level operations need the account key or an account SAS.",
        ));
    };
    if matches!(
        need.permission,
        Some(Permission::Write | Permission::Delete)
    ) {
        // The origin can only be asked about reads without side effects.
        return Err(BlobError::auth_failed(
            "Writes need the account key, or an account or service SAS.",
        ));
    }
    let access = match (need.permission, r.op) {
        (Some(Permission::Read), _) => Access::Read,
        (_, Operation::ListBlobs) => Access::List,
        _ => Access::Bucket,
    };
    // A credential not yet judged must not learn which containers exist.
    let binding = match pipeline.catalog().resolve(container).await {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NoSuchBucket => return Err(refused()),
        Err(e) => return Err(e.into()),
    };
    let key: JudgementKey = (
        digest(&d.cred),
        format!("{}/{}", binding.origin_name, binding.origin_bucket),
        r.blob.clone().filter(|_| access == Access::Read),
        access,
    );
    let allowed = match judgements.get(&key) {
        Some(ok) => ok,
        None => {
            let ok = match binding
                .origin
                .judge(&binding.origin_bucket, key.2.as_deref(), &d.cred, access)
                .await
            {
                Ok(ok) => ok,
                Err(e) if e.kind() == ErrorKind::NotImplemented => {
                    return Err(BlobError::auth_failed(
                        "This container's origin cannot judge bearer tokens or delegated SAS; use the account key or an account or service SAS.",
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            let ttl = if ok { JUDGEMENT_TTL } else { REFUSAL_TTL };
            let mut until = Instant::now() + ttl;
            if let Some(left) = d.expires.and_then(|t| t.duration_since(now).ok()) {
                until = until.min(Instant::now() + left);
            }
            judgements.put(key, ok, until);
            ok
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests;
