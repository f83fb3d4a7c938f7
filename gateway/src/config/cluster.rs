//! The cluster settings: role, membership (static peers or DNS), peer listener, secret and
//! tuning, from `[cluster]` and the command line, checked together.

use super::file::{ClusterSection, SecretRef};
use super::parse::{parse_addr, parse_duration, parse_size, read_secret};
use super::{err, ClusterSettings, ConfigError, Members, Overrides, Role};

pub(super) fn cluster_settings(
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

    use crate::config::resolve;

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
}
