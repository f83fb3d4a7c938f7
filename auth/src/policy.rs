//! Authorization: which principal may do what on which bucket.
//!
//! The policy is evaluated on every request, cache hits included: a cached object is never
//! served to a caller who could not read it from the origin through Cistern.

use std::collections::HashMap;

use crate::Secret;

/// An action class a principal may be granted on a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read object data and metadata (GET, HEAD).
    Read,
    /// List buckets and objects.
    List,
    /// Create or overwrite objects.
    Write,
    /// Delete objects.
    Delete,
    /// Change how the origin keeps a bucket or object: bucket policy, ACLs, versioning, object
    /// lock, retention, CORS, lifecycle, container access policies, service properties. Relayed
    /// with the origin's own credentials, so it is granted apart from `write`.
    Admin,
}

impl Permission {
    /// Parses a permission name as written in configuration.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "list" => Some(Self::List),
            "write" => Some(Self::Write),
            "delete" => Some(Self::Delete),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::List => 2,
            Self::Write => 4,
            Self::Delete => 8,
            Self::Admin => 16,
        }
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    /// Every permission.
    pub const ALL: Self = Self(31);

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |acc, p| acc | p.bit()))
    }
}

/// The buckets a principal's permissions apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketScope {
    /// Every bucket Cistern exposes.
    All,
    /// Only these exposed bucket names.
    Only(Vec<String>),
}

impl BucketScope {
    fn covers(&self, bucket: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.iter().any(|n| n == bucket),
        }
    }
}

/// A caller known to Cistern by an access key.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The access key id the caller signs with.
    pub access_key: String,
    /// The secret it signs with.
    pub secret: Secret,
    /// The buckets the grant covers.
    pub buckets: BucketScope,
    /// What it may do on those buckets.
    pub permissions: Permissions,
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The action is allowed.
    Allow,
    /// The caller is known but lacks the permission.
    Deny,
    /// The request is anonymous and the bucket is not public for this action.
    AnonymousDenied,
}

/// All principals, keyed by access key.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    principals: HashMap<String, Principal>,
}

impl Policy {
    /// Builds a policy from principals; a later duplicate access key replaces an earlier one.
    pub fn new(principals: impl IntoIterator<Item = Principal>) -> Self {
        Self {
            principals: principals
                .into_iter()
                .map(|p| (p.access_key.clone(), p))
                .collect(),
        }
    }

    /// Every principal.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.principals.values()
    }

    /// The principal with this access key, for secret lookup during signature verification.
    pub fn principal(&self, access_key: &str) -> Option<&Principal> {
        self.principals.get(access_key)
    }

    /// Whether `access_key` may perform `perm` on every bucket (account-wide requests relayed
    /// to an origin, whose answers cannot be filtered by bucket).
    pub fn authorize_everywhere(&self, access_key: &str, perm: Permission) -> bool {
        self.principals
            .get(access_key)
            .is_some_and(|p| p.buckets == BucketScope::All && p.permissions.contains(perm))
    }

    /// Decides whether `access_key` (or an anonymous caller when `None`) may perform `perm` on
    /// `bucket`. Anonymous callers may only read and list buckets marked public-read.
    pub fn authorize(
        &self,
        access_key: Option<&str>,
        bucket: &str,
        perm: Permission,
        public_read: bool,
    ) -> Decision {
        match access_key {
            None => {
                if public_read && matches!(perm, Permission::Read | Permission::List) {
                    Decision::Allow
                } else {
                    Decision::AnonymousDenied
                }
            }
            Some(ak) => match self.principals.get(ak) {
                Some(p) if p.buckets.covers(bucket) && p.permissions.contains(perm) => {
                    Decision::Allow
                }
                _ => Decision::Deny,
            },
        }
    }

    /// Whether the caller may see `bucket` at all (used to filter ListBuckets).
    pub fn can_see(&self, access_key: &str, bucket: &str) -> bool {
        self.principals
            .get(access_key)
            .is_some_and(|p| p.buckets.covers(bucket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new([
            Principal {
                access_key: "reader".into(),
                secret: Secret::new("s1"),
                buckets: BucketScope::Only(vec!["data".into()]),
                permissions: [Permission::Read].into_iter().collect(),
            },
            Principal {
                access_key: "admin".into(),
                secret: Secret::new("s2"),
                buckets: BucketScope::All,
                permissions: Permissions::ALL,
            },
        ])
    }

    #[test]
    fn grants_follow_scope_and_permissions() {
        let p = policy();
        assert_eq!(
            p.authorize(Some("reader"), "data", Permission::Read, false),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(Some("reader"), "data", Permission::List, false),
            Decision::Deny
        );
        assert_eq!(
            p.authorize(Some("reader"), "other", Permission::Read, false),
            Decision::Deny
        );
        assert_eq!(
            p.authorize(Some("admin"), "other", Permission::Delete, false),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(Some("nobody"), "data", Permission::Read, true),
            Decision::Deny
        );
    }

    #[test]
    fn anonymous_only_reads_public_buckets() {
        let p = policy();
        assert_eq!(
            p.authorize(None, "data", Permission::Read, true),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(None, "data", Permission::List, true),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(None, "data", Permission::Write, true),
            Decision::AnonymousDenied
        );
        assert_eq!(
            p.authorize(None, "data", Permission::Read, false),
            Decision::AnonymousDenied
        );
    }
}
