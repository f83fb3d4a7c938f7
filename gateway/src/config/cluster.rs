//! The cluster settings: role, membership (static peers, DNS, etcd or Kubernetes
//! EndpointSlices), peer listener, zone, secret and tuning, from `[cluster]` and the command
//! line, checked together.

use super::file::{ClusterSection, SecretRef};
use super::parse::{parse_addr, parse_duration, parse_size, read_secret};
use super::{err, ClusterSettings, ConfigError, Members, Overrides, RemoteRegion, Role};

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
    let peers = listed(&o.peers, &c.peers);
    check_peers("cluster.peers", &peers)?;
    let dns = o.peers_dns.as_deref().or(c.peers_dns.as_deref());
    let etcd = listed(&o.peers_etcd, &c.peers_etcd);
    let k8s = o.peers_k8s.as_deref().or(c.peers_k8s.as_deref());
    let given = [
        !peers.is_empty(),
        dns.is_some(),
        !etcd.is_empty(),
        k8s.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(err(
            "cluster.peers",
            "give one of peers, peers_dns, peers_etcd and peers_k8s",
        ));
    }
    let members = if !peers.is_empty() {
        Some(Members::Static(peers))
    } else if let Some(d) = dns {
        let (name, port) = d
            .rsplit_once(':')
            .and_then(|(n, p)| Some((n, p.parse::<u16>().ok()?)))
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| err("cluster.peers_dns", format!("{d:?} is not NAME:PORT")))?;
        Some(Members::Dns {
            name: name.to_string(),
            port,
        })
    } else if !etcd.is_empty() {
        for e in &etcd {
            let ok = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']));
            if !ok {
                return Err(err(
                    "cluster.peers_etcd",
                    format!("{e:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let prefix = c.etcd_prefix.as_deref().unwrap_or("/cistern");
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(err(
                "cluster.etcd_prefix",
                "must start with / and name something (e.g. /cistern/prod)",
            ));
        }
        let lease_ttl = parse_duration(c.lease_ttl.as_deref().unwrap_or("10s"))
            .map_err(|e| err("cluster.lease_ttl", e))?;
        if lease_ttl < std::time::Duration::from_secs(2) {
            return Err(err("cluster.lease_ttl", "must be at least 2s"));
        }
        Some(Members::Etcd {
            endpoints: etcd,
            prefix: prefix.trim_end_matches('/').to_string(),
            lease_ttl,
        })
    } else if let Some(k) = k8s {
        let bad = || {
            err(
                "cluster.peers_k8s",
                format!("{k:?} is not [NAMESPACE/]SERVICE:PORT"),
            )
        };
        let (svc, port) = k.rsplit_once(':').ok_or_else(bad)?;
        let (namespace, service) = match svc.split_once('/') {
            Some((n, s)) => (Some(n.to_string()), s),
            None => (None, svc),
        };
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !dns_label(service)
            || namespace.as_deref().is_some_and(|n| !dns_label(n))
            || port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad());
        }
        Some(Members::Kubernetes {
            namespace,
            service: service.to_string(),
            port: port.to_string(),
            api: c.k8s_api.clone(),
        })
    } else {
        None
    };
    let Some(members) = members else {
        return match (role, peer_listen) {
            (Role::All, None) => Ok((Role::All, None)),
            (Role::All, Some(_)) => Err(err(
                "cluster.peer_listen",
                "a peer listener needs the cluster's members (--peers, --peers-dns, --peers-etcd or --peers-k8s)",
            )),
            _ => Err(err(
                "cluster.role",
                "front and cache roles need the cluster's members (--peers, --peers-dns, --peers-etcd or --peers-k8s)",
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
    let advertise = match o.advertise.as_deref().or(c.advertise.as_deref()) {
        Some(a) => Some(parse_addr("cluster.advertise", a)?.to_string()),
        // The listener's address, unless it is a wildcard nobody can reach.
        None => peer_listen
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| a.to_string()),
    };
    if matches!(members, Members::Etcd { .. }) && role != Role::Front && advertise.is_none() {
        return Err(err(
            "cluster.advertise",
            "a cache node registering in etcd needs the address others reach it at (--advertise), \
             since its peer listener is a wildcard",
        ));
    }
    let zone = o.zone.as_deref().or(c.zone.as_deref()).unwrap_or("");
    if zone.len() > 63 || !zone.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err("cluster.zone", "at most 63 visible characters"));
    }
    let region = c.region.as_deref().unwrap_or("");
    let mut regions = Vec::new();
    for r in &c.regions {
        if r.name.is_empty()
            || r.name == region
            || regions.iter().any(|x: &RemoteRegion| x.name == r.name)
        {
            return Err(err(
                "cluster.regions",
                format!(
                    "{:?}: each region needs its own name, not this cluster's",
                    r.name
                ),
            ));
        }
        if r.peers.is_empty() {
            return Err(err(
                "cluster.regions",
                format!("region {:?} lists no peers", r.name),
            ));
        }
        check_peers("cluster.regions.peers", &r.peers)?;
        let timeout = parse_duration(r.timeout.as_deref().unwrap_or("2s"))
            .map_err(|e| err("cluster.regions.timeout", e))?;
        if timeout.is_zero() {
            return Err(err("cluster.regions.timeout", "must be longer than zero"));
        }
        regions.push(RemoteRegion {
            name: r.name.clone(),
            peers: r.peers.clone(),
            timeout,
        });
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
            advertise,
            zone: zone.to_string(),
            region: region.to_string(),
            regions,
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

/// A list from a flag (`A,B,…`) when given, else from the file.
fn listed(flag: &Option<String>, file: &[String]) -> Vec<String> {
    match flag {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        None => file.to_vec(),
    }
}

/// Every entry is `HOST:PORT`.
fn check_peers(key: &str, peers: &[String]) -> Result<(), ConfigError> {
    for p in peers {
        if p.rsplit_once(':')
            .and_then(|(h, port)| (!h.is_empty()).then(|| port.parse::<u16>().ok())?)
            .is_none()
        {
            return Err(err(key, format!("{p:?} is not HOST:PORT")));
        }
    }
    Ok(())
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

    #[test]
    fn registries_zones_and_regions_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef-long-enough\n").expect("write");
        let o = |role: &str, listen: &str| Overrides {
            data: Some(dir.path().join("data")),
            role: Some(role.into()),
            peer_listen: (!listen.is_empty()).then(|| listen.into()),
            cluster_secret_file: Some(secret.clone()),
            ..Default::default()
        };
        let with = |text: &str, o: Overrides| {
            let file = crate::config::file::parse_file(text, "test").expect("parses");
            resolve(Some(file), &o)
        };
        let refused = |text: &str, o: Overrides, key: &str| {
            let e = with(text, o).expect_err("refused");
            assert!(e.to_string().contains(key), "{key}: {e}");
        };
        // etcd: URLs, a prefix, a lease of at least 2 s; a wildcard listener needs --advertise.
        let s = with(
            "[cluster]\npeers_etcd = [\"http://10.0.0.5:2379\"]\netcd_prefix = \"/c/prod/\"\nzone = \"z1\"\n",
            o("cache", "127.0.0.1:7070"),
        )
        .expect("etcd");
        let c = s.cluster.expect("cluster");
        assert_eq!(
            c.members,
            Members::Etcd {
                endpoints: vec!["http://10.0.0.5:2379".into()],
                prefix: "/c/prod".into(),
                lease_ttl: std::time::Duration::from_secs(10),
            }
        );
        assert!(c.members.is_registry());
        assert_eq!(
            (c.advertise.as_deref(), c.zone.as_str()),
            (Some("127.0.0.1:7070"), "z1")
        );
        let etcd = "[cluster]\npeers_etcd = [\"http://10.0.0.5:2379\"]\n";
        refused(etcd, o("cache", "0.0.0.0:7070"), "cluster.advertise");
        let mut adv = o("cache", "0.0.0.0:7070");
        adv.advertise = Some("10.1.2.3:7070".into());
        assert_eq!(
            with(etcd, adv)
                .expect("advertised")
                .cluster
                .expect("c")
                .advertise
                .as_deref(),
            Some("10.1.2.3:7070")
        );
        refused(
            "[cluster]\npeers_etcd = [\"10.0.0.5:2379\"]\n",
            o("front", ""),
            "cluster.peers_etcd",
        );
        refused(
            &format!("{etcd}lease_ttl = \"1s\"\n"),
            o("front", ""),
            "cluster.lease_ttl",
        );
        refused(
            &format!("{etcd}etcd_prefix = \"c\"\n"),
            o("front", ""),
            "cluster.etcd_prefix",
        );
        refused(
            &format!("{etcd}peers_dns = \"x.svc:7070\"\n"),
            o("front", ""),
            "give one of",
        );
        // Kubernetes: [NAMESPACE/]SERVICE:PORT.
        let s = with(
            "[cluster]\npeers_k8s = \"ml/cistern-cache:peer\"\n",
            o("front", ""),
        )
        .expect("k8s");
        assert_eq!(
            s.cluster.expect("c").members,
            Members::Kubernetes {
                namespace: Some("ml".into()),
                service: "cistern-cache".into(),
                port: "peer".into(),
                api: None,
            }
        );
        for bad in ["cistern-cache", "Cistern:peer", "ns/svc:", "a/b/c:7070"] {
            refused(
                &format!("[cluster]\npeers_k8s = \"{bad}\"\n"),
                o("front", ""),
                "cluster.peers_k8s",
            );
        }
        refused(
            "[cluster]\npeers = [\"127.0.0.1:7070\"]\nzone = \"a zone\"\n",
            o("front", ""),
            "cluster.zone",
        );
        // Regions: named apart from this one, with peers.
        let base = "[cluster]\npeers = [\"127.0.0.1:7070\"]\nregion = \"b\"\n";
        let s = with(
            &format!("{base}[[cluster.regions]]\nname = \"a\"\npeers = [\"10.9.0.1:7070\"]\n"),
            o("front", ""),
        )
        .expect("regions");
        let c = s.cluster.expect("c");
        assert_eq!((c.region.as_str(), c.regions.len()), ("b", 1));
        assert_eq!(c.regions[0].timeout, std::time::Duration::from_secs(2));
        for bad in [
            "name = \"b\"\npeers = [\"10.9.0.1:7070\"]",
            "name = \"a\"\npeers = []",
            "name = \"a\"\npeers = [\"nope\"]",
            "name = \"a\"\npeers = [\"10.9.0.1:7070\"]\ntimeout = \"0s\"",
        ] {
            refused(
                &format!("{base}[[cluster.regions]]\n{bad}\n"),
                o("front", ""),
                "cluster.regions",
            );
        }
    }
}
