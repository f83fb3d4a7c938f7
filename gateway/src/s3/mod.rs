//! The S3 dialect front, on `s3s`: operations map onto the pipeline; authentication,
//! authorization and virtual hosts are separate pieces wired through s3s's builder.

pub mod auth;
mod bucket;
mod copy;
pub mod error;
pub mod fast;
pub mod host;
mod multipart;
pub(crate) mod relay;
mod tagging;
mod versions;
mod write;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cistern_auth::policy::Policy;
use cistern_cache::range::RangeSpec;
use cistern_cache::ObjectMeta;
use futures::Stream;
use s3s::dto::{self, ETag, ETagCondition, StreamingBlob, Timestamp};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use crate::origin::{ListCursor, ListPage, ListQuery};
use crate::pipeline::{Body, CacheStatus, Conditions, EtagMatch, Pipeline, Selection};

use self::error::to_s3;

pub use crate::pipeline::CACHE_HEADER;

/// The S3 front as the listener needs it: the s3s service, the region it signs for, and the
/// object read fast path ahead of s3s.
pub struct S3Endpoint {
    /// The s3s service (auth, access, host parsing, operations).
    pub service: S3Service,
    /// The region clients must sign for.
    pub region: String,
    /// Plain, successful GetObject/HeadObject without s3s (`None`: every request goes
    /// through s3s; tests compare both paths).
    pub fast: Option<fast::FastPath>,
    /// Where the buckets of the requests that reach s3s live (which may be relayed).
    pub placer: relay::Placer,
    /// Virtual-hosted buckets (to name the bucket and key in error documents).
    pub hosts: host::Hosts,
}

/// Builds the S3 front.
pub fn service(
    pipeline: Arc<Pipeline>,
    policy: Arc<Policy>,
    domains: Vec<String>,
    region: String,
) -> S3Endpoint {
    let mut b = S3ServiceBuilder::new(S3Front {
        pipeline: Arc::clone(&pipeline),
        policy: Arc::clone(&policy),
    });
    let fast = fast::FastPath {
        pipeline: Arc::clone(&pipeline),
        policy: Arc::clone(&policy),
        hosts: host::Hosts::new(domains.clone()),
        region: region.clone(),
        served: Default::default(),
        keys: Default::default(),
    };
    b.set_auth(auth::Secrets(Arc::clone(&policy)));
    b.set_route(relay::Relay {
        pipeline: Arc::clone(&pipeline),
        access: auth::Access {
            policy: Arc::clone(&policy),
            pipeline: Arc::clone(&pipeline),
        },
        hosts: host::Hosts::new(domains.clone()),
    });
    b.set_access(auth::Access { policy, pipeline });
    b.set_host(host::Hosts::new(domains.clone()));
    b.set_validation(BucketNames);
    // Defence in depth behind the early refusal of browser-form uploads.
    let mut config = s3s::config::S3Config::default();
    config.post_object_max_file_size = 0;
    b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    let placer = relay::Placer {
        pipeline: Arc::clone(&fast.pipeline),
        hosts: fast.hosts.clone(),
    };
    S3Endpoint {
        service: b.build(),
        region,
        fast: Some(fast),
        placer,
        hosts: host::Hosts::new(domains),
    }
}

/// Bucket names as Cistern exposes them: AWS's rules are too strict for directory-backed
/// buckets (`data/b` is bucket `b`), so any 1–255 character name of letters, digits, `.`,
/// `-` and `_` is accepted; the origin decides whether it exists.
struct BucketNames;

impl s3s::validation::NameValidation for BucketNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        crate::pipeline::valid_bucket_name(name)
    }
}

/// The S3 operations Cistern implements; every other one answers s3s's NotImplemented.
pub struct S3Front {
    pipeline: Arc<Pipeline>,
    policy: Arc<Policy>,
}

fn etag_match(c: &ETagCondition) -> EtagMatch {
    match c {
        ETagCondition::Any => EtagMatch::Any,
        ETagCondition::ETag(e) => EtagMatch::OneOf(vec![e.value().to_string()]),
    }
}

fn conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Conditions {
    let t = |ts: &Timestamp| std::time::SystemTime::from(time::OffsetDateTime::from(ts.clone()));
    Conditions {
        if_match: if_match.map(etag_match),
        if_none_match: if_none_match.map(etag_match),
        if_modified_since: if_modified_since.map(t),
        if_unmodified_since: if_unmodified_since.map(t),
    }
}

fn range_spec(r: &dto::Range) -> RangeSpec {
    match *r {
        dto::Range::Int {
            first,
            last: Some(last),
        } => RangeSpec::FromTo { first, last },
        dto::Range::Int { first, last: None } => RangeSpec::From { first },
        dto::Range::Suffix { length } => RangeSpec::Suffix { len: length },
    }
}

fn cache_headers(status: CacheStatus) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        CACHE_HEADER,
        http::HeaderValue::from_static(status.as_str()),
    );
    h
}

/// The origin's own S3 headers for this version (server-side encryption, version id, tag
/// count, …), on hits as on misses; an Azure origin's `x-ms-` ones are the Blob front's.
fn origin_headers(meta: &ObjectMeta, h: &mut http::HeaderMap) {
    for (k, v) in meta
        .origin_headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-amz-") || k == "expires")
    {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
}

fn user_metadata(meta: &ObjectMeta) -> Option<dto::Metadata> {
    (!meta.user_metadata.is_empty()).then(|| meta.user_metadata.iter().cloned().collect())
}

/// The type S3 reports for an object stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

fn content_type(meta: &ObjectMeta) -> String {
    meta.content_type
        .clone()
        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string())
}

/// Adapts the pipeline's body to s3s, with its exact remaining length so that hyper sends
/// `Content-Length` rather than chunked encoding.
struct S3Body(Body);

impl Stream for S3Body {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map_err(|e| Box::new(e) as s3s::StdError)))
    }
}

impl ByteStream for S3Body {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(usize::try_from(self.0.remaining()).unwrap_or(usize::MAX))
    }
}

/// Keys and prefixes in listings, URL-encoded when the client asked `encoding-type=url`.
/// Everything but unreserved characters and `/` is percent-encoded, so both `unquote` and
/// `unquote_plus` decoders get the original back.
fn enc(s: String, url: bool) -> String {
    if url {
        cistern_auth::sigv4::uri_encode(&s, true)
    } else {
        s
    }
}

/// Checks that every `Content-MD5` is the base64 of 16 bytes, as S3 does before it reads the
/// body: anything else (empty, short, not base64) is `InvalidDigest`, not a mismatch.
fn content_md5_is_valid(h: &http::HeaderMap) -> S3Result<()> {
    use base64::Engine as _;
    for v in h.get_all("content-md5") {
        let digest = v.to_str().ok().and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
        });
        if digest.is_none_or(|d| d.len() != 16) {
            return Err(s3_error!(
                InvalidDigest,
                "The Content-MD5 you specified was invalid."
            ));
        }
    }
    Ok(())
}

/// What GetObject and HeadObject share: the bucket, the part asked for and the conditions.
struct ObjectArgs {
    bucket: Arc<crate::pipeline::BucketBinding>,
    part: Option<u32>,
    cond: Conditions,
}

/// Checks and extracts [`ObjectArgs`] from a GetObject or HeadObject input (same field names),
/// returning early with the S3 error.
macro_rules! object_args {
    ($front:ident, $i:ident) => {{
        if $i.version_id.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "versionId reads are not implemented yet"
            ));
        }
        let part = part_number($i.part_number, $i.range.is_some())?;
        let bucket = $front.bucket(&$i.bucket).await?;
        let cond = conditions(
            $i.if_match.as_ref(),
            $i.if_none_match.as_ref(),
            $i.if_modified_since.as_ref(),
            $i.if_unmodified_since.as_ref(),
        );
        ObjectArgs { bucket, part, cond }
    }};
}

/// The pipeline error the fast path met for this very operation on this object, if any (the
/// s3s path has authenticated and authorized the request again by the time it asks).
fn fast_failure(
    ext: &http::Extensions,
    head: bool,
    bucket: &str,
    key: &str,
) -> Option<crate::error::Error> {
    ext.get::<fast::Failed>()?.for_object(head, bucket, key)
}

/// `Content-Range` for a served range of an object of `size` bytes.
fn content_range(r: &std::ops::Range<u64>, size: u64) -> String {
    // Written by hand: this is on every ranged response, and `format!` costs several times it.
    let mut s = String::with_capacity(48);
    s.push_str("bytes ");
    crate::dates::push_u64(&mut s, r.start);
    s.push('-');
    crate::dates::push_u64(&mut s, r.end - 1);
    s.push('/');
    crate::dates::push_u64(&mut s, size);
    s
}

/// Validates `partNumber` (1–10000, not together with a Range), as S3 does.
fn part_number(n: Option<i32>, with_range: bool) -> S3Result<Option<u32>> {
    match n {
        None => Ok(None),
        Some(_) if with_range => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        Some(n @ 1..=10_000) => Ok(Some(n as u32)),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        )),
    }
}

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

fn wants_url(e: Option<&dto::EncodingType>) -> S3Result<bool> {
    match e.map(|e| e.as_str()) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

/// The owner Cistern names for what has no owner of its own at the origin (a directory's or an
/// Azure account's objects and buckets): one for every bucket, as ListBuckets reports it.
const CISTERN_OWNER: &str = "cistern";

/// An S3 owner: the origin's, else [`CISTERN_OWNER`].
fn owner(o: Option<crate::origin::Owner>) -> dto::Owner {
    match o {
        Some(o) => dto::Owner {
            display_name: o.display_name,
            id: Some(o.id),
        },
        None => dto::Owner {
            display_name: Some(CISTERN_OWNER.into()),
            id: Some(CISTERN_OWNER.into()),
        },
    }
}

/// An S3 initiator, as [`owner`].
fn initiator(o: Option<crate::origin::Owner>) -> dto::Initiator {
    let o = owner(o);
    dto::Initiator {
        display_name: o.display_name,
        id: o.id,
    }
}

/// Listing entries as S3 renders them; `owners`: with each object's `<Owner>` (always in V1,
/// on `fetch-owner=true` in V2).
fn objects(page: &ListPage, url: bool, owners: bool) -> (Vec<dto::Object>, Vec<dto::CommonPrefix>) {
    let contents = page
        .entries
        .iter()
        .map(|e| dto::Object {
            key: Some(enc(e.key.clone(), url)),
            size: Some(e.size as i64),
            e_tag: Some(ETag::Strong(e.etag.clone())),
            last_modified: Some(Timestamp::from(e.last_modified)),
            storage_class: Some(dto::ObjectStorageClass::from_static(
                dto::ObjectStorageClass::STANDARD,
            )),
            owner: owners.then(|| owner(e.owner.clone())),
            ..Default::default()
        })
        .collect();
    let prefixes = page
        .common_prefixes
        .iter()
        .map(|p| dto::CommonPrefix {
            prefix: Some(enc(p.clone(), url)),
        })
        .collect();
    (contents, prefixes)
}

/// One listing page, as both ListObjects flavours render it.
struct Listed {
    q: ListQuery,
    page: ListPage,
    url: bool,
    contents: Vec<dto::Object>,
    prefixes: Vec<dto::CommonPrefix>,
}

impl S3Front {
    /// Validates the listing parameters both flavours share and fetches one page.
    #[allow(clippy::too_many_arguments)] // reason: the listing parameters, as both flavours name them
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &Option<String>,
        delimiter: &Option<String>,
        max: Option<i32>,
        encoding: Option<&dto::EncodingType>,
        cursor: ListCursor,
        owners: bool,
    ) -> S3Result<Listed> {
        let b = self.bucket(bucket).await?;
        let url = wants_url(encoding)?;
        let q = ListQuery {
            prefix: prefix.clone().unwrap_or_default(),
            delimiter: delimiter.clone().filter(|d| !d.is_empty()),
            max_keys: max_keys(max)?,
            cursor,
        };
        let page = self.pipeline.list(&b, &q).await.map_err(to_s3)?;
        let (contents, prefixes) = objects(&page, url, owners);
        Ok(Listed {
            q,
            page,
            url,
            contents,
            prefixes,
        })
    }

    async fn bucket(&self, name: &str) -> S3Result<Arc<crate::pipeline::BucketBinding>> {
        self.pipeline.catalog().resolve(name).await.map_err(to_s3)
    }
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        content_md5_is_valid(&req.headers)?;
        self.put(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.delete(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.make_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.remove_bucket(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.copy(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.delete_many(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.create_multipart(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        content_md5_is_valid(&req.headers)?;
        S3Front::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        S3Front::upload_part_copy(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        self.get_tagging(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        self.put_tagging(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.delete_tagging(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        self.list_versions(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        S3Front::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        self.list_uploads(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.complete_multipart(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.abort_multipart(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let caller = req
            .credentials
            .as_ref()
            .map(|c| c.access_key.clone())
            .unwrap_or_default();
        let all = self.pipeline.catalog().list().await.map_err(to_s3)?;
        let buckets = all
            .into_iter()
            .filter(|b| self.policy.can_see(&caller, &b.name))
            .map(|b| dto::Bucket {
                name: Some(b.name),
                creation_date: Some(Timestamp::from(
                    b.created.unwrap_or(std::time::SystemTime::UNIX_EPOCH),
                )),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner(None)),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let i = req.input;
        let cursor = ListCursor::V1 {
            marker: i.marker.clone().filter(|m| !m.is_empty()),
        };
        let Listed {
            q,
            page,
            url,
            contents,
            prefixes,
        } = self
            .list_page(
                &i.bucket,
                &i.prefix,
                &i.delimiter,
                i.max_keys,
                i.encoding_type.as_ref(),
                cursor,
                true,
            )
            .await?;
        // S3 returns NextMarker only when a delimiter was given.
        let next_marker = page
            .next
            .clone()
            .filter(|_| q.delimiter.is_some())
            .map(|m| enc(m, url));
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(i.bucket),
            // V1 never encodes its own Prefix (S3 does not, and SDKs do not decode it).
            prefix: Some(q.prefix),
            marker: Some(enc(i.marker.unwrap_or_default(), url)),
            max_keys: Some(q.max_keys as i32),
            is_truncated: Some(page.truncated),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            delimiter: q.delimiter.map(|d| enc(d, url)),
            next_marker,
            encoding_type: i.encoding_type,
            request_charged: None,
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let i = req.input;
        let cursor = ListCursor::V2 {
            continuation: i.continuation_token.clone().filter(|t| !t.is_empty()),
            start_after: i.start_after.clone().filter(|s| !s.is_empty()),
        };
        let Listed {
            q,
            page,
            url,
            contents,
            prefixes,
        } = self
            .list_page(
                &i.bucket,
                &i.prefix,
                &i.delimiter,
                i.max_keys,
                i.encoding_type.as_ref(),
                cursor,
                i.fetch_owner == Some(true),
            )
            .await?;
        let key_count = (contents.len() + prefixes.len()) as i32;
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc(q.prefix, url)),
            max_keys: Some(q.max_keys as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: page.next,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            delimiter: q.delimiter.map(|d| enc(d, url)),
            encoding_type: i.encoding_type,
            start_after: i.start_after.map(|s| enc(s, url)),
            request_charged: None,
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let i = req.input;
        let ObjectArgs {
            bucket: b,
            part,
            cond,
        } = object_args!(self, i);
        if let Some(e) = fast_failure(&req.extensions, true, &i.bucket, &i.key) {
            return Err(to_s3(e));
        }
        let (meta, status, part) = self
            .pipeline
            .head(&b, &i.key, part, &cond)
            .await
            .map_err(to_s3)?;
        // A Range (or a part) on HEAD answers 206 with that length, as S3 does.
        let range = match (i.range.as_ref().map(range_spec), &part) {
            (Some(spec), _) => Some(
                spec.resolve(meta.size)
                    .map_err(|_| to_s3(crate::error::Error::invalid_range(meta.size)))?,
            ),
            (None, Some(p)) => Some(p.range.clone()).filter(|r| !r.is_empty()),
            (None, None) => None,
        };
        let out = dto::HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(range.as_ref().map_or(meta.size, |r| r.end - r.start) as i64),
            content_range: range.as_ref().map(|r| content_range(r, meta.size)),
            content_type: Some(content_type(&meta)),
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            last_modified: Some(Timestamp::from(meta.last_modified)),
            cache_control: meta.cache_control.clone(),
            content_disposition: meta.content_disposition.clone(),
            content_encoding: meta.content_encoding.clone(),
            content_language: meta.content_language.clone(),
            metadata: user_metadata(&meta),
            parts_count: part.and_then(|p| p.parts_count).map(|n| n as i32),
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        resp.headers = cache_headers(status);
        origin_headers(&meta, &mut resp.headers);
        Ok(resp)
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let anonymous = req.credentials.is_none();
        let i = req.input;
        if anonymous
            && (i.response_content_type.is_some()
                || i.response_cache_control.is_some()
                || i.response_content_disposition.is_some()
                || i.response_content_encoding.is_some()
                || i.response_content_language.is_some()
                || i.response_expires.is_some())
        {
            // As S3: anonymous callers may not choose response headers (a public bucket
            // would otherwise serve any object as text/html).
            return Err(s3_error!(
                InvalidRequest,
                "Request specific response headers cannot be used for anonymous GET requests."
            ));
        }
        let ObjectArgs {
            bucket: b,
            part,
            cond,
        } = object_args!(self, i);
        let sel = match (i.range.as_ref(), part) {
            (Some(r), _) => Selection::Range(range_spec(r)),
            (None, Some(n)) => Selection::Part(n),
            (None, None) => Selection::All,
        };
        if let Some(e) = fast_failure(&req.extensions, false, &i.bucket, &i.key) {
            return Err(to_s3(e));
        }
        let read = self
            .pipeline
            .get(&b, &i.key, sel, &cond)
            .await
            .map_err(to_s3)?;
        let meta = &read.meta;
        let len = read.body.remaining();
        let content_range = read.range.as_ref().map(|r| content_range(r, meta.size));
        let out = dto::GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(len as i64),
            content_range,
            content_type: Some(
                i.response_content_type
                    .unwrap_or_else(|| content_type(meta)),
            ),
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            last_modified: Some(Timestamp::from(meta.last_modified)),
            cache_control: i
                .response_cache_control
                .or_else(|| meta.cache_control.clone()),
            content_disposition: i
                .response_content_disposition
                .or_else(|| meta.content_disposition.clone()),
            content_encoding: i
                .response_content_encoding
                .or_else(|| meta.content_encoding.clone()),
            content_language: i
                .response_content_language
                .or_else(|| meta.content_language.clone()),
            expires: i.response_expires,
            metadata: user_metadata(meta),
            parts_count: read.parts_count.map(|n| n as i32),
            body: Some(StreamingBlob::new(S3Body(read.body))),
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        resp.headers = cache_headers(read.cache);
        origin_headers(meta, &mut resp.headers);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests;
