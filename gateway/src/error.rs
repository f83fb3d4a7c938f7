//! The protocol-neutral internal error. Each dialect maps it to wire errors in one module
//! (`s3::error` for S3); nothing here knows a wire format.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What went wrong, independent of any dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bucket is not exposed by Cistern.
    NoSuchBucket,
    /// The object does not exist.
    NotFound,
    /// A precondition (`If-Match`, `If-Unmodified-Since`) failed.
    PreconditionFailed,
    /// `If-None-Match` / `If-Modified-Since` say the client's copy is current.
    NotModified,
    /// The range cannot be satisfied; `object_size` says why.
    InvalidRange,
    /// The requested part does not exist.
    InvalidPartNumber,
    /// The request is malformed or names something invalid (a key escaping the origin root).
    InvalidArgument,
    /// The caller may not do this.
    AccessDenied,
    /// A signature inside the request (a signed body chunk) does not match.
    SignatureMismatch,
    /// An upload's body does not match its Content-MD5 (or checksum).
    BadDigest,
    /// An upload's body was cut short or ran long.
    IncompleteBody,
    /// The client stopped sending its request body (longer than the listener's
    /// `body_read_timeout` without a byte).
    ClientTimeout,
    /// The upload in parts does not exist (finished, aborted, or never started).
    NoSuchUpload,
    /// A part named on completion was not uploaded (or its ETag differs).
    InvalidPart,
    /// The bucket being created exists already.
    BucketExists,
    /// The bucket being deleted still holds objects.
    BucketNotEmpty,
    /// The origin throttled us.
    Throttled,
    /// The origin could not be reached or failed.
    OriginUnavailable,
    /// The origin did not answer in time.
    OriginTimeout,
    /// The object changed at the origin while it was being read.
    ObjectChanged,
    /// The object or bucket is leased at the origin and the request named no lease.
    Leased,
    /// Cistern does not implement this.
    NotImplemented,
    /// A bug or an unexpected condition inside Cistern.
    Internal,
}

impl ErrorKind {
    /// Every kind, for [`ErrorKind::parse`].
    const ALL: [ErrorKind; 23] = [
        Self::NoSuchBucket,
        Self::NotFound,
        Self::PreconditionFailed,
        Self::NotModified,
        Self::InvalidRange,
        Self::InvalidPartNumber,
        Self::InvalidArgument,
        Self::AccessDenied,
        Self::SignatureMismatch,
        Self::BadDigest,
        Self::IncompleteBody,
        Self::ClientTimeout,
        Self::NoSuchUpload,
        Self::InvalidPart,
        Self::BucketExists,
        Self::BucketNotEmpty,
        Self::Throttled,
        Self::OriginUnavailable,
        Self::OriginTimeout,
        Self::ObjectChanged,
        Self::Leased,
        Self::NotImplemented,
        Self::Internal,
    ];

    /// The kind named by [`ErrorKind::as_str`] (as another node reports it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSuchBucket => "no_such_bucket",
            Self::NotFound => "not_found",
            Self::PreconditionFailed => "precondition_failed",
            Self::NotModified => "not_modified",
            Self::InvalidRange => "invalid_range",
            Self::InvalidPartNumber => "invalid_part_number",
            Self::InvalidArgument => "invalid_argument",
            Self::AccessDenied => "access_denied",
            Self::SignatureMismatch => "signature_mismatch",
            Self::BadDigest => "bad_digest",
            Self::IncompleteBody => "incomplete_body",
            Self::ClientTimeout => "client_timeout",
            Self::NoSuchUpload => "no_such_upload",
            Self::InvalidPart => "invalid_part",
            Self::BucketExists => "bucket_exists",
            Self::BucketNotEmpty => "bucket_not_empty",
            Self::Throttled => "throttled",
            Self::OriginUnavailable => "origin_unavailable",
            Self::OriginTimeout => "origin_timeout",
            Self::ObjectChanged => "object_changed",
            Self::Leased => "leased",
            Self::NotImplemented => "not_implemented",
            Self::Internal => "internal",
        }
    }
}

/// An internal error: a kind, a short message safe to show a client, and the source for logs.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    object_size: Option<u64>,
    validators: Option<Arc<(String, std::time::SystemTime)>>,
    delete_marker: Option<Arc<DeleteMarker>>,
}

/// The origin answered for a delete marker: the key's current version (or the version asked
/// for) is one. S3 says so in `x-amz-delete-marker` and names the marker's version, and a
/// client (a versioning-aware sync, a restore) acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteMarker {
    /// The marker's version id, when the origin gave it.
    pub version_id: Option<String>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a client-safe message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            object_size: None,
            validators: None,
            delete_marker: None,
        }
    }

    /// Marks the error as the origin's answer for a delete marker (see [`DeleteMarker`]).
    pub fn with_delete_marker(mut self, marker: DeleteMarker) -> Self {
        self.delete_marker = Some(Arc::new(marker));
        self
    }

    /// The delete marker the origin answered for, if it did.
    pub fn delete_marker(&self) -> Option<&DeleteMarker> {
        self.delete_marker.as_deref()
    }

    /// A 304 for the version with this ETag and modification time (a 304 carries both).
    pub fn not_modified(etag: &str, last_modified: std::time::SystemTime) -> Self {
        let mut e = Self::new(ErrorKind::NotModified, "Not Modified");
        e.validators = Some(Arc::new((etag.to_string(), last_modified)));
        e
    }

    /// The ETag and Last-Modified of the current version, for `NotModified`.
    pub fn validators(&self) -> Option<(&str, std::time::SystemTime)> {
        self.validators.as_deref().map(|(e, t)| (e.as_str(), *t))
    }

    /// Attaches the underlying cause (logged, never sent to clients).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The attached cause, when it is a `T`.
    pub fn source_as<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.source.as_deref().and_then(|s| s.downcast_ref::<T>())
    }

    /// An unsatisfiable range against an object of `size` bytes.
    pub fn invalid_range(size: u64) -> Self {
        let mut e = Self::new(
            ErrorKind::InvalidRange,
            "The requested range is not satisfiable",
        );
        e.object_size = Some(size);
        e
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The object's size, for `InvalidRange`.
    pub fn object_size(&self) -> Option<u64> {
        self.object_size
    }

    /// Whether retrying the same origin request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::OriginUnavailable | ErrorKind::OriginTimeout
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", &format_args!("{s}"));
        }
        if let Some(m) = &self.delete_marker {
            d.field("delete_marker", m);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)?;
        if let Some(s) = &self.source {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
