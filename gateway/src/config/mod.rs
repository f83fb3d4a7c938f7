//! Configuration: the TOML file, command-line overrides and the embedded default, resolved
//! into [`Settings`]. Unknown keys and bad values are errors that name the key.

mod cluster;
mod file;
mod kv;
mod parse;

pub use file::{
    load_file, parse_file, BlobSection, BucketSection, CacheSection, ClusterSection, EntraSection,
    FileConfig, ListenSection, OriginSection, PolicySection, PrincipalSection, S3Section,
    SecretRef, ServerSection,
};
pub use parse::{parse_duration, parse_size};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cistern_auth::policy::{BucketScope, Permission, Permissions, Principal};
use cistern_auth::Secret;
use cistern_cache::Consistency;

use cluster::cluster_settings;
use parse::{entra_source, parse_addr, policy, read_secret, retry_policy};

/// The development access key of the embedded default.
pub const DEV_ACCESS_KEY: &str = "cistern-dev";
/// The development secret of the embedded default.
pub const DEV_SECRET: &str = "cistern-dev-secret";
/// The development Blob account of the embedded default (the emulator convention).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known key for [`DEV_ACCOUNT`] (public, as in Azurite's documentation).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

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
    /// `--peers-etcd URL,URL,…`.
    pub peers_etcd: Option<String>,
    /// `--peers-k8s [NAMESPACE/]SERVICE:PORT`.
    pub peers_k8s: Option<String>,
    /// `--advertise ADDR`.
    pub advertise: Option<String>,
    /// `--zone ZONE`.
    pub zone: Option<String>,
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
    /// Registrations in etcd (cache nodes register under a lease; everyone watches).
    Etcd {
        /// Client URLs, tried in turn.
        endpoints: Vec<String>,
        /// Key prefix (one per cluster).
        prefix: String,
        /// How long a registration outlives its node's last keep-alive.
        lease_ttl: Duration,
    },
    /// A Kubernetes Service's EndpointSlices (ready endpoints).
    Kubernetes {
        /// Namespace (default: the pod's).
        namespace: Option<String>,
        /// Service name.
        service: String,
        /// Peer port name or number.
        port: String,
        /// API server address, when not the pod's own (`kubectl proxy`).
        api: Option<String>,
    },
}

impl Members {
    /// Whether a registry says who is alive (bounded probing), rather than a list or DNS
    /// (every member probed).
    pub fn is_registry(&self) -> bool {
        matches!(self, Self::Etcd { .. } | Self::Kubernetes { .. })
    }
}

/// Another region's cache cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRegion {
    /// Its name.
    pub name: String,
    /// Its cache nodes' peer addresses.
    pub peers: Vec<String>,
    /// The time a chunk from it may take.
    pub timeout: Duration,
}

/// Cluster settings (absent: a single node).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The peer listener (cache nodes).
    pub peer_listen: Option<SocketAddr>,
    /// Membership.
    pub members: Members,
    /// The peer address other processes reach this node at (registered in etcd; how a
    /// Kubernetes node knows itself). Default: the peer listener, when it names a host.
    pub advertise: Option<String>,
    /// This process's zone ("" when none).
    pub zone: String,
    /// This cluster's region ("" when none).
    pub region: String,
    /// Other regions' clusters, asked before the origin, in order.
    pub regions: Vec<RemoteRegion>,
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
    /// A cache-only namespace (origin `none`): its limits.
    pub cache_only: Option<kv::CacheOnly>,
}

pub use kv::{CacheOnly, NO_ORIGIN};

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
    /// The unit an SSD hit reads and checks (one CRC32C each, kept in RAM).
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
    /// Timeouts and header limits of every listener.
    pub limits: crate::server::Limits,
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
        None => 4096,
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
        if name == NO_ORIGIN {
            return Err(err(
                &key,
                "`none` names no origin (a cache-only bucket's `origin = \"none\"`)",
            ));
        }
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
        let cache_only = kv::cache_only(&key, b)?;
        if cache_only.is_none() && !f.origins.contains_key(&b.origin) {
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
            populate_on_write: b.populate_on_write.unwrap_or(default_populate_on_write)
                && cache_only.is_none(),
            cache_only,
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
    let limits = server_limits(&f.server)?;

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
        limits,
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

/// `[server]`: timeouts between 1 s (100 ms for tests) and 1 h; a header limit between
/// 1 KiB and 1 MiB.
fn server_limits(f: &ServerSection) -> Result<crate::server::Limits, ConfigError> {
    let d = crate::server::Limits::default();
    let dur = |key: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(v) => {
            let t = parse_duration(v).map_err(|e| err(key, e))?;
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&t) {
                return Err(err(key, "must be between 100ms and 1h"));
            }
            Ok(t)
        }
    };
    let max_header_bytes = match &f.max_header_bytes {
        None => d.max_header_bytes,
        Some(v) => {
            let n = parse_size(v).map_err(|e| err("server.max_header_bytes", e))?;
            if !(1 << 10..=1 << 20).contains(&n) {
                return Err(err(
                    "server.max_header_bytes",
                    "must be between 1KiB and 1MiB",
                ));
            }
            n as usize
        }
    };
    Ok(crate::server::Limits {
        header_read_timeout: dur(
            "server.header_read_timeout",
            &f.header_read_timeout,
            d.header_read_timeout,
        )?,
        body_read_timeout: dur(
            "server.body_read_timeout",
            &f.body_read_timeout,
            d.body_read_timeout,
        )?,
        max_header_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_limits_default_and_refuse_bad_values() {
        let s = resolve_str("");
        let limits = s.expect("defaults").limits;
        assert_eq!(limits.header_read_timeout, Duration::from_secs(30));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_header_bytes, 64 << 10);
        let s = resolve_str(
            "[server]\nheader_read_timeout = \"2s\"\nbody_read_timeout = \"500ms\"\nmax_header_bytes = \"16KiB\"\n",
        );
        let limits = s.expect("set").limits;
        assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(limits.body_read_timeout, Duration::from_millis(500));
        assert_eq!(limits.max_header_bytes, 16 << 10);
        for (bad, key) in [
            ("header_read_timeout = \"0s\"", "server.header_read_timeout"),
            (
                "header_read_timeout = \"soon\"",
                "server.header_read_timeout",
            ),
            ("body_read_timeout = \"2h\"", "server.body_read_timeout"),
            ("max_header_bytes = \"100\"", "server.max_header_bytes"),
            ("max_header_bytes = \"2MiB\"", "server.max_header_bytes"),
            ("max_header_bytes = \"lots\"", "server.max_header_bytes"),
        ] {
            let e = resolve_str(&format!("[server]\n{bad}\n")).expect_err(bad);
            assert!(e.to_string().starts_with(key), "{bad}: {e}");
        }
        let e = toml::from_str::<FileConfig>("[server]\nidle = \"1s\"\n").expect_err("unknown key");
        assert!(e.to_string().contains("idle"), "{e}");
    }

    fn resolve_str(extra: &str) -> Result<Settings, ConfigError> {
        let f: FileConfig = toml::from_str(&format!(
            "[origins.o]\nkind = \"fs\"\nroot = \"/tmp\"\n[[principals]]\naccess_key = \"k\"\nsecret = {{ env = \"CISTERN_TEST_LIMITS_SECRET\" }}\nbuckets = [\"*\"]\npermissions = [\"read\"]\n{extra}"
        ))
        .expect("parse");
        std::env::set_var("CISTERN_TEST_LIMITS_SECRET", "s3cret");
        resolve(Some(f), &Overrides::default())
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
