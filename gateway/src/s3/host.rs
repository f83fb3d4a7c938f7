//! Virtual-host parsing: `<bucket>.<domain>` for configured domains only. Any other host name
//! (an IP, `localhost`, a Service name) is path-style: an unknown host is never taken as a
//! bucket.

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

/// Base domains under which virtual-hosted buckets are recognised.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    domains: Vec<String>,
}

impl Hosts {
    /// Recognises `<bucket>.<d>` for each `d` in `domains` (case-insensitive, port ignored).
    pub fn new(domains: Vec<String>) -> Self {
        Self {
            domains: domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The bucket named by `host`, if it is virtual-hosted under a configured domain.
    pub fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        self.domains.iter().find_map(|d| {
            let cut = name.len().checked_sub(d.len() + 1)?;
            let (bucket, rest) = name.split_at(cut);
            (rest.len() == d.len() + 1
                && rest[1..].eq_ignore_ascii_case(d)
                && rest.starts_with('.')
                && !bucket.is_empty())
            .then_some(bucket)
        })
    }
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_domains_carry_buckets() {
        let h = Hosts::new(vec!["s3.example.com".into()]);
        assert_eq!(h.bucket_of("data.s3.example.com"), Some("data"));
        assert_eq!(h.bucket_of("data.s3.example.com:9000"), Some("data"));
        assert_eq!(h.bucket_of("s3.example.com"), None);
        assert_eq!(h.bucket_of("evil.example.org"), None);
        assert_eq!(h.bucket_of("127.0.0.1:9000"), None);
        assert_eq!(h.bucket_of("localhost"), None);
        assert_eq!(Hosts::default().bucket_of("bucket.anything.com"), None);
    }
}
