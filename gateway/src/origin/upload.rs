//! Checks an upload's body as it streams: its length against the declared one and its MD5
//! against `Content-MD5`. Origins that verify `Content-MD5` themselves (S3, Azure) are sent it
//! too, so a mismatch never leaves an object behind; the `fs` origin commits only after
//! [`BodyCheck::finish`] succeeds.

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use md5::Digest as _;

use super::Upload;
use crate::error::{Error, ErrorKind, Result};

/// Running length and MD5 of a body.
pub(crate) struct BodyCheck {
    len: u64,
    seen: u64,
    md5: Option<(md5::Md5, Vec<u8>)>,
}

fn bad_digest() -> Error {
    Error::new(
        ErrorKind::BadDigest,
        "The Content-MD5 you specified did not match what we received.",
    )
}

fn incomplete() -> Error {
    Error::new(
        ErrorKind::IncompleteBody,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    )
}

impl BodyCheck {
    /// Expects `len` bytes, and the MD5 `content_md5` (base64) when given.
    pub(crate) fn new(len: u64, content_md5: Option<&str>) -> Result<Self> {
        let md5 = match content_md5 {
            Some(m) => {
                let want = base64::engine::general_purpose::STANDARD
                    .decode(m.trim())
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidArgument,
                            "The Content-MD5 you specified is not valid.",
                        )
                    })?;
                Some((md5::Md5::new(), want))
            }
            None => None,
        };
        Ok(Self { len, seen: 0, md5 })
    }

    /// Accounts for one piece of the body; fails as soon as it runs past the length.
    pub(crate) fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.seen += chunk.len() as u64;
        if self.seen > self.len {
            return Err(incomplete());
        }
        if let Some((h, _)) = &mut self.md5 {
            h.update(chunk);
        }
        Ok(())
    }

    /// At the end: the whole length arrived and the MD5 matches.
    pub(crate) fn finish(self) -> Result<()> {
        if self.seen != self.len {
            return Err(incomplete());
        }
        if let Some((h, want)) = self.md5 {
            if h.finalize().as_slice() != want.as_slice() {
                return Err(bad_digest());
            }
        }
        Ok(())
    }
}

/// The upload's stream with its length and MD5 checked in flight. The last piece of the body
/// is held back until the stream has ended and everything checked out: an HTTP upload whose
/// body is wrong (too short, too long, wrong digest, or failed by an inner check) therefore
/// never delivers its final bytes, so the origin never completes — and never stores — it.
pub(crate) fn checked(upload: Upload, content_md5: Option<&str>) -> Result<Upload> {
    struct State {
        inner: futures::stream::BoxStream<'static, Result<Bytes>>,
        check: Option<BodyCheck>,
        held: Option<Bytes>,
        done: bool,
    }
    let len = upload.len;
    let state = State {
        inner: upload.body,
        check: Some(BodyCheck::new(upload.len, content_md5)?),
        held: None,
        done: false,
    };
    let body = futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(Err(e)) = st.check.as_mut().map(|c| c.update(&chunk)) {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    // Release the previous piece; hold this one.
                    if let Some(prev) = st.held.replace(chunk) {
                        return Some((Ok(prev), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    let verdict = st.check.take().map_or(Ok(()), BodyCheck::finish);
                    return match (verdict, st.held.take()) {
                        (Err(e), _) => Some((Err(e), st)),
                        (Ok(()), Some(last)) => Some((Ok(last), st)),
                        (Ok(()), None) => None,
                    };
                }
            }
        }
    })
    .boxed();
    Ok(Upload { body, len })
}

/// [`checked`], and for an empty body the checks run now: an HTTP client never polls a body
/// of length 0, so a digest declared for it would otherwise never be compared.
pub(crate) async fn settled(upload: Upload, content_md5: Option<&str>) -> Result<Upload> {
    let mut u = checked(upload, content_md5)?;
    if u.len > 0 {
        return Ok(u);
    }
    while let Some(item) = u.body.next().await {
        item?;
    }
    Ok(Upload {
        body: futures::stream::empty().boxed(),
        len: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(parts: &[&'static [u8]], len: u64) -> Upload {
        let items: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Upload {
            body: futures::stream::iter(items).boxed(),
            len,
        }
    }

    async fn drain(u: Upload) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = u.body;
        while let Some(c) = b.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn the_last_piece_is_held_until_the_body_checks_out() {
        let bad = checked(
            upload(&[b"hel", b"lO"], 5),
            Some("XUFAKrxLKna5cZ2REBfFkg=="),
        )
        .expect("md5");
        let items: Vec<Result<Bytes>> = bad.body.collect().await;
        // The first piece went out; the last one never did: an error took its place.
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].as_ref().ok().map(|b| b.as_ref()),
            Some(&b"hel"[..])
        );
        assert_eq!(
            items[1].as_ref().err().map(|e| e.kind()),
            Some(ErrorKind::BadDigest)
        );
    }

    #[tokio::test]
    async fn an_empty_body_is_checked_before_it_is_sent() {
        // MD5("") = 1B2M2Y8AsgTpgAmY7PhCfg==
        assert!(settled(upload(&[], 0), Some("1B2M2Y8AsgTpgAmY7PhCfg=="))
            .await
            .is_ok());
        let bad = settled(upload(&[], 0), Some("XUFAKrxLKna5cZ2REBfFkg==")).await;
        assert_eq!(bad.err().map(|e| e.kind()), Some(ErrorKind::BadDigest));
    }

    #[tokio::test]
    async fn length_and_md5_are_checked_in_flight() {
        // MD5("hello") = XUFAKrxLKna5cZ2REBfFkg==
        let ok = checked(
            upload(&[b"hel", b"lo"], 5),
            Some("XUFAKrxLKna5cZ2REBfFkg=="),
        )
        .expect("md5");
        assert_eq!(drain(ok).await.expect("ok"), b"hello");
        let bad = checked(upload(&[b"hellO"], 5), Some("XUFAKrxLKna5cZ2REBfFkg==")).expect("md5");
        assert_eq!(
            drain(bad).await.err().map(|e| e.kind()),
            Some(ErrorKind::BadDigest)
        );
        let short = checked(upload(&[b"hell"], 5), None).expect("check");
        assert_eq!(
            drain(short).await.err().map(|e| e.kind()),
            Some(ErrorKind::IncompleteBody)
        );
        let long = checked(upload(&[b"hello!"], 5), None).expect("check");
        assert_eq!(
            drain(long).await.err().map(|e| e.kind()),
            Some(ErrorKind::IncompleteBody)
        );
        assert!(checked(upload(&[], 0), Some("not base64!")).is_err());
    }
}
