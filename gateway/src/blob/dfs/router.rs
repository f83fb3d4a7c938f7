//! Parses a Data Lake Storage Gen2 (DFS) request into a closed [`DfsOp`] and the filesystem
//! and path it names, after Microsoft's "Azure Data Lake Storage Gen2 REST API" reference
//! (Filesystem and Path operations). Each operation also names the Blob operation whose
//! permissions it needs: DFS and Blob share accounts, keys, SAS and authorization.

use http::Method;

use super::super::router::{is_account_name, Operation};

/// Every DFS operation Cistern recognises; those it does not implement are variants too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfsOp {
    /// `GET /?resource=account`.
    ListFilesystems,
    /// `PUT /fs?resource=filesystem`.
    CreateFilesystem,
    /// `DELETE /fs?resource=filesystem`.
    DeleteFilesystem,
    /// `HEAD /fs?resource=filesystem`.
    GetFilesystemProperties,
    /// `PATCH /fs?resource=filesystem`.
    SetFilesystemProperties,
    /// `GET /fs?resource=filesystem` (`recursive`, `directory`, `maxResults`, `continuation`).
    ListPaths,
    /// `PUT /fs/path?resource=file`.
    CreateFile,
    /// `PUT /fs/path?resource=directory`.
    CreateDirectory,
    /// `PUT /fs/path` with `x-ms-rename-source`.
    Rename,
    /// `PATCH /fs/path?action=append&position=N`.
    Append,
    /// `PATCH /fs/path?action=flush&position=N`.
    Flush,
    /// `PATCH /fs/path?action=setProperties`.
    SetProperties,
    /// `GET /fs/path`.
    Read,
    /// `HEAD /fs/path` (no action).
    GetProperties,
    /// `HEAD /fs/path?action=getStatus`.
    GetStatus,
    /// `HEAD /fs/path?action=getAccessControl`.
    GetAccessControl,
    /// `DELETE /fs/path` (`recursive`).
    Delete,
    /// `POST /fs/path` with `x-ms-lease-action`.
    Lease,
    /// Recognised, not implemented (named for logs and metrics).
    Unsupported(&'static str),
}

impl DfsOp {
    /// A stable name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListFilesystems => "DfsListFilesystems",
            Self::CreateFilesystem => "DfsCreateFilesystem",
            Self::DeleteFilesystem => "DfsDeleteFilesystem",
            Self::GetFilesystemProperties => "DfsGetFilesystemProperties",
            Self::SetFilesystemProperties => "DfsSetFilesystemProperties",
            Self::ListPaths => "DfsListPaths",
            Self::CreateFile => "DfsCreateFile",
            Self::CreateDirectory => "DfsCreateDirectory",
            Self::Rename => "DfsRename",
            Self::Append => "DfsAppend",
            Self::Flush => "DfsFlush",
            Self::SetProperties => "DfsSetProperties",
            Self::Read => "DfsRead",
            Self::GetProperties => "DfsGetProperties",
            Self::GetStatus => "DfsGetStatus",
            Self::GetAccessControl => "DfsGetAccessControl",
            Self::Delete => "DfsDelete",
            Self::Lease => "DfsLease",
            Self::Unsupported(name) => name,
        }
    }

    /// The Blob operation with the same needs (permission, SAS letters, resource type).
    pub fn as_blob(self) -> Operation {
        match self {
            Self::ListFilesystems => Operation::ListContainers,
            Self::CreateFilesystem => Operation::CreateContainer,
            Self::DeleteFilesystem => Operation::DeleteContainer,
            Self::GetFilesystemProperties => Operation::GetContainerProperties,
            Self::SetFilesystemProperties => Operation::Unsupported("SetContainerMetadata"),
            Self::ListPaths => Operation::ListBlobs,
            Self::CreateFile | Self::CreateDirectory | Self::Rename => Operation::PutBlob,
            Self::Append => Operation::PutBlock,
            Self::Flush => Operation::PutBlockList,
            Self::SetProperties => Operation::SetBlobMetadata,
            Self::Read => Operation::GetBlob,
            Self::GetProperties | Self::GetStatus | Self::GetAccessControl => {
                Operation::GetBlobProperties
            }
            Self::Delete => Operation::DeleteBlob,
            Self::Lease | Self::Unsupported(_) => Operation::Unsupported("LeaseBlob"),
        }
    }
}

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DfsRouteError {
    /// No account in the path or host.
    NoAccount,
    /// The path could not be decoded.
    BadPath,
    /// A query parameter has a value no operation accepts.
    BadParameter(&'static str, String),
    /// The method is not allowed for this resource.
    Verb,
}

/// A routed DFS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DfsRouted {
    /// The operation.
    pub op: DfsOp,
    /// The storage account.
    pub account: String,
    /// The filesystem (container), decoded.
    pub filesystem: Option<String>,
    /// The path within it, decoded, without leading or trailing `/`.
    pub path: Option<String>,
}

/// Whether a request on the shared Azure listener is DFS-shaped: the DFS endpoint's own
/// parameters (`resource`, `action`), verbs the Blob API never uses (PATCH, POST without
/// `comp`), a rename, or a recursive delete. Reads and properties without these are the same
/// request in both APIs and stay with the Blob front.
pub fn wanted(method: &Method, query: &[(String, String)], rename: bool) -> bool {
    let has = |n: &str| query.iter().any(|(k, _)| k == n);
    // A CORS preflight is the Blob front's, whatever its URL.
    if has("comp") || has("restype") || *method == Method::OPTIONS {
        return false;
    }
    has("resource")
        || has("action")
        || *method == Method::PATCH
        || *method == Method::POST
        || (*method == Method::PUT && rename)
        || (*method == Method::DELETE && has("recursive"))
}

fn get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Decodes one path as the Blob router does, trimming the `/`s a DFS path may carry at either
/// end.
fn decode(raw: &str) -> Result<String, DfsRouteError> {
    let s = super::super::router::decode(raw).map_err(|_| DfsRouteError::BadPath)?;
    Ok(s.trim_matches('/').to_string())
}

/// Routes a request: `host_account` is the account when the host named it
/// (`<account>.dfs.<domain>`), else the path's first segment is the account.
pub fn route(
    method: &Method,
    host_account: Option<&str>,
    raw_path: &str,
    query: &[(String, String)],
    rename: bool,
) -> Result<DfsRouted, DfsRouteError> {
    let rest = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (account, rest) = match host_account {
        Some(a) => (a.to_string(), rest),
        None => {
            let (a, r) = rest.split_once('/').unwrap_or((rest, ""));
            let a = decode(a)?;
            if !is_account_name(&a) {
                return Err(DfsRouteError::NoAccount);
            }
            (a, r)
        }
    };
    let (fs, path) = rest.split_once('/').unwrap_or((rest, ""));
    let filesystem = Some(decode(fs)?).filter(|f| !f.is_empty());
    let path = Some(decode(path)?).filter(|p| !p.is_empty());
    let resource = get(query, "resource");
    let action = get(query, "action");
    let op = match (&filesystem, &path) {
        (None, _) => match (method.as_str(), resource) {
            ("GET", Some("account")) => DfsOp::ListFilesystems,
            (_, Some("account")) => return Err(DfsRouteError::Verb),
            (_, Some(r)) => return Err(DfsRouteError::BadParameter("resource", r.to_string())),
            _ => return Err(DfsRouteError::BadParameter("resource", String::new())),
        },
        // The filesystem itself: its operations name `resource=filesystem` (a DELETE without
        // it never deletes the filesystem); the root directory's status is a path operation.
        (Some(_), None) => match (method.as_str(), resource, action) {
            ("HEAD", None, Some("getStatus")) => DfsOp::GetStatus,
            ("HEAD", None, Some("getAccessControl")) => DfsOp::GetAccessControl,
            (_, None, _) => return Err(DfsRouteError::BadParameter("resource", String::new())),
            (_, Some(r), _) if r != "filesystem" => {
                return Err(DfsRouteError::BadParameter("resource", r.to_string()))
            }
            ("PUT", _, _) => DfsOp::CreateFilesystem,
            ("DELETE", _, _) => DfsOp::DeleteFilesystem,
            ("HEAD", _, _) => DfsOp::GetFilesystemProperties,
            ("PATCH", _, _) => DfsOp::SetFilesystemProperties,
            ("GET", _, _) => DfsOp::ListPaths,
            _ => return Err(DfsRouteError::Verb),
        },
        (Some(_), Some(_)) => match method.as_str() {
            "PUT" => match resource {
                Some("file") => DfsOp::CreateFile,
                Some("directory") => DfsOp::CreateDirectory,
                Some(r) => return Err(DfsRouteError::BadParameter("resource", r.to_string())),
                None if rename => DfsOp::Rename,
                None => return Err(DfsRouteError::BadParameter("resource", String::new())),
            },
            "PATCH" => match action {
                Some("append") => DfsOp::Append,
                Some("flush") => DfsOp::Flush,
                Some("setProperties") => DfsOp::SetProperties,
                Some("setAccessControl") => DfsOp::Unsupported("DfsSetAccessControl"),
                Some("setAccessControlRecursive") => {
                    DfsOp::Unsupported("DfsSetAccessControlRecursive")
                }
                Some(a) => return Err(DfsRouteError::BadParameter("action", a.to_string())),
                None => return Err(DfsRouteError::BadParameter("action", String::new())),
            },
            "POST" => DfsOp::Lease,
            "GET" => DfsOp::Read,
            "HEAD" => match action {
                None => DfsOp::GetProperties,
                Some("getStatus") => DfsOp::GetStatus,
                Some("getAccessControl") => DfsOp::GetAccessControl,
                Some(a) => return Err(DfsRouteError::BadParameter("action", a.to_string())),
            },
            "DELETE" => DfsOp::Delete,
            _ => return Err(DfsRouteError::Verb),
        },
    };
    Ok(DfsRouted {
        op,
        account,
        filesystem,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The request shapes of the DFS REST reference (and of the ABFS driver).
    #[test]
    fn routes_the_reference_table() {
        let cases: &[(&str, &str, &str, bool, DfsOp)] = &[
            (
                "GET",
                "/acct",
                "resource=account",
                false,
                DfsOp::ListFilesystems,
            ),
            (
                "PUT",
                "/acct/fs",
                "resource=filesystem",
                false,
                DfsOp::CreateFilesystem,
            ),
            (
                "DELETE",
                "/acct/fs",
                "resource=filesystem",
                false,
                DfsOp::DeleteFilesystem,
            ),
            (
                "HEAD",
                "/acct/fs",
                "resource=filesystem",
                false,
                DfsOp::GetFilesystemProperties,
            ),
            (
                "PATCH",
                "/acct/fs",
                "resource=filesystem",
                false,
                DfsOp::SetFilesystemProperties,
            ),
            (
                "GET",
                "/acct/fs",
                "resource=filesystem&recursive=false&maxResults=5000",
                false,
                DfsOp::ListPaths,
            ),
            (
                "PUT",
                "/acct/fs/a/b.txt",
                "resource=file",
                false,
                DfsOp::CreateFile,
            ),
            (
                "PUT",
                "/acct/fs/a",
                "resource=directory",
                false,
                DfsOp::CreateDirectory,
            ),
            ("PUT", "/acct/fs/a2", "mode=legacy", true, DfsOp::Rename),
            (
                "PATCH",
                "/acct/fs/a/b.txt",
                "action=append&position=0",
                false,
                DfsOp::Append,
            ),
            (
                "PATCH",
                "/acct/fs/a/b.txt",
                "action=flush&position=10&close=true",
                false,
                DfsOp::Flush,
            ),
            (
                "PATCH",
                "/acct/fs/a/b.txt",
                "action=setProperties",
                false,
                DfsOp::SetProperties,
            ),
            ("GET", "/acct/fs/a/b.txt", "", false, DfsOp::Read),
            ("HEAD", "/acct/fs/a/b.txt", "", false, DfsOp::GetProperties),
            (
                "HEAD",
                "/acct/fs/a/b.txt",
                "action=getStatus",
                false,
                DfsOp::GetStatus,
            ),
            (
                "HEAD",
                "/acct/fs/a",
                "action=getAccessControl&upn=false",
                false,
                DfsOp::GetAccessControl,
            ),
            (
                "DELETE",
                "/acct/fs/a",
                "recursive=true",
                false,
                DfsOp::Delete,
            ),
            ("POST", "/acct/fs/a/b.txt", "", false, DfsOp::Lease),
        ];
        for (m, path, query, rename, op) in cases {
            let method = Method::from_bytes(m.as_bytes()).expect("method");
            let r = route(&method, None, path, &q(query), *rename).expect(path);
            assert_eq!(r.op, *op, "{m} {path}?{query}");
            assert_eq!(r.account, "acct");
        }
        let r = route(
            &Method::PUT,
            Some("acct"),
            "/fs/dir%20x/f/",
            &q("resource=file"),
            false,
        )
        .expect("host style");
        assert_eq!(
            (r.filesystem.as_deref(), r.path.as_deref()),
            (Some("fs"), Some("dir x/f"))
        );
    }

    #[test]
    fn refuses_what_no_operation_takes() {
        let bad = |m: Method, path: &str, query: &str| route(&m, None, path, &q(query), false);
        assert_eq!(
            bad(Method::PUT, "/acct/fs/p", "resource=volume"),
            Err(DfsRouteError::BadParameter("resource", "volume".into()))
        );
        assert_eq!(
            bad(Method::PATCH, "/acct/fs/p", "action=explode"),
            Err(DfsRouteError::BadParameter("action", "explode".into()))
        );
        assert_eq!(
            bad(Method::PUT, "/acct/fs/p", ""),
            Err(DfsRouteError::BadParameter("resource", String::new()))
        );
        assert_eq!(
            bad(Method::POST, "/acct/fs", "resource=filesystem"),
            Err(DfsRouteError::Verb)
        );
        assert_eq!(
            bad(Method::GET, "/A!/fs", "resource=filesystem"),
            Err(DfsRouteError::NoAccount)
        );
        assert_eq!(
            bad(Method::GET, "/acct/fs/%ff", ""),
            Err(DfsRouteError::BadPath)
        );
        assert_eq!(
            bad(Method::DELETE, "/acct/fs", "recursive=true"),
            Err(DfsRouteError::BadParameter("resource", String::new()))
        );
        let root = route(
            &Method::HEAD,
            None,
            "/acct/fs/",
            &q("action=getStatus"),
            false,
        );
        assert_eq!(root.map(|r| (r.op, r.path)), Ok((DfsOp::GetStatus, None)));
    }

    #[test]
    fn tells_dfs_requests_from_blob_ones() {
        assert!(wanted(&Method::PUT, &q("resource=file"), false));
        assert!(wanted(
            &Method::PATCH,
            &q("action=append&position=0"),
            false
        ));
        assert!(wanted(&Method::PUT, &q(""), true));
        assert!(wanted(&Method::DELETE, &q("recursive=true"), false));
        assert!(wanted(&Method::HEAD, &q("action=getStatus"), false));
        assert!(!wanted(&Method::GET, &q(""), false));
        assert!(!wanted(&Method::PUT, &q("comp=block&blockid=AA=="), false));
        assert!(!wanted(&Method::POST, &q("comp=batch"), false));
        assert!(!wanted(
            &Method::GET,
            &q("restype=container&comp=list"),
            false
        ));
    }
}
