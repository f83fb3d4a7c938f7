//! Values as written in the file or on the command line, parsed and checked: sizes,
//! durations, addresses, consistency policies, Entra sources, retry policies and secrets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cistern_auth::Secret;
use cistern_cache::Consistency;

use super::file::{EntraSection, PolicySection, SecretRef};
use super::{err, ConfigError};

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

pub(super) fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| err(key, format!("invalid address {s:?} (expected IP:PORT)")))
}

pub(super) fn policy(
    key: &str,
    p: &PolicySection,
    base: Consistency,
) -> Result<Consistency, ConfigError> {
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

pub(super) fn entra_source(
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

pub(super) fn retry_policy(
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

pub(super) fn read_secret(key: &str, r: &SecretRef) -> Result<Secret, ConfigError> {
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
}
