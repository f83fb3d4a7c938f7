//! Azure's XML listings: the serde types of List Containers and List Blobs, and each
//! container's own `<Properties>` and `<Metadata>` kept verbatim.

use serde::Deserialize;

/// Each `<Container>` of a List Containers document as (name, its `<Properties>` and
/// `<Metadata>` elements verbatim), in document order. The name is `<Name>`'s raw text: a
/// name that needed escaping matches no parsed name, and its entry is described by Cistern.
pub(super) fn container_listings(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<Container>") {
        let body = &rest[start + "<Container>".len()..];
        let Some(end) = body.find("</Container>") else {
            break;
        };
        let entry = &body[..end];
        rest = &body[end..];
        let name = between(entry, "<Name>", "</Name>").unwrap_or_default();
        let mut listing = String::new();
        for (open, close) in [
            ("<Properties>", "</Properties>"),
            ("<Metadata>", "</Metadata>"),
        ] {
            if let Some(inner) = between(entry, open, close) {
                listing.push_str(open);
                listing.push_str(inner);
                listing.push_str(close);
            }
        }
        out.push((name.to_string(), listing));
    }
    out
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = s.find(open)? + open.len();
    let len = s[from..].find(close)?;
    Some(&s[from..from + len])
}

#[derive(Debug, Deserialize)]
pub(super) struct XmlContainers {
    #[serde(rename = "Containers", default)]
    pub(super) containers: XmlContainerList,
    #[serde(rename = "NextMarker", default)]
    pub(super) next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct XmlContainerList {
    #[serde(rename = "Container", default)]
    pub(super) container: Vec<XmlContainer>,
}

#[derive(Debug, Deserialize)]
pub(super) struct XmlContainer {
    #[serde(rename = "Name")]
    pub(super) name: String,
    #[serde(rename = "Properties", default)]
    pub(super) properties: XmlProperties,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct XmlProperties {
    #[serde(rename = "Last-Modified", default)]
    pub(super) last_modified: Option<String>,
    #[serde(rename = "Etag", default)]
    pub(super) etag: Option<String>,
    #[serde(rename = "Content-Length", default)]
    pub(super) content_length: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct XmlBlobsResult {
    #[serde(rename = "Blobs", default)]
    pub(super) blobs: XmlBlobs,
    #[serde(rename = "NextMarker", default)]
    pub(super) next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct XmlBlobs {
    #[serde(rename = "$value", default)]
    pub(super) items: Vec<XmlBlobItem>,
}

#[derive(Debug, Deserialize)]
pub(super) enum XmlBlobItem {
    Blob(XmlBlob),
    BlobPrefix(XmlName),
}

#[derive(Debug, Deserialize)]
pub(super) struct XmlBlob {
    #[serde(rename = "Name")]
    pub(super) name: String,
    #[serde(rename = "Properties", default)]
    pub(super) properties: XmlProperties,
}

#[derive(Debug, Deserialize)]
pub(super) struct XmlName {
    #[serde(rename = "Name")]
    pub(super) name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::origin::wire::unquote;

    #[test]
    fn parses_a_blob_listing_with_interleaved_prefixes() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://x/" ContainerName="c"><Prefix>a</Prefix><MaxResults>3</MaxResults><Delimiter>/</Delimiter><Blobs><Blob><Name>a1</Name><Properties><Creation-Time>Tue, 14 Nov 2023 22:13:20 GMT</Creation-Time><Last-Modified>Tue, 14 Nov 2023 22:13:20 GMT</Last-Modified><Etag>0x8DBE5</Etag><Content-Length>5</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob><BlobPrefix><Name>a2/</Name></BlobPrefix><Blob><Name>a3</Name><Properties><Last-Modified>Tue, 14 Nov 2023 22:13:20 GMT</Last-Modified><Etag>"0x8DBE6"</Etag><Content-Length>7</Content-Length></Properties></Blob></Blobs><NextMarker>2!8!YTM-</NextMarker></EnumerationResults>"#;
        let parsed: XmlBlobsResult = quick_xml::de::from_str(xml).expect("parse");
        assert_eq!(parsed.blobs.items.len(), 3);
        assert!(matches!(&parsed.blobs.items[1], XmlBlobItem::BlobPrefix(p) if p.name == "a2/"));
        assert_eq!(parsed.next_marker.as_deref(), Some("2!8!YTM-"));
        match &parsed.blobs.items[2] {
            XmlBlobItem::Blob(b) => {
                assert_eq!(
                    b.properties.etag.as_deref().map(unquote).as_deref(),
                    Some("0x8DBE6")
                );
                assert_eq!(b.properties.content_length, Some(7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn container_listings_keep_properties_and_metadata() {
        let doc = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Containers>\
<Container><Name>a</Name><Properties><Etag>\"0x1\"</Etag><PublicAccess>blob</PublicAccess>\
</Properties><Metadata><Key>v</Key></Metadata></Container>\
<Container><Name>b&amp;c</Name><Properties><Etag>\"0x2\"</Etag></Properties></Container>\
</Containers><NextMarker /></EnumerationResults>";
        let got = container_listings(doc);
        assert_eq!(
            got,
            vec![
                (
                    "a".to_string(),
                    "<Properties><Etag>\"0x1\"</Etag><PublicAccess>blob</PublicAccess>\
</Properties><Metadata><Key>v</Key></Metadata>"
                        .to_string()
                ),
                (
                    "b&amp;c".to_string(),
                    "<Properties><Etag>\"0x2\"</Etag></Properties>".to_string()
                ),
            ]
        );
    }
}

/// A Get Block List document.
#[derive(Debug, Deserialize)]
pub(super) struct XmlBlockList {
    #[serde(rename = "CommittedBlocks", default)]
    pub(super) committed: XmlBlocks,
    #[serde(rename = "UncommittedBlocks", default)]
    pub(super) uncommitted: XmlBlocks,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct XmlBlocks {
    #[serde(rename = "Block", default)]
    pub(super) block: Vec<XmlBlock>,
}

impl XmlBlocks {
    /// (id, size) in document order.
    pub(super) fn pairs(self) -> Vec<(String, u64)> {
        self.block.into_iter().map(|b| (b.name, b.size)).collect()
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct XmlBlock {
    #[serde(rename = "Name")]
    pub(super) name: String,
    #[serde(rename = "Size")]
    pub(super) size: u64,
}
