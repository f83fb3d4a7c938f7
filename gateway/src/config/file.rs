//! The configuration file: its TOML sections as parsed (unknown keys refused), and reading
//! it with errors that name the line and key but never quote the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

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
    /// Connection limits of every listener.
    #[serde(default)]
    pub server: ServerSection,
}

/// `[server]`: how long a client may take and how much it may send in request headers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Time to send a request's headers, counted from the connection's first byte wait or
    /// from the end of the previous request (an idle keep-alive connection). Default: `30s`.
    pub header_read_timeout: Option<String>,
    /// Longest wait for the next piece of a request body. Default: `60s`.
    pub body_read_timeout: Option<String>,
    /// Largest request head (request line and headers). Default: `64KiB`.
    pub max_header_bytes: Option<String>,
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
    /// Membership from etcd: its client URLs (`http://10.0.0.5:2379`).
    #[serde(default)]
    pub peers_etcd: Vec<String>,
    /// The etcd key prefix of this cluster. Default `/cistern`.
    pub etcd_prefix: Option<String>,
    /// How long an etcd registration outlives its node. Default `10s`.
    pub lease_ttl: Option<String>,
    /// Membership from a Kubernetes Service's EndpointSlices: `[NAMESPACE/]SERVICE:PORT`
    /// (PORT: the peer port's name or number).
    pub peers_k8s: Option<String>,
    /// The Kubernetes API address when not in a pod (e.g. `http://127.0.0.1:8001`).
    pub k8s_api: Option<String>,
    /// The peer address others reach this node at. Default: `peer_listen`.
    pub advertise: Option<String>,
    /// This process's zone (e.g. the node's `topology.kubernetes.io/zone`).
    pub zone: Option<String>,
    /// This cluster's region (names it in the other regions' configuration and in logs).
    pub region: Option<String>,
    /// Other regions' clusters, asked for a chunk (only what they hold) before the origin, in
    /// this order.
    #[serde(default)]
    pub regions: Vec<RegionSection>,
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

/// `[[cluster.regions]]`: another region's cache cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSection {
    /// The region's name.
    pub name: String,
    /// Its cache nodes' peer addresses (`HOST:PORT`), as that cluster lists them.
    pub peers: Vec<String>,
    /// How long a chunk from it may take before the origin is asked. Default `2s`.
    pub timeout: Option<String>,
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
    /// Origin name, or `none` for a cache-only namespace (objects live only in the cache).
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
    /// Cache-only: the most bytes the namespace keeps on each cache node; the least recently
    /// used objects are evicted beyond it. Default: none (only the cache's size bounds it).
    pub quota: Option<String>,
    /// Cache-only: how long an object lives after it was written. Default: until evicted.
    pub expire_after: Option<String>,
    /// Cache-only: how many cache nodes keep each object, in distinct zones where there are
    /// zones. Default: 1.
    pub replicas: Option<usize>,
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

/// Reads and parses a configuration file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    parse_file(&text, &path.display().to_string())
}

/// Parses the text of a configuration file; errors name `origin` (the file's path).
pub fn parse_file(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    // The error names the line, column and key but never quotes the file: a line may hold a
    // secret someone pasted inline by mistake.
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |sp| {
            let before = &text[..sp.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, col)
        });
        ConfigError(format!(
            "{origin}:{line}:{col}: {}",
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
