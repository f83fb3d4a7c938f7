use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// A writer that keeps what it is given.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<u8>>>);

impl io::Write for Kept {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("test value").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Kept {
    type Writer = Kept;
    fn make_writer(&'a self) -> Kept {
        self.clone()
    }
}

impl Kept {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("test value").clone()).expect("test value")
    }
}

#[derive(Debug)]
struct Inner;
impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk gone")
    }
}
impl std::error::Error for Inner {}

#[derive(Debug)]
struct Outer(Inner);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("write failed")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The events the gateway logs, in their shapes: the access line, errors with sources,
/// debug values, a message with control characters, no message, each level.
fn emit() {
    let rid = "6B172E6027810002DACB";
    let path = "/bench/obj-003";
    tracing::info!(
        target: "cistern::access",
        request_id = %rid,
        dialect = "s3",
        method = %http::Method::GET,
        path = %path,
        operation = "GetObject",
        status = 206u16,
        cache = "hit",
        micros = 11u64,
        "request"
    );
    let e = Outer(Inner);
    tracing::warn!(
        error = &e as &(dyn std::error::Error + 'static),
        "spill failed"
    );
    tracing::error!(error = ?Outer(Inner), n = -3i64, ok = true, "debug value");
    tracing::info!("bell \x07 and \x1b[31m escape \u{9b} and \"quotes\"");
    tracing::info!(key = "with \"quotes\" and \x1b", "str field");
    tracing::warn!(r#type = "raw", "raw name");
    tracing::error!(only = 1u64);
    tracing::debug!(x = 1.5f64, "float");
    tracing::trace!("trace");
}

/// Everything after the timestamp of each line.
fn bodies(text: &str) -> Vec<String> {
    text.lines().map(|l| l[28..].to_string()).collect()
}

/// What `run` logs (every level) through [`Lines`] and through the default format.
fn both(run: fn()) -> (String, String) {
    let (ours, theirs) = (Kept::default(), Kept::default());
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(ours.clone())
        .event_format(Lines::default())
        .finish();
    tracing::subscriber::with_default(sub, run);
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(theirs.clone())
        .finish();
    tracing::subscriber::with_default(sub, run);
    (ours.text(), theirs.text())
}

#[test]
fn lines_match_the_default_format() {
    let (ours, theirs) = both(emit);
    assert_eq!(ours.lines().count(), 9, "{ours}");
    assert_eq!(bodies(&ours), bodies(&theirs));
    assert!(ours.contains(
        " INFO cistern::access: request request_id=6B172E6027810002DACB dialect=\"s3\" \
         method=GET path=/bench/obj-003 operation=\"GetObject\" status=206 cache=\"hit\" micros=11\n"
    ));
    // The default format's sanitizer: no raw escape reaches the log.
    assert!(!ours.contains('\x1b') && !ours.contains('\x07'), "{ours}");
}

#[test]
fn lines_in_spans_take_the_default_format() {
    let (ours, theirs) = both(|| {
        let span = tracing::info_span!("fill", chunk = 3u64);
        let _g = span.enter();
        tracing::info!(n = 1u64, "inside");
    });
    assert!(ours.contains("fill{chunk=3}: "), "{ours}");
    assert_eq!(bodies(&ours), bodies(&theirs));
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    let cases = [
        (0u64, 0u32, "1970-01-01T00:00:00.000000Z "),
        (951_782_400, 5, "2000-02-29T00:00:00.000005Z "),
        (1_796_680_112, 695_187, "2026-12-07T21:48:32.695187Z "),
        (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z "),
    ];
    for (secs, micros, want) in cases {
        let mut s = String::new();
        write_stamp(
            &mut s,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
        )
        .expect("test value");
        assert_eq!(s, want);
    }
    // Every day over four centuries agrees with the `time` crate's calendar.
    for day in (0..146_097i64).step_by(7) {
        let t =
            time::OffsetDateTime::from_unix_timestamp(day * 86_400 + 3_723).expect("test value");
        let p = prefix((day * 86_400 + 3_723) as u64);
        let want = format!(
            "{:04}-{:02}-{:02}T01:02:03.",
            t.year(),
            u8::from(t.month()),
            t.day()
        );
        assert_eq!(std::str::from_utf8(&p).expect("test value"), want);
    }
}
