//! `cistern-auth`: Cistern's signatures and authorization policy, as pure functions without I/O.
//!
//! - [`sigv4`] signs outbound requests to S3-compatible origins with AWS Signature Version 4
//!   (inbound SigV4 verification is done by `s3s` with secrets looked up through [`policy`]).
//! - [`sharedkey`] builds, signs and verifies Azure Shared Key and Shared Key Lite requests
//!   (inbound from Blob clients, outbound to Azure origins).
//! - [`sas`] parses and verifies Azure shared access signatures signed with an account key.
//! - [`peer`] signs and verifies traffic between Cistern nodes with the cluster secret.
//! - [`policy`] holds the principals, their buckets and permissions, and decides whether a
//!   caller (or an anonymous request) may perform an action on a bucket.
//! - [`Secret`] wraps secret strings so that `Debug` and `Display` never print them.

pub mod peer;
pub mod policy;
pub mod sas;
pub mod sharedkey;
pub mod sigv4;

use std::fmt;

/// A secret string (a secret access key, an account key). `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing and verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
