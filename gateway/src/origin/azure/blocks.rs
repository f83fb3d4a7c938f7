//! S3 parts as Azure blocks (upload ids that carry the object's properties, the block ids of
//! parts) and Put Block List, which commits blocks of either kind.

use http::Method;

use super::headers::{content_headers, http_time, metadata_headers};
use super::AzureOrigin;
use crate::error::Result;
use crate::origin::wire::{header, header_pairs, unquote};
use crate::origin::{PutOptions, PutResult};

impl AzureOrigin {
    /// Get Block List of one `kind` (`committed`, `uncommitted` or `all`).
    pub(super) async fn block_list(
        &self,
        bucket: &str,
        key: &str,
        kind: &str,
    ) -> Result<super::list::XmlBlockList> {
        let resp = self
            .send(
                Method::GET,
                Some(bucket),
                Some(key),
                &[("comp", "blocklist"), ("blocklisttype", kind)],
                &[],
                &[],
            )
            .await?;
        let text = crate::origin::wire::read_text(resp).await?;
        quick_xml::de::from_str(&text).map_err(crate::origin::wire::bad_xml)
    }

    /// Put Block List with the object's properties.
    pub(super) async fn put_block_list(
        &self,
        bucket: &str,
        key: &str,
        xml: String,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let mut owned: Vec<(String, String)> =
            vec![("content-length".into(), xml.len().to_string())];
        if opts.create_only {
            owned.push(("if-none-match".into(), "*".into()));
        }
        owned.extend(content_headers(opts));
        owned.extend(metadata_headers(opts));
        let headers = header_pairs(&owned);
        let resp = self
            .send_as(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[("comp", "blocklist")],
                &headers,
                &[],
                None,
                Some(reqwest::Body::from(xml)),
            )
            .await?;
        let h = resp.headers();
        Ok(PutResult {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: http_time(header(h, "last-modified")),
            version_id: None,
            origin_headers: Vec::new(),
        })
    }
}

/// Upload ids for S3 parts onto Azure blocks: `<32 hex>.<base64url of the properties>`.
pub(super) mod parts_id {
    use base64::Engine as _;

    use crate::error::{Error, ErrorKind, Result};
    use crate::origin::PutOptions;

    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    pub(in crate::origin::azure) fn encode(opts: &PutOptions) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(std::process::id().to_le_bytes());
        h.update(
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
        h.update(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_le_bytes(),
        );
        let nonce = hex::encode(&h.finalize()[..16]);
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("ct", &opts.content_type),
            ("ce", &opts.content_encoding),
            ("cl", &opts.content_language),
            ("cc", &opts.cache_control),
            ("cd", &opts.content_disposition),
        ] {
            if let Some(v) = v {
                form.append_pair(k, v);
            }
        }
        for (k, v) in &opts.user_metadata {
            form.append_pair(&format!("m.{k}"), v);
        }
        let props = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(form.finish());
        format!("{nonce}.{props}")
    }

    pub(in crate::origin::azure) fn decode(id: &str) -> Result<(String, PutOptions)> {
        let bad = || {
            Error::new(
                ErrorKind::NoSuchUpload,
                "The specified upload does not exist",
            )
        };
        let (nonce, props) = id.split_once('.').ok_or_else(bad)?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(props)
            .map_err(|_| bad())?;
        let mut opts = PutOptions::default();
        for (k, v) in form_urlencoded::parse(&raw) {
            let v = v.into_owned();
            match k.as_ref() {
                "ct" => opts.content_type = Some(v),
                "ce" => opts.content_encoding = Some(v),
                "cl" => opts.content_language = Some(v),
                "cc" => opts.cache_control = Some(v),
                "cd" => opts.content_disposition = Some(v),
                m => {
                    // Names become header names: anything else means a forged id.
                    let name = m.strip_prefix("m.").ok_or_else(bad)?;
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        return Err(bad());
                    }
                    opts.user_metadata.push((name.to_string(), v));
                }
            }
        }
        Ok((nonce.to_string(), opts))
    }

    /// The block id of part `n` (the same length for every part of an upload).
    pub(in crate::origin::azure) fn block(nonce: &str, n: u32) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{nonce}-{n:05}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_carry_the_properties() {
        let opts = PutOptions {
            content_type: Some("text/plain; charset=utf-8".into()),
            user_metadata: vec![("a_b".into(), "x&y=z".into())],
            ..Default::default()
        };
        let id = parts_id::encode(&opts);
        let (nonce, back) = parts_id::decode(&id).expect("decode");
        assert_eq!(back.content_type, opts.content_type);
        assert_eq!(back.user_metadata, opts.user_metadata);
        assert_eq!(
            parts_id::block(&nonce, 1).len(),
            parts_id::block(&nonce, 10_000).len()
        );
        assert!(parts_id::decode("../../etc").is_err());
        use base64::Engine as _;
        let forged = format!(
            "{}.{}",
            "0".repeat(32),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("m.bad%0Aname=x")
        );
        assert!(parts_id::decode(&forged).is_err());
    }
}
