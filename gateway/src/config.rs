//! Configuration: the TOML file, command-line overrides and the embedded default, resolved
//! into [`Settings`]. Unknown keys and bad values are errors that name the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cistern_auth::policy::{BucketScope, Permission, Permissions, Principal};
use cistern_auth::Secret;
use cistern_cache::Consistency;
use serde::Deserialize;

/// The development access key of the embedded default.
pub const DEV_ACCESS_KEY: &str = "cistern-dev";
/// The development secret of the embedded default.
pub const DEV_SECRET: &str = "cistern-dev-secret";
/// The development Blob account of the embedded default (the emulator convention).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known key for [`DEV_ACCOUNT`] (public, as in Azurite's documentation).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listener addresses.
    #[serde(default)]
    pub listen: ListenSection,
    /// Cache sizes and location.
    #[serde(default)]
    pub cache: CacheSection,
    /// S3 front settings.
    #[serde(default)]
    pub s3: S3Section,
    /// Blob front settings.
    #[serde(default)]
    pub blob: BlobSection,
    /// Policy for buckets that do not set their own (and for auto-exposed buckets).
    #[serde(default)]
    pub defaults: PolicySection,
    /// Origins by name.
    #[serde(default)]
    pub origins: BTreeMap<String, OriginSection>,
    /// Exposed buckets by name.
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketSection>,
    /// S3 principals.
    #[serde(default)]
    pub principals: Vec<PrincipalSection>,
    /// The cache cluster.
    #[serde(default)]
    pub cluster: ClusterSection,
}

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `all` (default), `front` or `cache`.
    pub role: Option<String>,
    /// The peer listener of a cache node.
    pub peer_listen: Option<String>,
    /// Static membership: every cache node's peer address, the same list on every node.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Membership from DNS, `NAME:PORT` (a Kubernetes headless Service), re-resolved.
    pub peers_dns: Option<String>,
    /// The cluster secret (at least 16 bytes) authenticating peer traffic.
    pub secret: Option<SecretRef>,
    /// This cache node's relative capacity (default 1).
    pub weight: Option<f64>,
    /// How long a peer request may take before the next node is asked. Default `5s`.
    pub peer_timeout: Option<String>,
    /// Health probe interval. Default `1s`.
    pub probe_interval: Option<String>,
    /// RAM for hot chunks owned by other nodes. Default `256MiB` on a front, `64MiB` else.
    pub near_cache: Option<String>,
    /// Reads of one chunk within about two seconds that make it hot. Default 64; 0 = never.
    pub hot_threshold: Option<u32>,
    /// How many nodes serve a hot chunk. Default 3.
    pub hot_replicas: Option<usize>,
}

/// `[listen]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// S3 listener. Default: `127.0.0.1:9000`.
    pub s3: Option<String>,
    /// Azure Blob listener. Default: `127.0.0.1:10000`.
    pub blob: Option<String>,
    /// One listener for both dialects, chosen per request. Default: none.
    pub dual: Option<String>,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`). Default: `127.0.0.1:9464`.
    pub admin: Option<String>,
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// SSD cache directory. Default: `./.cistern`.
    pub dir: Option<PathBuf>,
    /// RAM cache size. Default: `1GiB`.
    pub memory: Option<String>,
    /// SSD cache size (`0` for none). Default: `4GiB`.
    pub disk: Option<String>,
    /// Chunk size. Default: `4MiB`.
    pub chunk_size: Option<String>,
    /// The unit chunks are stored on SSD in: an SSD hit reads only the pieces its range
    /// touches. Default: `256KiB` (or the chunk size, when smaller).
    pub piece_size: Option<String>,
    /// Chunks fetched ahead of the one being sent. Default: 4.
    pub readahead: Option<usize>,
    /// RAM that responses may hold outside the RAM cache at once (bytes read from SSD, a
    /// peer or the origin and not yet written to the client). Default: `32MiB`.
    pub stream_memory: Option<String>,
}

/// `[s3]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Domains under which `<bucket>.<domain>` is a virtual-hosted bucket. Default: none
    /// (path-style only).
    #[serde(default)]
    pub virtual_host_domains: Vec<String>,
    /// The region clients sign for; requests signed for another are refused as S3 does.
    /// Default: `us-east-1`.
    pub region: Option<String>,
    /// Serve plain GetObject/HeadObject ahead of s3s (see `s3/fast.rs`). Default: `true`.
    pub fast_path: Option<bool>,
}

/// `[blob]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSection {
    /// Suffixes under which `<account>.<suffix>` is a host-style account URL, e.g.
    /// `blob.core.windows.net`. Default: none (path-style `/<account>/…` only).
    #[serde(default)]
    pub host_domains: Vec<String>,
}

/// A consistency policy as written in configuration.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// `ttl` | `immutable` | `strict`. Default: `ttl`.
    pub consistency: Option<String>,
    /// Metadata TTL for `ttl`. Default: `5s`.
    pub ttl: Option<String>,
    /// Anonymous read and list allowed. Default: false.
    pub public_read: Option<bool>,
    /// Keep what is written through Cistern in the cache. Default: false.
    pub populate_on_write: Option<bool>,
}

/// `[origins.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OriginSection {
    /// A local directory.
    Fs {
        /// The directory; each subdirectory is a bucket.
        root: PathBuf,
        /// Expose every bucket of this origin under its own name. Default: false.
        #[serde(default)]
        expose_buckets: bool,
    },
    /// An S3-compatible endpoint.
    S3 {
        /// `http(s)://host[:port]`.
        endpoint: String,
        /// Signing region. Default: `us-east-1`.
        region: Option<String>,
        /// Access key id (not secret).
        access_key_id: Option<String>,
        /// Secret access key, by reference.
        secret_access_key: Option<SecretRef>,
        /// Path-style addressing. Default: true.
        path_style: Option<bool>,
        /// Expose every bucket of this origin under its own name. Default: false.
        #[serde(default)]
        expose_buckets: bool,
        /// Per-attempt timeout. Default: `30s`.
        timeout: Option<String>,
        /// Retries of retryable failures. Default: 3.
        retries: Option<u32>,
    },
    /// An Azure Blob Storage account (or Azurite).
    AzureBlob {
        /// `https://<account>.blob.core.windows.net`, or an emulator URL with the account
        /// in the path (`http://127.0.0.1:10000/devstoreaccount1`).
        endpoint: String,
        /// Storage account name.
        account: String,
        /// Account key (Shared Key), by reference.
        key: Option<SecretRef>,
        /// SAS token, by reference (instead of a key).
        sas: Option<SecretRef>,
        /// Microsoft Entra ID (instead of a key or SAS).
        entra: Option<Box<EntraSection>>,
        /// Expose every container of this origin under its own name. Default: false.
        #[serde(default)]
        expose_buckets: bool,
        /// Per-attempt timeout. Default: `30s`.
        timeout: Option<String>,
        /// Retries of retryable failures. Default: 3.
        retries: Option<u32>,
    },
}

/// `entra = { kind = "workload_identity" | "managed_identity" | "client_secret", … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraSection {
    /// Which flow.
    pub kind: String,
    /// Tenant (workload identity: default `$AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// Application or user-assigned identity client id (workload identity: default
    /// `$AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Workload identity: the projected token (default `$AZURE_FEDERATED_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    /// Authority (default `$AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com/`).
    pub authority: Option<String>,
    /// Managed identity: the token endpoint (default the instance metadata service).
    pub endpoint: Option<String>,
    /// Client secret flow: the secret, by reference.
    pub client_secret: Option<SecretRef>,
}

/// A secret by reference: exactly one of `env` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the secret.
    pub env: Option<String>,
    /// File holding the secret (trailing newline ignored).
    pub file: Option<PathBuf>,
}

/// `[buckets.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSection {
    /// Origin name.
    pub origin: String,
    /// Bucket at the origin. Default: the exposed name.
    pub origin_bucket: Option<String>,
    /// `ttl` | `immutable` | `strict`. Default: `[defaults]`.
    pub consistency: Option<String>,
    /// TTL for `ttl`.
    pub ttl: Option<String>,
    /// Anonymous read and list allowed.
    pub public_read: Option<bool>,
    /// Keep what is written through Cistern in the cache (checkpoints read right back).
    pub populate_on_write: Option<bool>,
}

/// `[[principals]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSection {
    /// Access key id.
    pub access_key: String,
    /// Secret, by reference.
    pub secret: SecretRef,
    /// Exposed bucket names, or `["*"]` for all.
    pub buckets: Vec<String>,
    /// `read`, `list`, `write`, `delete`.
    pub permissions: Vec<String>,
}

/// Command-line overrides (each wins over the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data DIR`.
    pub data: Option<PathBuf>,
    /// `--cache-dir DIR`.
    pub cache_dir: Option<PathBuf>,
    /// `--s3-listen ADDR`.
    pub s3_listen: Option<String>,
    /// `--blob-listen ADDR`.
    pub blob_listen: Option<String>,
    /// `--dual-listen ADDR`.
    pub dual_listen: Option<String>,
    /// `--admin-listen ADDR`.
    pub admin_listen: Option<String>,
    /// `--memory-cache SIZE`.
    pub memory_cache: Option<String>,
    /// `--disk-cache SIZE`.
    pub disk_cache: Option<String>,
    /// `--chunk-size SIZE`.
    pub chunk_size: Option<String>,
    /// `--role all|front|cache`.
    pub role: Option<String>,
    /// `--peer-listen ADDR`.
    pub peer_listen: Option<String>,
    /// `--peers ADDR,ADDR,…`.
    pub peers: Option<String>,
    /// `--peers-dns NAME:PORT`.
    pub peers_dns: Option<String>,
    /// `--cluster-secret-file FILE`.
    pub cluster_secret_file: Option<PathBuf>,
}

/// What a process does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Front and cache node in one process (the default, and the single-machine mode).
    All,
    /// Speaks S3 and Blob, holds no SSD cache, reads chunks from the cache nodes.
    Front,
    /// Serves only the peer protocol (and the admin listener).
    Cache,
}

/// Where the cache nodes are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// A fixed list of peer addresses.
    Static(Vec<String>),
    /// A DNS name whose addresses (with this port) are the nodes.
    Dns {
        /// The name.
        name: String,
        /// The peer port.
        port: u16,
    },
}

/// Cluster settings (absent: a single node).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The peer listener (cache nodes).
    pub peer_listen: Option<SocketAddr>,
    /// Membership.
    pub members: Members,
    /// The cluster secret.
    pub secret: Secret,
    /// This node's weight.
    pub weight: f64,
    /// Peer request timeout.
    pub peer_timeout: Duration,
    /// Health probe interval.
    pub probe_interval: Duration,
    /// Near-cache bytes.
    pub near_cache_bytes: u64,
    /// Hot threshold.
    pub hot_threshold: u32,
    /// Hot replicas.
    pub hot_replicas: usize,
}

/// A resolved origin.
#[derive(Debug, Clone)]
pub enum OriginSpec {
    /// A directory.
    Fs {
        /// Root directory.
        root: PathBuf,
    },
    /// An S3 endpoint.
    S3(crate::origin::s3::S3OriginConfig),
    /// An Azure Blob account.
    Azure(crate::origin::azure::AzureOriginConfig),
}

/// A resolved origin with its name and options.
#[derive(Debug, Clone)]
pub struct OriginSettings {
    /// Name.
    pub name: String,
    /// What it is.
    pub spec: OriginSpec,
    /// Whether all its buckets are exposed.
    pub expose_buckets: bool,
    /// Timeout and retries.
    pub retry: crate::origin::layers::RetryPolicy,
}

/// A resolved bucket.
#[derive(Debug, Clone)]
pub struct BucketSettings {
    /// Exposed name.
    pub name: String,
    /// Origin name.
    pub origin: String,
    /// Bucket at the origin.
    pub origin_bucket: String,
    /// Policy.
    pub consistency: Consistency,
    /// Anonymous read and list.
    pub public_read: bool,
    /// Populate the cache on write.
    pub populate_on_write: bool,
}

/// Everything the binary needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// S3 listener.
    pub s3_listen: SocketAddr,
    /// Blob listener.
    pub blob_listen: SocketAddr,
    /// Both-dialects listener.
    pub dual_listen: Option<SocketAddr>,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// SSD cache directory.
    pub cache_dir: PathBuf,
    /// RAM cache bytes.
    pub memory_bytes: u64,
    /// SSD cache bytes.
    pub disk_bytes: u64,
    /// Chunk bytes.
    pub chunk_size: u64,
    /// SSD piece bytes.
    pub piece_size: u64,
    /// Response bytes held outside the RAM cache at once.
    pub stream_memory: u64,
    /// Read-ahead window in chunks.
    pub readahead: usize,
    /// This process's role.
    pub role: Role,
    /// The cluster, when there is one.
    pub cluster: Option<ClusterSettings>,
    /// Virtual-host domains.
    pub virtual_host_domains: Vec<String>,
    /// Blob host-style domains.
    pub blob_host_domains: Vec<String>,
    /// Region clients sign for.
    pub region: String,
    /// Whether plain object reads skip s3s.
    pub s3_fast_path: bool,
    /// Origins.
    pub origins: Vec<OriginSettings>,
    /// Buckets.
    pub buckets: Vec<BucketSettings>,
    /// Policy of auto-exposed buckets.
    pub default_consistency: Consistency,
    /// Whether auto-exposed buckets are public-read.
    pub default_public_read: bool,
    /// Whether auto-exposed buckets populate the cache on write.
    pub default_populate_on_write: bool,
    /// Principals.
    pub principals: Vec<Principal>,
    /// Whether the development credentials are active.
    pub dev_credentials: bool,
    /// A data directory that was created at start-up (to say so).
    pub created_data_dir: Option<PathBuf>,
}

/// A configuration error naming the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn err(key: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {msg}"))
}

/// Parses a size like `512MiB`, `4GiB`, `64KiB`, `1048576`, `10MB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. 512MiB, 4GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(v as u64)
}

/// Parses a duration like `30s`, `500ms`, `5m`, `1h`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 30s, 5m)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m, h, d)"
            ))
        }
    })
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| err(key, format!("invalid address {s:?} (expected IP:PORT)")))
}

fn policy(key: &str, p: &PolicySection, base: Consistency) -> Result<Consistency, ConfigError> {
    let ttl = p
        .ttl
        .as_deref()
        .map(|t| parse_duration(t).map_err(|e| err(&format!("{key}.ttl"), e)))
        .transpose()?;
    match p.consistency.as_deref() {
        None => Ok(match (ttl, base) {
            (Some(t), _) => Consistency::Ttl(t),
            (None, b) => b,
        }),
        Some("ttl") => Ok(Consistency::Ttl(ttl.unwrap_or(Duration::from_secs(5)))),
        Some(other @ ("immutable" | "strict")) => {
            if ttl.is_some() {
                return Err(err(
                    &format!("{key}.ttl"),
                    format!("a ttl makes no sense with consistency = \"{other}\""),
                ));
            }
            Ok(if other == "immutable" {
                Consistency::Immutable
            } else {
                Consistency::Strict
            })
        }
        Some(other) => Err(err(
            &format!("{key}.consistency"),
            format!("unknown policy {other:?} (expected \"ttl\", \"immutable\" or \"strict\")"),
        )),
    }
}

fn entra_source(
    key: &str,
    e: &EntraSection,
) -> Result<crate::origin::entra::EntraSource, ConfigError> {
    use crate::origin::entra::EntraSource;
    let env = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let need = |field: &str, given: &Option<String>, var: Option<&str>| {
        given.clone().or_else(|| var.and_then(env)).ok_or_else(|| {
            err(
                &format!("{key}.{field}"),
                match var {
                    Some(v) => format!("missing (and ${v} is not set)"),
                    None => "missing".to_string(),
                },
            )
        })
    };
    let authority = e
        .authority
        .clone()
        .or_else(|| env("AZURE_AUTHORITY_HOST"))
        .unwrap_or_else(|| "https://login.microsoftonline.com/".into());
    match e.kind.as_str() {
        "workload_identity" => Ok(EntraSource::WorkloadIdentity {
            authority,
            tenant_id: need("tenant_id", &e.tenant_id, Some("AZURE_TENANT_ID"))?,
            client_id: need("client_id", &e.client_id, Some("AZURE_CLIENT_ID"))?,
            token_file: PathBuf::from(need(
                "token_file",
                &e.token_file.as_ref().map(|p| p.display().to_string()),
                Some("AZURE_FEDERATED_TOKEN_FILE"),
            )?),
        }),
        "managed_identity" => Ok(EntraSource::ManagedIdentity {
            endpoint: e
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://169.254.169.254/metadata/identity/oauth2/token".into()),
            client_id: e.client_id.clone(),
        }),
        "client_secret" => Ok(EntraSource::ClientSecret {
            authority,
            tenant_id: need("tenant_id", &e.tenant_id, None)?,
            client_id: need("client_id", &e.client_id, None)?,
            secret: read_secret(
                &format!("{key}.client_secret"),
                e.client_secret
                    .as_ref()
                    .ok_or_else(|| err(&format!("{key}.client_secret"), "missing"))?,
            )?,
        }),
        other => Err(err(
            &format!("{key}.kind"),
            format!("unknown kind {other:?} (workload_identity, managed_identity, client_secret)"),
        )),
    }
}

fn retry_policy(
    key: &str,
    timeout: &Option<String>,
    retries: &Option<u32>,
) -> Result<crate::origin::layers::RetryPolicy, ConfigError> {
    let mut retry = crate::origin::layers::RetryPolicy::default();
    if let Some(t) = timeout {
        retry.timeout = parse_duration(t).map_err(|e| err(&format!("{key}.timeout"), e))?;
    }
    if let Some(r) = retries {
        retry.retries = *r;
    }
    Ok(retry)
}

fn read_secret(key: &str, r: &SecretRef) -> Result<Secret, ConfigError> {
    match (&r.env, &r.file) {
        (Some(var), None) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| err(key, format!("environment variable {var} is not set"))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|e| err(key, format!("cannot read {}: {e}", path.display()))),
        _ => Err(err(
            key,
            "give exactly one of env = \"VAR\" or file = \"PATH\"",
        )),
    }
}

/// Reads and parses a configuration file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    // The error names the line, column and key but never quotes the file: a line may hold a
    // secret someone pasted inline by mistake.
    toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |sp| {
            let before = &text[..sp.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, col)
        });
        ConfigError(format!(
            "{}:{line}:{col}: {}",
            path.display(),
            redact_quoted(e.message().trim_end())
        ))
    })
}

/// Replaces every double-quoted value in a parser message with `"…"` (values may be secrets;
/// key names are quoted with backticks and stay).
fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Resolves a file (or the embedded default when `file` is `None`) and overrides.
pub fn resolve(file: Option<FileConfig>, o: &Overrides) -> Result<Settings, ConfigError> {
    let embedded = file.is_none();
    let mut f = file.unwrap_or_default();
    let mut created_data_dir = None;

    if embedded || o.data.is_some() {
        let data = o.data.clone().unwrap_or_else(|| PathBuf::from("data"));
        if !data.exists() {
            std::fs::create_dir_all(&data)
                .map_err(|e| err("--data", format!("cannot create {}: {e}", data.display())))?;
            created_data_dir = Some(data.clone());
        }
        if f.origins.contains_key("local") {
            return Err(err(
                "--data",
                "an origin named \"local\" is already configured",
            ));
        }
        f.origins.insert(
            "local".into(),
            OriginSection::Fs {
                root: data,
                expose_buckets: true,
            },
        );
    }

    let s3_listen = parse_addr(
        "listen.s3",
        o.s3_listen
            .as_deref()
            .or(f.listen.s3.as_deref())
            .unwrap_or("127.0.0.1:9000"),
    )?;
    let blob_listen = parse_addr(
        "listen.blob",
        o.blob_listen
            .as_deref()
            .or(f.listen.blob.as_deref())
            .unwrap_or("127.0.0.1:10000"),
    )?;
    let dual_listen = o
        .dual_listen
        .as_deref()
        .or(f.listen.dual.as_deref())
        .map(|a| parse_addr("listen.dual", a))
        .transpose()?;
    let admin_listen = parse_addr(
        "listen.admin",
        o.admin_listen
            .as_deref()
            .or(f.listen.admin.as_deref())
            .unwrap_or("127.0.0.1:9464"),
    )?;
    let size = |key: &str, flag: &Option<String>, file: &Option<String>, default: &str| {
        let v = flag.as_deref().or(file.as_deref()).unwrap_or(default);
        parse_size(v).map_err(|e| err(key, e))
    };
    let memory_bytes = size("cache.memory", &o.memory_cache, &f.cache.memory, "1GiB")?;
    let disk_bytes = size("cache.disk", &o.disk_cache, &f.cache.disk, "4GiB")?;
    let chunk_size = size(
        "cache.chunk_size",
        &o.chunk_size,
        &f.cache.chunk_size,
        "4MiB",
    )?;
    if !(64 * 1024..=256 << 20).contains(&chunk_size) {
        return Err(err("cache.chunk_size", "must be between 64KiB and 256MiB"));
    }
    let piece_size = match &f.cache.piece_size {
        Some(v) => parse_size(v).map_err(|e| err("cache.piece_size", e))?,
        None => (256 * 1024).min(chunk_size / 4096 * 4096),
    };
    if piece_size < 4096 || piece_size % 4096 != 0 || piece_size > chunk_size {
        return Err(err(
            "cache.piece_size",
            "must be a multiple of 4KiB between 4KiB and the chunk size",
        ));
    }
    let stream_memory = size(
        "cache.stream_memory",
        &None,
        &f.cache.stream_memory,
        "32MiB",
    )?;
    if stream_memory < 1 << 20 {
        return Err(err("cache.stream_memory", "must be at least 1MiB"));
    }
    if memory_bytes < chunk_size * 2 {
        return Err(err("cache.memory", "must hold at least two chunks"));
    }
    let readahead = f.cache.readahead.unwrap_or(4);
    if !(1..=64).contains(&readahead) {
        return Err(err("cache.readahead", "must be between 1 and 64"));
    }
    let cache_dir = o
        .cache_dir
        .clone()
        .or(f.cache.dir.clone())
        .unwrap_or_else(|| PathBuf::from(".cistern"));

    let default_consistency = policy("defaults", &f.defaults, Consistency::default())?;
    let default_public_read = f.defaults.public_read.unwrap_or(false);
    let default_populate_on_write = f.defaults.populate_on_write.unwrap_or(false);

    let mut origins = Vec::new();
    for (name, sec) in &f.origins {
        let key = format!("origins.{name}");
        let (spec, expose, retry) = match sec {
            OriginSection::Fs {
                root,
                expose_buckets,
            } => {
                if !root.is_dir() {
                    return Err(err(
                        &format!("{key}.root"),
                        format!("{} is not a directory", root.display()),
                    ));
                }
                (
                    OriginSpec::Fs { root: root.clone() },
                    *expose_buckets,
                    crate::origin::layers::RetryPolicy::default(),
                )
            }
            OriginSection::S3 {
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                path_style,
                expose_buckets,
                timeout,
                retries,
            } => {
                let secret = secret_access_key
                    .as_ref()
                    .map(|r| read_secret(&format!("{key}.secret_access_key"), r))
                    .transpose()?;
                if access_key_id.is_some() != secret.is_some() {
                    return Err(err(&key, "access_key_id and secret_access_key go together"));
                }
                let retry = retry_policy(&key, timeout, retries)?;
                let cfg = crate::origin::s3::S3OriginConfig {
                    endpoint: endpoint.clone(),
                    region: region.clone().unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret,
                    path_style: path_style.unwrap_or(true),
                };
                crate::origin::s3::S3Origin::new(&cfg)
                    .map_err(|e| err(&format!("{key}.endpoint"), e))?;
                (OriginSpec::S3(cfg), *expose_buckets, retry)
            }
            OriginSection::AzureBlob {
                endpoint,
                account,
                key: account_key,
                sas,
                entra,
                expose_buckets,
                timeout,
                retries,
            } => {
                use crate::origin::azure::{AzureCredential, AzureOrigin, AzureOriginConfig};
                let credential = match (account_key, sas, entra) {
                    (Some(k), None, None) => {
                        AzureCredential::SharedKey(read_secret(&format!("{key}.key"), k)?)
                    }
                    (None, Some(t), None) => {
                        AzureCredential::Sas(read_secret(&format!("{key}.sas"), t)?)
                    }
                    (None, None, Some(e)) => {
                        AzureCredential::Entra(entra_source(&format!("{key}.entra"), e)?)
                    }
                    (None, None, None) => AzureCredential::Anonymous,
                    _ => return Err(err(&key, "give at most one of key, sas and entra")),
                };
                let cfg = AzureOriginConfig {
                    endpoint: endpoint.clone(),
                    account: account.clone(),
                    credential,
                };
                AzureOrigin::new(&cfg).map_err(|e| err(&key, e))?;
                let retry = retry_policy(&key, timeout, retries)?;
                (OriginSpec::Azure(cfg), *expose_buckets, retry)
            }
        };
        origins.push(OriginSettings {
            name: name.clone(),
            spec,
            expose_buckets: expose,
            retry,
        });
    }

    let mut buckets = Vec::new();
    for (name, b) in &f.buckets {
        let key = format!("buckets.{name}");
        if !f.origins.contains_key(&b.origin) {
            return Err(err(
                &format!("{key}.origin"),
                format!("unknown origin {:?}", b.origin),
            ));
        }
        if name.is_empty() || name.contains('/') {
            return Err(err(&key, "invalid bucket name"));
        }
        let p = PolicySection {
            consistency: b.consistency.clone(),
            ttl: b.ttl.clone(),
            public_read: b.public_read,
            populate_on_write: b.populate_on_write,
        };
        buckets.push(BucketSettings {
            name: name.clone(),
            origin: b.origin.clone(),
            origin_bucket: b.origin_bucket.clone().unwrap_or_else(|| name.clone()),
            consistency: policy(&key, &p, default_consistency)?,
            public_read: b.public_read.unwrap_or(default_public_read),
            populate_on_write: b.populate_on_write.unwrap_or(default_populate_on_write),
        });
    }

    let mut principals = Vec::new();
    for (i, p) in f.principals.iter().enumerate() {
        let key = format!("principals[{i}]");
        let secret = read_secret(&format!("{key}.secret"), &p.secret)?;
        let mut perms = Vec::new();
        for s in &p.permissions {
            perms.push(Permission::parse(s).ok_or_else(|| {
                err(
                    &format!("{key}.permissions"),
                    format!("unknown permission {s:?} (read, list, write, delete, admin)"),
                )
            })?);
        }
        let scope = if p.buckets.iter().any(|b| b == "*") {
            BucketScope::All
        } else {
            BucketScope::Only(p.buckets.clone())
        };
        principals.push(Principal {
            access_key: p.access_key.clone(),
            secret,
            buckets: scope,
            permissions: perms.into_iter().collect(),
        });
    }
    let mut dev_credentials = principals.iter().any(|p| {
        p.access_key == DEV_ACCESS_KEY
            || p.secret.expose() == DEV_SECRET
            || p.secret.expose() == DEV_ACCOUNT_KEY
    });
    if embedded {
        for (access_key, secret) in [(DEV_ACCESS_KEY, DEV_SECRET), (DEV_ACCOUNT, DEV_ACCOUNT_KEY)] {
            principals.push(Principal {
                access_key: access_key.into(),
                secret: Secret::new(secret),
                buckets: BucketScope::All,
                permissions: Permissions::ALL,
            });
        }
        dev_credentials = true;
    }
    if dev_credentials {
        let listeners = [
            ("listen.s3", Some(s3_listen)),
            ("listen.blob", Some(blob_listen)),
            ("listen.dual", dual_listen),
            ("listen.admin", Some(admin_listen)),
        ];
        for (flag, addr) in listeners.into_iter().filter_map(|(f, a)| Some((f, a?))) {
            if !addr.ip().is_loopback() {
                return Err(err(
                    flag,
                    format!("refusing to listen on non-loopback {addr} with the development credentials; configure [[principals]] with your own secrets"),
                ));
            }
        }
    }

    let (role, cluster) = cluster_settings(&f.cluster, o)?;

    Ok(Settings {
        role,
        cluster,
        s3_listen,
        blob_listen,
        dual_listen,
        admin_listen,
        cache_dir,
        memory_bytes,
        disk_bytes,
        chunk_size,
        piece_size,
        stream_memory,
        readahead,
        virtual_host_domains: f.s3.virtual_host_domains,
        blob_host_domains: f.blob.host_domains,
        region: f.s3.region.unwrap_or_else(|| "us-east-1".into()),
        s3_fast_path: f.s3.fast_path.unwrap_or(true),
        origins,
        buckets,
        default_consistency,
        default_public_read,
        default_populate_on_write,
        principals,
        dev_credentials,
        created_data_dir,
    })
}

fn cluster_settings(
    c: &ClusterSection,
    o: &Overrides,
) -> Result<(Role, Option<ClusterSettings>), ConfigError> {
    let role = match o.role.as_deref().or(c.role.as_deref()).unwrap_or("all") {
        "all" => Role::All,
        "front" => Role::Front,
        "cache" => Role::Cache,
        other => {
            return Err(err(
                "cluster.role",
                format!("unknown role {other:?} (all, front, cache)"),
            ))
        }
    };
    let peer_listen = o
        .peer_listen
        .as_deref()
        .or(c.peer_listen.as_deref())
        .map(|a| parse_addr("cluster.peer_listen", a))
        .transpose()?;
    let peers: Vec<String> = match &o.peers {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        None => c.peers.clone(),
    };
    for p in &peers {
        if p.rsplit_once(':')
            .and_then(|(h, port)| (!h.is_empty()).then(|| port.parse::<u16>().ok())?)
            .is_none()
        {
            return Err(err("cluster.peers", format!("{p:?} is not HOST:PORT")));
        }
    }
    let dns = o.peers_dns.as_deref().or(c.peers_dns.as_deref());
    let members = match (peers.is_empty(), dns) {
        (false, Some(_)) => {
            return Err(err(
                "cluster.peers",
                "give either peers or peers_dns, not both",
            ))
        }
        (false, None) => Some(Members::Static(peers)),
        (true, Some(d)) => {
            let (name, port) = d
                .rsplit_once(':')
                .and_then(|(n, p)| Some((n, p.parse::<u16>().ok()?)))
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| err("cluster.peers_dns", format!("{d:?} is not NAME:PORT")))?;
            Some(Members::Dns {
                name: name.to_string(),
                port,
            })
        }
        (true, None) => None,
    };
    let Some(members) = members else {
        return match (role, peer_listen) {
            (Role::All, None) => Ok((Role::All, None)),
            (Role::All, Some(_)) => Err(err(
                "cluster.peer_listen",
                "a peer listener needs the cluster's members (--peers or --peers-dns)",
            )),
            _ => Err(err(
                "cluster.role",
                "front and cache roles need the cluster's members (--peers or --peers-dns)",
            )),
        };
    };
    if role == Role::Front && peer_listen.is_some() {
        return Err(err(
            "cluster.peer_listen",
            "a front is not a cache node and has no peer listener",
        ));
    }
    if role != Role::Front && peer_listen.is_none() {
        return Err(err(
            "cluster.peer_listen",
            "a cache node (role all or cache) in a cluster needs --peer-listen",
        ));
    }
    let secret =
        match (&o.cluster_secret_file, &c.secret) {
            (Some(file), _) => read_secret(
                "--cluster-secret-file",
                &SecretRef {
                    env: None,
                    file: Some(file.clone()),
                },
            )?,
            (None, Some(r)) => read_secret("cluster.secret", r)?,
            (None, None) => return Err(err(
                "cluster.secret",
                "a cluster needs a secret (--cluster-secret-file): peer traffic is authenticated",
            )),
        };
    if secret.expose().len() < cistern_auth::peer::MIN_SECRET_LEN {
        return Err(err(
            "cluster.secret",
            format!(
                "must be at least {} bytes",
                cistern_auth::peer::MIN_SECRET_LEN
            ),
        ));
    }
    let weight = c.weight.unwrap_or(1.0);
    if !(weight.is_finite() && weight > 0.0) {
        return Err(err("cluster.weight", "must be a positive number"));
    }
    let dur = |key: &str, v: &Option<String>, default: &str| {
        parse_duration(v.as_deref().unwrap_or(default))
            .map_err(|e| err(key, e))
            .and_then(|d| {
                if d.is_zero() {
                    Err(err(key, "must be longer than zero"))
                } else {
                    Ok(d)
                }
            })
    };
    let near_default = if role == Role::Front {
        "256MiB"
    } else {
        "64MiB"
    };
    Ok((
        role,
        Some(ClusterSettings {
            peer_listen,
            members,
            secret,
            weight,
            peer_timeout: dur("cluster.peer_timeout", &c.peer_timeout, "5s")?,
            probe_interval: dur("cluster.probe_interval", &c.probe_interval, "1s")?,
            near_cache_bytes: parse_size(c.near_cache.as_deref().unwrap_or(near_default))
                .map_err(|e| err("cluster.near_cache", e))?,
            hot_threshold: c.hot_threshold.unwrap_or(64),
            hot_replicas: c.hot_replicas.unwrap_or(3).clamp(1, 16),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e =
            toml::from_str::<FileConfig>("[cache]\nmemroy = \"1GiB\"\n").expect_err("unknown key");
        assert!(e.to_string().contains("memroy"), "{e}");
        let e = toml::from_str::<FileConfig>(
            "[origins.o]\nkind = \"fs\"\nroot = \"/tmp\"\nbogus = 1\n",
        )
        .expect_err("unknown origin key");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = toml::from_str::<FileConfig>("[origins.o]\nkind = \"ftp\"\n")
            .expect_err("unknown kind");
        assert!(e.to_string().contains("ftp"), "{e}");
    }

    #[test]
    fn parse_errors_never_quote_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[principals]]\naccess_key = \"k\"\nsecret = \"hunter2-inline\"\n",
        )
        .expect("write");
        let e = load_file(&path)
            .expect_err("inline secret is not a reference")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains(":3:"), "names the line: {e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let f: FileConfig = toml::from_str(
            "[origins.o]\nkind = \"fs\"\nroot = \"/tmp\"\n[buckets.b]\norigin = \"o\"\nconsistency = \"sometimes\"\n",
        )
        .expect("parse");
        let e = resolve(Some(f), &Overrides::default()).expect_err("bad policy");
        assert!(e.to_string().contains("buckets.b.consistency"), "{e}");
        let f: FileConfig = toml::from_str("[buckets.b]\norigin = \"nope\"\n").expect("parse");
        let e = resolve(Some(f), &Overrides::default()).expect_err("unknown origin");
        assert!(e.to_string().contains("buckets.b.origin"), "{e}");
    }

    #[test]
    fn cluster_flags_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef-long-enough\n").expect("write");
        let short = dir.path().join("short");
        std::fs::write(&short, "tiny\n").expect("write");
        let base = || Overrides {
            data: Some(dir.path().join("data")),
            ..Default::default()
        };
        let fail = |o: Overrides, key: &str| {
            let e = resolve(None, &o).expect_err("refused");
            assert!(e.to_string().contains(key), "{key}: {e}");
        };
        // No cluster: the single-node default.
        let s = resolve(None, &base()).expect("default");
        assert_eq!(s.role, Role::All);
        assert!(s.cluster.is_none());
        fail(
            Overrides {
                role: Some("front".into()),
                ..base()
            },
            "cluster.role",
        );
        fail(
            Overrides {
                role: Some("edge".into()),
                ..base()
            },
            "cluster.role",
        );
        let peers = || Some("127.0.0.1:7001,127.0.0.1:7002".to_string());
        fail(
            Overrides {
                role: Some("cache".into()),
                peers: peers(),
                cluster_secret_file: Some(secret.clone()),
                ..base()
            },
            "cluster.peer_listen",
        );
        fail(
            Overrides {
                role: Some("front".into()),
                peers: peers(),
                ..base()
            },
            "cluster.secret",
        );
        fail(
            Overrides {
                role: Some("front".into()),
                peers: peers(),
                cluster_secret_file: Some(short.clone()),
                ..base()
            },
            "cluster.secret",
        );
        fail(
            Overrides {
                role: Some("front".into()),
                peers: Some("no-port".into()),
                cluster_secret_file: Some(secret.clone()),
                ..base()
            },
            "cluster.peers",
        );
        fail(
            Overrides {
                role: Some("front".into()),
                peers: peers(),
                peers_dns: Some("cistern.ns.svc:7070".into()),
                cluster_secret_file: Some(secret.clone()),
                ..base()
            },
            "cluster.peers",
        );
        let s = resolve(
            None,
            &Overrides {
                role: Some("cache".into()),
                peer_listen: Some("127.0.0.1:7001".into()),
                peers_dns: Some("cistern-cache.ns.svc.cluster.local:7070".into()),
                cluster_secret_file: Some(secret.clone()),
                ..base()
            },
        )
        .expect("a cache node");
        let c = s.cluster.expect("cluster");
        assert_eq!(s.role, Role::Cache);
        assert_eq!(
            c.members,
            Members::Dns {
                name: "cistern-cache.ns.svc.cluster.local".into(),
                port: 7070
            }
        );
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "secret in Debug"
        );
    }

    #[test]
    fn dev_credentials_stay_on_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = Overrides {
            data: Some(dir.path().join("data")),
            s3_listen: Some("0.0.0.0:9000".into()),
            ..Default::default()
        };
        let e = resolve(None, &o).expect_err("non-loopback with dev credentials");
        assert!(e.to_string().contains("listen.s3"), "{e}");
        let o = Overrides {
            data: Some(dir.path().join("fresh")),
            ..Default::default()
        };
        let s = resolve(None, &o).expect("embedded default");
        assert!(s.dev_credentials);
        assert_eq!(s.created_data_dir, Some(dir.path().join("fresh")));
        assert_eq!(s.s3_listen.to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn policies_resolve() {
        std::env::set_var("CISTERN_TEST_SECRET", "s3cret");
        let f: FileConfig = toml::from_str(
            r#"
[defaults]
ttl = "1m"
[origins.o]
kind = "fs"
root = "/tmp"
[buckets.a]
origin = "o"
[buckets.b]
origin = "o"
consistency = "immutable"
public_read = true
[[principals]]
access_key = "k"
secret = { env = "CISTERN_TEST_SECRET" }
buckets = ["a"]
permissions = ["read", "list"]
"#,
        )
        .expect("parse");
        let s = resolve(Some(f), &Overrides::default()).expect("resolve");
        assert_eq!(
            s.buckets[0].consistency,
            Consistency::Ttl(Duration::from_secs(60))
        );
        assert_eq!(s.buckets[1].consistency, Consistency::Immutable);
        assert!(s.buckets[1].public_read);
        assert_eq!(s.principals[0].secret.expose(), "s3cret");
        assert!(!s.dev_credentials);
    }
}
