//! XML bodies of the Blob dialect, written directly (they are small and fixed in shape):
//! List Containers, List Blobs and Get Block List, after Microsoft's REST reference.

use std::time::SystemTime;

/// Appends `s` escaped for element text (`&`, `<`, `>`).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Appends `s` escaped for a double-quoted attribute value.
fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            c => escape_into(out, c.encode_utf8(&mut [0; 4])),
        }
    }
}

const HEADER: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";

fn elem(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn opt_elem(out: &mut String, name: &str, value: Option<&str>) {
    match value {
        Some(v) => elem(out, name, v),
        None => {
            out.push('<');
            out.push_str(name);
            out.push_str(" />");
        }
    }
}

/// RFC 1123 dates, as Azure writes them in headers and listings.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn metadata(out: &mut String, md: &[(String, String)]) {
    out.push_str("<Metadata>");
    for (k, v) in md {
        elem(out, k, v);
    }
    out.push_str("</Metadata>");
}

/// One container in a listing.
#[derive(Debug, Clone)]
pub struct ContainerItem {
    /// Name.
    pub name: String,
    /// Last modification (creation when that is all that is known).
    pub last_modified: SystemTime,
    /// The container's ETag, quoted (container listings quote it).
    pub etag: String,
    /// An Azure origin's own `<Properties>` (and `<Metadata>`) of the container, passed on
    /// in place of the ones Cistern would write.
    pub origin: Option<String>,
}

/// The List Containers body.
pub fn list_containers(
    endpoint: &str,
    prefix: Option<&str>,
    marker: Option<&str>,
    max: Option<usize>,
    items: &[ContainerItem],
    with_metadata: bool,
    next: Option<&str>,
) -> String {
    let mut s = String::with_capacity(256 + items.len() * 256);
    s.push_str(HEADER);
    s.push_str("<EnumerationResults ServiceEndpoint=\"");
    escape_attr(&mut s, endpoint);
    s.push_str("\">");
    if let Some(p) = prefix {
        elem(&mut s, "Prefix", p);
    }
    if let Some(m) = marker {
        elem(&mut s, "Marker", m);
    }
    if let Some(m) = max {
        elem(&mut s, "MaxResults", &m.to_string());
    }
    s.push_str("<Containers>");
    for c in items {
        s.push_str("<Container>");
        elem(&mut s, "Name", &c.name);
        if let Some(origin) = &c.origin {
            let (props, md) = match origin.find("<Metadata>") {
                Some(at) => origin.split_at(at),
                None => (origin.as_str(), ""),
            };
            s.push_str(props);
            if with_metadata {
                s.push_str(if md.is_empty() {
                    "<Metadata></Metadata>"
                } else {
                    md
                });
            }
            s.push_str("</Container>");
            continue;
        }
        s.push_str("<Properties>");
        elem(&mut s, "Last-Modified", &http_date(c.last_modified));
        elem(&mut s, "Etag", &c.etag);
        s.push_str(
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>\
             <HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold>",
        );
        s.push_str("</Properties>");
        if with_metadata {
            metadata(&mut s, &[]);
        }
        s.push_str("</Container>");
    }
    s.push_str("</Containers>");
    opt_elem(&mut s, "NextMarker", next);
    s.push_str("</EnumerationResults>");
    s
}

/// One blob in a listing.
#[derive(Debug, Clone)]
pub struct BlobItem {
    /// Name.
    pub name: String,
    /// Size.
    pub size: u64,
    /// ETag (unquoted, as listings write it).
    pub etag: String,
    /// Last modification.
    pub last_modified: SystemTime,
    /// Creation time, when known.
    pub created: Option<SystemTime>,
    /// Content-Type, when known.
    pub content_type: Option<String>,
    /// Content-MD5 (base64), when known.
    pub content_md5: Option<String>,
    /// Blob type.
    pub blob_type: String,
    /// User metadata, when asked for.
    pub metadata: Option<Vec<(String, String)>>,
}

/// What a List Blobs page holds, in name order: blobs and virtual directories.
#[derive(Debug, Clone)]
pub enum Listed {
    /// A blob.
    Blob(BlobItem),
    /// A virtual directory (`BlobPrefix`).
    Prefix(String),
}

/// The parameters echoed in a List Blobs body.
#[derive(Debug, Clone, Default)]
pub struct ListBlobsEcho<'a> {
    /// Service endpoint URL.
    pub endpoint: &'a str,
    /// Container name.
    pub container: &'a str,
    /// `prefix`.
    pub prefix: Option<&'a str>,
    /// `marker`.
    pub marker: Option<&'a str>,
    /// `maxresults`.
    pub max: Option<usize>,
    /// `delimiter`.
    pub delimiter: Option<&'a str>,
}

/// The List Blobs body.
pub fn list_blobs(echo: &ListBlobsEcho<'_>, items: &[Listed], next: Option<&str>) -> String {
    let mut s = String::with_capacity(256 + items.len() * 512);
    s.push_str(HEADER);
    s.push_str("<EnumerationResults ServiceEndpoint=\"");
    escape_attr(&mut s, echo.endpoint);
    s.push_str("\" ContainerName=\"");
    escape_attr(&mut s, echo.container);
    s.push_str("\">");
    if let Some(p) = echo.prefix {
        elem(&mut s, "Prefix", p);
    }
    if let Some(m) = echo.marker {
        elem(&mut s, "Marker", m);
    }
    if let Some(m) = echo.max {
        elem(&mut s, "MaxResults", &m.to_string());
    }
    if let Some(d) = echo.delimiter {
        elem(&mut s, "Delimiter", d);
    }
    s.push_str("<Blobs>");
    for item in items {
        match item {
            Listed::Prefix(p) => {
                s.push_str("<BlobPrefix>");
                elem(&mut s, "Name", p);
                s.push_str("</BlobPrefix>");
            }
            Listed::Blob(b) => {
                s.push_str("<Blob>");
                elem(&mut s, "Name", &b.name);
                s.push_str("<Properties>");
                if let Some(c) = b.created {
                    elem(&mut s, "Creation-Time", &http_date(c));
                }
                elem(&mut s, "Last-Modified", &http_date(b.last_modified));
                elem(&mut s, "Etag", &b.etag);
                elem(&mut s, "Content-Length", &b.size.to_string());
                opt_elem(&mut s, "Content-Type", b.content_type.as_deref());
                opt_elem(&mut s, "Content-MD5", b.content_md5.as_deref());
                elem(&mut s, "BlobType", &b.blob_type);
                s.push_str("<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>");
                s.push_str("</Properties>");
                if let Some(md) = &b.metadata {
                    metadata(&mut s, md);
                }
                s.push_str("</Blob>");
            }
        }
    }
    s.push_str("</Blobs>");
    opt_elem(&mut s, "NextMarker", next);
    s.push_str("</EnumerationResults>");
    s
}

/// A Get Block List body with no blocks: the blob was written whole (or lives at an origin
/// without blocks).
pub fn empty_block_list() -> String {
    format!("{HEADER}<BlockList><CommittedBlocks /><UncommittedBlocks /></BlockList>")
}

/// An origin's List Blobs document with its root's `ServiceEndpoint` and `ContainerName`
/// replaced by Cistern's endpoint and the container's exposed name; the rest is kept byte for
/// byte. A document without that root is returned as it is.
pub fn rewrite_root_attributes(doc: &str, endpoint: &str, container: &str) -> String {
    let Some(start) = doc.find("<EnumerationResults") else {
        return doc.to_string();
    };
    let Some(len) = doc[start..].find('>') else {
        return doc.to_string();
    };
    let tag = &doc[start..start + len];
    let mut out = String::with_capacity(doc.len() + 64);
    out.push_str(&doc[..start]);
    let mut rest = tag;
    for (name, value) in [("ServiceEndpoint", endpoint), ("ContainerName", container)] {
        let needle = format!(" {name}=\"");
        let Some(at) = rest.find(&needle) else {
            continue;
        };
        let value_start = at + needle.len();
        let Some(value_len) = rest[value_start..].find('"') else {
            continue;
        };
        out.push_str(&rest[..value_start]);
        escape_attr(&mut out, value);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out.push_str(&doc[start + len..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn list_blobs_golden() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let items = [
            Listed::Blob(BlobItem {
                name: "a&b.txt".into(),
                size: 3,
                etag: "0x1".into(),
                last_modified: t,
                created: None,
                content_type: Some("text/plain".into()),
                content_md5: None,
                blob_type: "BlockBlob".into(),
                metadata: Some(vec![("k".into(), "v".into())]),
            }),
            Listed::Prefix("dir/".into()),
        ];
        let echo = ListBlobsEcho {
            endpoint: "http://127.0.0.1:10000/acct/",
            container: "data",
            prefix: Some(""),
            max: Some(2),
            delimiter: Some("/"),
            ..Default::default()
        };
        assert_eq!(
            list_blobs(&echo, &items, Some("dir/")),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
             <EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/acct/\" ContainerName=\"data\">\
             <Prefix></Prefix><MaxResults>2</MaxResults><Delimiter>/</Delimiter><Blobs>\
             <Blob><Name>a&amp;b.txt</Name><Properties>\
             <Last-Modified>Tue, 14 Nov 2023 22:13:20 GMT</Last-Modified><Etag>0x1</Etag>\
             <Content-Length>3</Content-Length><Content-Type>text/plain</Content-Type>\
             <Content-MD5 /><BlobType>BlockBlob</BlobType>\
             <LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>\
             </Properties><Metadata><k>v</k></Metadata></Blob>\
             <BlobPrefix><Name>dir/</Name></BlobPrefix></Blobs>\
             <NextMarker>dir/</NextMarker></EnumerationResults>"
        );
    }

    #[test]
    fn relayed_listing_names_cistern() {
        let doc = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults \
                   ServiceEndpoint=\"http://origin:10000/devstoreaccount1/\" \
                   ContainerName=\"prod-data\"><Blobs><Blob><Name>x</Name></Blob></Blobs>\
                   </EnumerationResults>";
        assert_eq!(
            rewrite_root_attributes(doc, "http://cistern/acct/", "data&co"),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults \
             ServiceEndpoint=\"http://cistern/acct/\" ContainerName=\"data&amp;co\">\
             <Blobs><Blob><Name>x</Name></Blob></Blobs></EnumerationResults>"
        );
        assert_eq!(rewrite_root_attributes("<Error/>", "e", "c"), "<Error/>");
    }
}
