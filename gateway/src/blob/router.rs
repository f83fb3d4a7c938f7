//! Parses a Blob REST request into an addressed, closed [`Operation`]: which account,
//! container and blob it names (path-style `/<account>/<container>/<blob>` as the emulator
//! uses, or host-style `<account>.blob.<domain>/<container>/<blob>`), and which operation
//! `(method, restype, comp)` selects, after Microsoft's Blob service REST reference.

use http::Method;
use percent_encoding::percent_decode_str;

/// Every Blob operation Cistern recognises. Those it does not implement yet are variants too
/// and answer NotImplemented, never a silent wrong answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /?comp=list`.
    ListContainers,
    /// `GET|HEAD ?restype=account&comp=properties` (account, container or blob path).
    GetAccountInformation,
    /// `GET|HEAD /container?restype=container`.
    GetContainerProperties,
    /// `GET|HEAD /container?restype=container&comp=metadata`.
    GetContainerMetadata,
    /// `PUT /container?restype=container`.
    CreateContainer,
    /// `DELETE /container?restype=container`.
    DeleteContainer,
    /// `GET /container?restype=container&comp=list`.
    ListBlobs,
    /// `GET /container/blob`.
    GetBlob,
    /// `HEAD /container/blob`.
    GetBlobProperties,
    /// `GET|HEAD /container/blob?comp=metadata`.
    GetBlobMetadata,
    /// `GET /container/blob?comp=blocklist`.
    GetBlockList,
    /// `PUT /container/blob` (a block blob, in one request).
    PutBlob,
    /// `PUT /container/blob?comp=block&blockid=…`.
    PutBlock,
    /// `PUT /container/blob?comp=blocklist`.
    PutBlockList,
    /// `DELETE /container/blob`.
    DeleteBlob,
    /// `PUT /container/blob?comp=block&blockid=…` with `x-ms-copy-source`.
    PutBlockFromUrl,
    /// `PUT /container/blob?comp=appendblock`.
    AppendBlock,
    /// `PUT /container/blob?comp=metadata`.
    SetBlobMetadata,
    /// `PUT /container/blob?comp=properties`.
    SetBlobProperties,
    /// `PUT /container/blob` with `x-ms-copy-source` (Copy Blob, and Copy Blob From URL with
    /// `x-ms-requires-sync`).
    CopyBlob,
    /// `POST /?comp=batch` and `POST /container?restype=container&comp=batch`: Delete Blob or
    /// Set Blob Tier sub-requests in one `multipart/mixed` body.
    BlobBatch,
    /// `OPTIONS` on any URL, whatever its query: a CORS preflight (unauthenticated).
    Preflight,
    /// A recognised operation Cistern does not implement (named for logs and metrics).
    Unsupported(&'static str),
}

impl Operation {
    /// A stable name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListContainers => "ListContainers",
            Self::GetAccountInformation => "GetAccountInformation",
            Self::GetContainerProperties => "GetContainerProperties",
            Self::GetContainerMetadata => "GetContainerMetadata",
            Self::CreateContainer => "CreateContainer",
            Self::DeleteContainer => "DeleteContainer",
            Self::ListBlobs => "ListBlobs",
            Self::GetBlob => "GetBlob",
            Self::GetBlobProperties => "GetBlobProperties",
            Self::GetBlobMetadata => "GetBlobMetadata",
            Self::GetBlockList => "GetBlockList",
            Self::PutBlob => "PutBlob",
            Self::PutBlock => "PutBlock",
            Self::PutBlockList => "PutBlockList",
            Self::DeleteBlob => "DeleteBlob",
            Self::CopyBlob => "CopyBlob",
            Self::SetBlobMetadata => "SetBlobMetadata",
            Self::AppendBlock => "AppendBlock",
            Self::PutBlockFromUrl => "PutBlockFromURL",
            Self::SetBlobProperties => "SetBlobProperties",
            Self::BlobBatch => "BlobBatch",
            Self::Preflight => "Preflight",
            Self::Unsupported(name) => name,
        }
    }
}

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No account in the path (path-style) or host (host-style).
    NoAccount,
    /// A query parameter has a value no operation accepts (InvalidQueryParameterValue).
    BadParameter(&'static str, String),
    /// The method is not allowed for this resource (UnsupportedHttpVerb).
    Verb,
    /// The path could not be decoded (InvalidUri).
    BadPath,
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The operation.
    pub op: Operation,
    /// The storage account.
    pub account: String,
    /// The container, decoded.
    pub container: Option<String>,
    /// The blob name, decoded.
    pub blob: Option<String>,
}

/// The account when `host` is `<account>.<domain>` for one of the configured host-style
/// `domains` (e.g. `blob.core.windows.net`; port ignored). Only configured domains count:
/// Shared Key does not sign the host, so a host-style guess could re-address a signed
/// path-style request.
pub fn host_account<'a>(host: &'a str, domains: &[String]) -> Option<&'a str> {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    domains.iter().find_map(|d| {
        let account = name.strip_suffix(d.as_str())?.strip_suffix('.')?;
        is_account_name(account).then_some(account)
    })
}

/// Azure account names: 3–24 lower-case letters and digits.
pub fn is_account_name(s: &str) -> bool {
    (3..=24).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

pub(super) fn decode(s: &str) -> Result<String, RouteError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| RouteError::BadPath)
}

/// Routes a request. `host_account` is the account named by a host-style host (see
/// [`host_account`]), else the path's first segment is; `query` holds decoded pairs;
/// `copy_source` says whether an `x-ms-copy-source` header is present (it turns a PUT into
/// a copy).
pub fn route(
    method: &Method,
    host_account: Option<&str>,
    raw_path: &str,
    query: &[(String, String)],
    copy_source: bool,
) -> Result<Routed, RouteError> {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (account, rest) = match host_account {
        Some(a) => (a.to_string(), trimmed),
        None => {
            let (a, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
            if a.is_empty() {
                return Err(RouteError::NoAccount);
            }
            (decode(a)?, rest)
        }
    };
    let (container, blob) = match rest.split_once('/') {
        Some((c, b)) => (c, Some(b).filter(|b| !b.is_empty())),
        None => (rest, None),
    };
    let container = (!container.is_empty())
        .then(|| decode(container))
        .transpose()?;
    // Azure reads `\` in a blob name as `/` (the SAS and the blob are named with `/`).
    let blob = blob.map(decode).transpose()?.map(|b| {
        if b.contains('\\') {
            b.replace('\\', "/")
        } else {
            b
        }
    });
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let restype = get("restype");
    let comp = get("comp");
    let level = match (&container, &blob) {
        (None, _) => Level::Account,
        (Some(_), None) => Level::Container,
        (Some(_), Some(_)) => Level::Blob,
    };
    let op = operation(method, level, restype, comp, copy_source)?;
    Ok(Routed {
        op,
        account,
        container,
        blob,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Account,
    Container,
    Blob,
}

fn operation(
    method: &Method,
    level: Level,
    restype: Option<&str>,
    comp: Option<&str>,
    copy_source: bool,
) -> Result<Operation, RouteError> {
    use Operation::{Unsupported as U, *};
    let m = method.as_str();
    // A preflight names the URL of the request it asks about: any resource, any query.
    if m == "OPTIONS" {
        return Ok(Preflight);
    }
    let read = matches!(m, "GET" | "HEAD");
    // Get Account Information is addressed at any level.
    if restype == Some("account") {
        return match (comp, read) {
            (Some("properties"), true) => Ok(GetAccountInformation),
            (Some("properties"), false) => Err(RouteError::Verb),
            _ => Err(bad("comp", comp)),
        };
    }
    let op = match level {
        Level::Account => match (restype, comp, m) {
            (_, Some("list"), "GET") => ListContainers,
            (Some("service"), Some("properties"), "GET") => U("GetBlobServiceProperties"),
            (Some("service"), Some("properties"), "PUT") => U("SetBlobServiceProperties"),
            (Some("service"), Some("stats"), "GET") => U("GetBlobServiceStats"),
            (Some("service"), Some("userdelegationkey"), "POST") => U("GetUserDelegationKey"),
            (_, Some("blobs"), "GET") => U("FindBlobsByTags"),
            (_, Some("batch"), "POST") => BlobBatch,
            (
                _,
                Some("list" | "properties" | "stats" | "userdelegationkey" | "blobs" | "batch"),
                _,
            ) => return Err(RouteError::Verb),
            (_, None, _) => return Err(RouteError::Verb),
            (_, c, _) => return Err(bad("comp", c)),
        },
        Level::Container => {
            if restype != Some("container") {
                // `/name` with no restype is a blob in the root container.
                return Err(bad("restype", restype));
            }
            match (comp, m) {
                (None, "GET" | "HEAD") => GetContainerProperties,
                (None, "PUT") => CreateContainer,
                (None, "DELETE") => DeleteContainer,
                (Some("metadata"), "GET" | "HEAD") => GetContainerMetadata,
                (Some("metadata"), "PUT") => U("SetContainerMetadata"),
                (Some("acl"), "GET" | "HEAD") => U("GetContainerACL"),
                (Some("acl"), "PUT") => U("SetContainerACL"),
                (Some("lease"), "PUT") => U("LeaseContainer"),
                (Some("list"), "GET") => ListBlobs,
                (Some("undelete"), "PUT") => U("RestoreContainer"),
                (Some("rename"), "PUT") => U("RenameContainer"),
                (Some("batch"), "POST") => BlobBatch,
                (Some("blobs"), "GET") => U("FindBlobsByTags"),
                (
                    None
                    | Some(
                        "metadata" | "acl" | "lease" | "list" | "undelete" | "rename" | "batch"
                        | "blobs",
                    ),
                    _,
                ) => return Err(RouteError::Verb),
                (c, _) => return Err(bad("comp", c)),
            }
        }
        Level::Blob => match (comp, m) {
            (None, "GET") => GetBlob,
            (None, "HEAD") => GetBlobProperties,
            (None, "PUT") if copy_source => CopyBlob,
            (None, "PUT") => PutBlob,
            (None, "DELETE") => DeleteBlob,
            (Some("metadata"), "GET" | "HEAD") => GetBlobMetadata,
            (Some("metadata"), "PUT") => SetBlobMetadata,
            (Some("properties"), "PUT") => SetBlobProperties,
            (Some("block"), "PUT") if copy_source => PutBlockFromUrl,
            (Some("block"), "PUT") => PutBlock,
            (Some("blocklist"), "PUT") => PutBlockList,
            (Some("blocklist"), "GET") => GetBlockList,
            (Some("page"), "PUT") => U("PutPage"),
            (Some("pagelist"), "GET") => U("GetPageRanges"),
            (Some("appendblock"), "PUT") if copy_source => U("AppendBlockFromURL"),
            (Some("appendblock"), "PUT") => AppendBlock,
            (Some("seal"), "PUT") => U("AppendBlobSeal"),
            (Some("lease"), "PUT") => U("LeaseBlob"),
            (Some("snapshot"), "PUT") => U("SnapshotBlob"),
            (Some("copy"), "PUT") => U("AbortCopyBlob"),
            (Some("tier"), "PUT") => U("SetBlobTier"),
            (Some("tags"), "GET") => U("GetBlobTags"),
            (Some("tags"), "PUT") => U("SetBlobTags"),
            (Some("undelete"), "PUT") => U("UndeleteBlob"),
            (Some("expiry"), "PUT") => U("SetBlobExpiry"),
            (Some("immutabilityPolicies"), "PUT" | "DELETE") => U("SetBlobImmutabilityPolicy"),
            (Some("legalhold"), "PUT") => U("SetBlobLegalHold"),
            (Some("query"), "POST") => U("QueryBlobContents"),
            (
                None
                | Some(
                    "metadata"
                    | "properties"
                    | "block"
                    | "blocklist"
                    | "page"
                    | "pagelist"
                    | "appendblock"
                    | "seal"
                    | "lease"
                    | "snapshot"
                    | "copy"
                    | "tier"
                    | "tags"
                    | "undelete"
                    | "expiry"
                    | "immutabilityPolicies"
                    | "legalhold"
                    | "query",
                ),
                _,
            ) => return Err(RouteError::Verb),
            (c, _) => return Err(bad("comp", c)),
        },
    };
    Ok(op)
}

fn bad(name: &'static str, value: Option<&str>) -> RouteError {
    RouteError::BadParameter(name, value.unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn op(method: &str, path: &str, query: &str) -> Result<Operation, RouteError> {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        route(&m, None, path, &q(query), false).map(|r| r.op)
    }

    /// The request lines of Microsoft's Blob service REST reference, one per operation.
    #[test]
    fn table_from_the_rest_reference() {
        use Operation::*;
        let a = "/myaccount";
        let c = "/myaccount/mycontainer";
        let b = "/myaccount/mycontainer/myblob";
        let cases: &[(&str, &str, &str, Result<Operation, RouteError>)] = &[
            ("GET", a, "comp=list", Ok(ListContainers)),
            (
                "GET",
                a,
                "restype=service&comp=properties",
                Ok(Unsupported("GetBlobServiceProperties")),
            ),
            (
                "PUT",
                a,
                "restype=service&comp=properties",
                Ok(Unsupported("SetBlobServiceProperties")),
            ),
            (
                "GET",
                a,
                "restype=service&comp=stats",
                Ok(Unsupported("GetBlobServiceStats")),
            ),
            (
                "POST",
                a,
                "restype=service&comp=userdelegationkey",
                Ok(Unsupported("GetUserDelegationKey")),
            ),
            (
                "GET",
                a,
                "restype=account&comp=properties",
                Ok(GetAccountInformation),
            ),
            (
                "HEAD",
                c,
                "restype=account&comp=properties",
                Ok(GetAccountInformation),
            ),
            (
                "GET",
                b,
                "restype=account&comp=properties",
                Ok(GetAccountInformation),
            ),
            (
                "GET",
                a,
                "comp=blobs&where=x",
                Ok(Unsupported("FindBlobsByTags")),
            ),
            ("POST", a, "comp=batch", Ok(BlobBatch)),
            ("POST", c, "restype=container&comp=batch", Ok(BlobBatch)),
            ("GET", a, "comp=batch", Err(RouteError::Verb)),
            (
                "POST",
                c,
                "comp=batch",
                Err(RouteError::BadParameter("restype", String::new())),
            ),
            // Preflights, whatever the query (they name the URL of the request to come).
            (
                "OPTIONS",
                a,
                "restype=service&comp=properties",
                Ok(Preflight),
            ),
            ("OPTIONS", a, "", Ok(Preflight)),
            ("OPTIONS", c, "restype=container&comp=list", Ok(Preflight)),
            ("OPTIONS", c, "", Ok(Preflight)),
            ("OPTIONS", b, "comp=tier", Ok(Preflight)),
            ("OPTIONS", b, "comp=bogus", Ok(Preflight)),
            (
                "OPTIONS",
                b,
                "restype=account&comp=properties",
                Ok(Preflight),
            ),
            ("PUT", c, "restype=container", Ok(CreateContainer)),
            ("GET", c, "restype=container", Ok(GetContainerProperties)),
            ("HEAD", c, "restype=container", Ok(GetContainerProperties)),
            (
                "GET",
                c,
                "restype=container&comp=metadata",
                Ok(GetContainerMetadata),
            ),
            (
                "PUT",
                c,
                "restype=container&comp=metadata",
                Ok(Unsupported("SetContainerMetadata")),
            ),
            (
                "GET",
                c,
                "restype=container&comp=acl",
                Ok(Unsupported("GetContainerACL")),
            ),
            (
                "PUT",
                c,
                "restype=container&comp=acl",
                Ok(Unsupported("SetContainerACL")),
            ),
            ("DELETE", c, "restype=container", Ok(DeleteContainer)),
            (
                "PUT",
                c,
                "comp=lease&restype=container",
                Ok(Unsupported("LeaseContainer")),
            ),
            ("GET", c, "restype=container&comp=list", Ok(ListBlobs)),
            (
                "GET",
                c,
                "restype=container&comp=list&prefix=a&delimiter=%2F&maxresults=5",
                Ok(ListBlobs),
            ),
            (
                "PUT",
                c,
                "restype=container&comp=undelete",
                Ok(Unsupported("RestoreContainer")),
            ),
            ("PUT", b, "", Ok(PutBlob)),
            ("PUT", b, "comp=block&blockid=AAAA", Ok(PutBlock)),
            ("PUT", b, "comp=blocklist", Ok(PutBlockList)),
            (
                "GET",
                b,
                "comp=blocklist&blocklisttype=all",
                Ok(GetBlockList),
            ),
            ("PUT", b, "comp=page", Ok(Unsupported("PutPage"))),
            ("PUT", b, "comp=appendblock", Ok(AppendBlock)),
            ("GET", b, "", Ok(GetBlob)),
            (
                "GET",
                b,
                "snapshot=2026-01-01T00:00:00.0000000Z",
                Ok(GetBlob),
            ),
            ("HEAD", b, "", Ok(GetBlobProperties)),
            ("PUT", b, "comp=properties", Ok(SetBlobProperties)),
            ("GET", b, "comp=metadata", Ok(GetBlobMetadata)),
            ("HEAD", b, "comp=metadata", Ok(GetBlobMetadata)),
            ("PUT", b, "comp=metadata", Ok(SetBlobMetadata)),
            ("DELETE", b, "", Ok(DeleteBlob)),
            ("PUT", b, "comp=lease", Ok(Unsupported("LeaseBlob"))),
            ("PUT", b, "comp=snapshot", Ok(Unsupported("SnapshotBlob"))),
            (
                "PUT",
                b,
                "comp=copy&copyid=x",
                Ok(Unsupported("AbortCopyBlob")),
            ),
            ("PUT", b, "comp=tier", Ok(Unsupported("SetBlobTier"))),
            ("GET", b, "comp=tags", Ok(Unsupported("GetBlobTags"))),
            ("PUT", b, "comp=tags", Ok(Unsupported("SetBlobTags"))),
            ("GET", b, "comp=pagelist", Ok(Unsupported("GetPageRanges"))),
            ("PUT", b, "comp=undelete", Ok(Unsupported("UndeleteBlob"))),
            (
                "POST",
                b,
                "comp=query",
                Ok(Unsupported("QueryBlobContents")),
            ),
            // Wrong verbs and unknown values.
            ("DELETE", b, "comp=metadata", Err(RouteError::Verb)),
            (
                "POST",
                c,
                "restype=container&comp=list",
                Err(RouteError::Verb),
            ),
            ("DELETE", a, "", Err(RouteError::Verb)),
            (
                "GET",
                b,
                "comp=bogus",
                Err(RouteError::BadParameter("comp", "bogus".into())),
            ),
            (
                "GET",
                c,
                "",
                Err(RouteError::BadParameter("restype", String::new())),
            ),
            (
                "GET",
                c,
                "restype=container&comp=nope",
                Err(RouteError::BadParameter("comp", "nope".into())),
            ),
            (
                "PUT",
                a,
                "restype=account&comp=properties",
                Err(RouteError::Verb),
            ),
        ];
        for (m, p, query, want) in cases {
            assert_eq!(&op(m, p, query), want, "{m} {p}?{query}");
        }
    }

    #[test]
    fn copy_source_turns_put_into_copy() {
        let r = route(&Method::PUT, None, "/acct/c/b", &[], true).expect("route");
        assert_eq!(r.op, Operation::CopyBlob);
    }

    #[test]
    fn addressing_path_and_host_style() {
        let domains = vec!["blob.core.windows.net".to_string()];
        let r = route(
            &Method::GET,
            host_account("127.0.0.1:10000", &domains),
            "/devstoreaccount1/data/dir%2Fa%20b.txt",
            &[],
            false,
        )
        .expect("route");
        assert_eq!(r.account, "devstoreaccount1");
        assert_eq!(r.container.as_deref(), Some("data"));
        assert_eq!(r.blob.as_deref(), Some("dir/a b.txt"));

        let r = route(
            &Method::GET,
            host_account("myacct.blob.core.windows.net:443", &domains),
            "/data/x/y",
            &[],
            false,
        )
        .expect("route");
        assert_eq!(r.account, "myacct");
        assert_eq!(r.container.as_deref(), Some("data"));
        assert_eq!(r.blob.as_deref(), Some("x/y"));

        // Only configured domains are host-style.
        assert_eq!(host_account("myacct.blob.localhost:10000", &domains), None);
        assert_eq!(host_account("localhost:10000", &domains), None);
        assert_eq!(host_account("UPPER.blob.core.windows.net", &domains), None);
        assert_eq!(host_account("a.b.blob.core.windows.net", &domains), None);
        assert_eq!(
            route(&Method::GET, None, "/", &[], false),
            Err(RouteError::NoAccount)
        );
        assert_eq!(
            route(&Method::GET, None, "/acct/c/%FF", &[], false),
            Err(RouteError::BadPath)
        );
    }
}
