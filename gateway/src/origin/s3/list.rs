//! Listings and S3's other XML answers: one listing page as the origin sends it, the
//! documents' serde types (listings, versions, parts, uploads, buckets, tags), fields and times.

use std::time::SystemTime;

use http::Method;
use serde::Deserialize;

use super::S3Origin;
use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::bad_xml;
use crate::origin::wire::{keep_spaces, unquote};
use crate::origin::{ListCursor, ListEntry, ListPage, ListQuery};

/// The text of the first `<name>` element of a small XML answer.
pub(super) fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}

pub(super) fn parse_time(s: &str) -> SystemTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl S3Origin {
    /// One listing page as the origin answers it.
    pub(super) async fn list_raw(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let mut query: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                query.push((k.to_string(), v.to_string()));
            }
        };
        let v2 = matches!(q.cursor, ListCursor::V2 { .. });
        if v2 {
            push("list-type", Some("2"));
            // The owners come along, as V1 always gives them: the front shows them when its
            // client asks (`fetch-owner`).
            push("fetch-owner", Some("true"));
        }
        push("prefix", Some(q.prefix.as_str()).filter(|p| !p.is_empty()));
        push("delimiter", q.delimiter.as_deref());
        push("max-keys", Some(&q.max_keys.to_string()));
        match &q.cursor {
            ListCursor::V1 { marker } => push("marker", marker.as_deref()),
            ListCursor::V2 {
                continuation,
                start_after,
            } => {
                push("continuation-token", continuation.as_deref());
                push("start-after", start_after.as_deref());
            }
        }
        let resp = self
            .send(Method::GET, Some(bucket), None, &query, &[], &[])
            .await?;
        let body = resp.text().await.map_err(|e| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin's response broke off",
            )
            .with_source(e.without_url())
        })?;
        parse_list_page(&body, v2)
    }
}

/// Parses a ListObjects (V1, or V2 when `v2`) answer into a page. The body comes from the
/// origin: anything it holds is answered with an error, never a panic.
pub(crate) fn parse_list_page(body: &str, v2: bool) -> Result<ListPage> {
    let parsed: XmlListResult =
        quick_xml::de::from_str(&keep_spaces(body, KEY_ELEMENTS)).map_err(bad_xml)?;
    let entries: Vec<ListEntry> = parsed
        .contents
        .into_iter()
        .map(|o| ListEntry {
            last_modified: parse_time(&o.last_modified),
            etag: unquote(&o.etag),
            key: o.key,
            size: o.size,
            owner: o.owner.and_then(XmlOwner::into_owner),
        })
        .collect();
    let common_prefixes: Vec<String> = parsed
        .common_prefixes
        .into_iter()
        .map(|p| p.prefix)
        .collect();
    let next = if !parsed.is_truncated {
        None
    } else if v2 {
        parsed.next_continuation_token
    } else {
        // Without a delimiter S3 omits NextMarker; the last key is the marker then.
        parsed.next_marker.or_else(|| {
            let last_key = entries.last().map(|e| e.key.clone());
            let last_prefix = common_prefixes.last().cloned();
            last_key.max(last_prefix)
        })
    };
    Ok(ListPage {
        entries,
        common_prefixes,
        truncated: parsed.is_truncated,
        next,
    })
}

/// Elements of a listing whose text is a key, exactly: leading and trailing spaces included.
pub(super) const KEY_ELEMENTS: &[&str] =
    &["Key", "Prefix", "NextMarker", "NextKeyMarker", "Marker"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlTagging {
    #[serde(default)]
    pub(super) tag_set: XmlTagSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlTagSet {
    #[serde(default)]
    pub(super) tag: Vec<XmlTag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlTag {
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlVersions {
    #[serde(default)]
    pub(super) version: Vec<XmlVersion>,
    #[serde(default)]
    pub(super) delete_marker: Vec<XmlDeleteMarker>,
    #[serde(default)]
    pub(super) common_prefixes: Vec<XmlPrefix>,
    #[serde(default)]
    pub(super) is_truncated: bool,
    pub(super) next_key_marker: Option<String>,
    pub(super) next_version_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlVersion {
    pub(super) key: String,
    pub(super) version_id: String,
    #[serde(default)]
    pub(super) is_latest: bool,
    pub(super) last_modified: String,
    #[serde(rename = "ETag", default)]
    pub(super) etag: String,
    #[serde(default)]
    pub(super) size: u64,
    pub(super) owner: Option<XmlOwner>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlDeleteMarker {
    pub(super) key: String,
    pub(super) version_id: String,
    #[serde(default)]
    pub(super) is_latest: bool,
    pub(super) last_modified: String,
    pub(super) owner: Option<XmlOwner>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlParts {
    #[serde(default)]
    pub(super) part: Vec<XmlPart>,
    #[serde(default)]
    pub(super) is_truncated: bool,
    pub(super) next_part_number_marker: Option<String>,
    pub(super) initiator: Option<XmlOwner>,
    pub(super) owner: Option<XmlOwner>,
    pub(super) storage_class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlPart {
    pub(super) part_number: u32,
    #[serde(rename = "ETag", default)]
    pub(super) etag: String,
    #[serde(default)]
    pub(super) size: u64,
    pub(super) last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlUploads {
    #[serde(default)]
    pub(super) upload: Vec<XmlUpload>,
    #[serde(default)]
    pub(super) is_truncated: bool,
    pub(super) next_key_marker: Option<String>,
    pub(super) next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlUpload {
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) initiated: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlListResult {
    #[serde(default)]
    contents: Vec<XmlObject>,
    #[serde(default)]
    common_prefixes: Vec<XmlPrefix>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
    next_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlObject {
    key: String,
    last_modified: String,
    #[serde(rename = "ETag", default)]
    etag: String,
    size: u64,
    owner: Option<XmlOwner>,
}

/// `<Owner>` or `<Initiator>`.
#[derive(Debug, Deserialize)]
pub(super) struct XmlOwner {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "DisplayName")]
    display_name: Option<String>,
}

impl XmlOwner {
    /// The owner, when it has an id.
    pub(super) fn into_owner(self) -> Option<super::Owner> {
        Some(super::Owner {
            id: self.id.filter(|i| !i.is_empty())?,
            display_name: self.display_name,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlPrefix {
    pub(super) prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlBuckets {
    #[serde(default)]
    pub(super) buckets: XmlBucketList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlBucketList {
    #[serde(default)]
    pub(super) bucket: Vec<XmlBucket>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct XmlBucket {
    pub(super) name: String,
    pub(super) creation_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::origin::wire::parse_content_range;

    #[test]
    fn parses_listings() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a &amp; b</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>
<CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let parsed: XmlListResult = quick_xml::de::from_str(xml).expect("parse");
        assert_eq!(parsed.contents[0].key, "a & b");
        assert_eq!(unquote(&parsed.contents[0].etag), "abc");
        assert_eq!(parsed.common_prefixes[0].prefix, "d/");
        assert!(parsed.is_truncated);
        assert_eq!(parsed.next_continuation_token.as_deref(), Some("tok"));
        assert_eq!(parse_content_range("bytes 0-9/1234"), Some((0, 9, 1234)));
        assert_eq!(parse_content_range("bytes 9-0/1234"), None);
        assert_eq!(parse_content_range("bytes 0-1234/1234"), None);
        assert_eq!(parse_content_range("bytes */1234"), None);
    }

    #[test]
    fn listings_and_part_lists_carry_the_origins_owners() {
        // As moto 5.2 and S3 answer (V1, and V2 with fetch-owner=true).
        let xml = r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>
<Contents><Key>k</Key><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"e"</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>1</Size><StorageClass>STANDARD</StorageClass><Owner><DisplayName>webfile</DisplayName><ID>75aa57f0</ID></Owner></Contents>
<Contents><Key>l</Key><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"e"</ETag><Size>1</Size><Owner><ID>only-id</ID></Owner></Contents>
<Contents><Key>m</Key><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"e"</ETag><Size>1</Size></Contents>
<Name>b</Name></ListBucketResult>"#;
        let parsed: XmlListResult = quick_xml::de::from_str(xml).expect("parse");
        let owners: Vec<_> = parsed
            .contents
            .into_iter()
            .map(|o| o.owner.and_then(XmlOwner::into_owner))
            .collect();
        assert_eq!(
            owners,
            [
                Some(super::super::Owner {
                    id: "75aa57f0".into(),
                    display_name: Some("webfile".into())
                }),
                Some(super::super::Owner {
                    id: "only-id".into(),
                    display_name: None
                }),
                None,
            ]
        );
        let parts = r#"<ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>mp</Key><UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>1</NextPartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"0bbc"</ETag><Size>10</Size></Part><Initiator><ID>init-id</ID><DisplayName>webfile</DisplayName></Initiator><Owner><DisplayName>webfile</DisplayName><ID>owner-id</ID></Owner><StorageClass>STANDARD_IA</StorageClass></ListPartsResponse>"#;
        let page: XmlParts = quick_xml::de::from_str(parts).expect("parse");
        assert_eq!(page.part.len(), 1);
        assert_eq!(
            page.initiator.and_then(XmlOwner::into_owner).map(|o| o.id),
            Some("init-id".into())
        );
        assert_eq!(
            page.owner.and_then(XmlOwner::into_owner).map(|o| o.id),
            Some("owner-id".into())
        );
        assert_eq!(page.storage_class.as_deref(), Some("STANDARD_IA"));
    }

    #[test]
    fn keys_keep_their_leading_and_trailing_spaces() {
        let xml =
            "<ListBucketResult><IsTruncated>false</IsTruncated>\n<Contents><Key> a b \t</Key>\
<LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>e</ETag><Size>1</Size></Contents>\
<Contents><Key>nl\nx&amp;</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>\
<ETag>e</ETag><Size>1</Size></Contents><CommonPrefixes><Prefix>p /</Prefix></CommonPrefixes>\
<NextMarker>m </NextMarker></ListBucketResult>";
        let parsed: XmlListResult =
            quick_xml::de::from_str(&keep_spaces(xml, KEY_ELEMENTS)).expect("parse");
        assert_eq!(parsed.contents[0].key, " a b \t");
        assert_eq!(parsed.contents[1].key, "nl\nx&");
        assert_eq!(parsed.common_prefixes[0].prefix, "p /");
        assert_eq!(parsed.next_marker.as_deref(), Some("m "));
    }
}
