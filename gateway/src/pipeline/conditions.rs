//! Conditional request headers, dialect-neutral, and their evaluation against an object's
//! metadata in the order S3 uses.

use std::time::SystemTime;

use cistern_cache::ObjectMeta;

use crate::error::{Error, ErrorKind, Result};

/// An entity-tag condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagMatch {
    /// `*`.
    Any,
    /// Any of these ETags (unquoted).
    OneOf(Vec<String>),
}

impl EtagMatch {
    fn matches(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(list) => list.iter().any(|e| e == etag),
        }
    }
}

/// Conditional request headers, dialect-neutral.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// `If-Match`.
    pub if_match: Option<EtagMatch>,
    /// `If-None-Match`.
    pub if_none_match: Option<EtagMatch>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<SystemTime>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<SystemTime>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Conditions {
    /// Evaluates the conditions in RFC 9110 §13.2.2 order against `meta`, as S3 does:
    /// If-Match, else If-Unmodified-Since (412); then If-None-Match, else If-Modified-Since
    /// (304 for reads).
    pub fn evaluate(&self, meta: &ObjectMeta) -> Result<()> {
        let failed = || {
            Error::new(
                ErrorKind::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        let not_modified = || Error::not_modified(&meta.etag, meta.last_modified);
        let lm = secs(meta.last_modified);
        match &self.if_match {
            Some(m) if !m.matches(&meta.etag) => return Err(failed()),
            Some(_) => {}
            None => {
                if self.if_unmodified_since.is_some_and(|t| lm > secs(t)) {
                    return Err(failed());
                }
            }
        }
        match &self.if_none_match {
            Some(m) if m.matches(&meta.etag) => return Err(not_modified()),
            Some(_) => {}
            None => {
                if self.if_modified_since.is_some_and(|t| lm <= secs(t)) {
                    return Err(not_modified());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta(etag: &str, lm: u64) -> ObjectMeta {
        ObjectMeta {
            size: 10,
            etag: etag.into(),
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(lm),
            content_type: None,
            content_encoding: None,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            user_metadata: vec![],
            ..Default::default()
        }
    }

    fn at(s: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    #[test]
    fn conditions_follow_s3_precedence() {
        let m = meta("abc", 1000);
        let kind = |c: Conditions| c.evaluate(&m).err().map(|e| e.kind());
        assert_eq!(kind(Conditions::default()), None);
        assert_eq!(
            kind(Conditions {
                if_match: Some(EtagMatch::OneOf(vec!["x".into()])),
                ..Default::default()
            }),
            Some(ErrorKind::PreconditionFailed)
        );
        // If-Match true wins over If-Unmodified-Since false.
        assert_eq!(
            kind(Conditions {
                if_match: Some(EtagMatch::Any),
                if_unmodified_since: at(10),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            kind(Conditions {
                if_unmodified_since: at(10),
                ..Default::default()
            }),
            Some(ErrorKind::PreconditionFailed)
        );
        assert_eq!(
            kind(Conditions {
                if_none_match: Some(EtagMatch::OneOf(vec!["abc".into()])),
                ..Default::default()
            }),
            Some(ErrorKind::NotModified)
        );
        // If-None-Match false wins over If-Modified-Since.
        assert_eq!(
            kind(Conditions {
                if_none_match: Some(EtagMatch::OneOf(vec!["zz".into()])),
                if_modified_since: at(2000),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            kind(Conditions {
                if_modified_since: at(1000),
                ..Default::default()
            }),
            Some(ErrorKind::NotModified)
        );
        assert_eq!(
            kind(Conditions {
                if_modified_since: at(999),
                ..Default::default()
            }),
            None
        );
    }
}
