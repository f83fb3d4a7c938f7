//! The log line format: the same text as `tracing_subscriber`'s default (`Full`) format,
//! written with less work per line. One access-log line per request makes formatting part of
//! every request's cost: the default formatter re-derives the date for every line and goes
//! through styling wrappers even when they print nothing (about 4 % of a 4 KiB hit's server
//! CPU, by `perf`). Here the date and time to the second are derived once per second and
//! thread, and fields are written straight into the line.
//!
//! Lines inside spans, and terminals (ANSI colours), take the default formatter, so what an
//! operator reads never depends on which path wrote it.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime as DefaultTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::dates::{civil, put_digits};

/// The event formatter (see the module's documentation).
#[derive(Default)]
pub struct Lines {
    full: Format<Full, DefaultTime>,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if writer.has_ansi_escapes() || ctx.event_scope().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        write_stamp(&mut writer, SystemTime::now())?;
        let meta = event.metadata();
        writer.write_str(level(meta.level()))?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let sanitize = writer.sanitizes_ansi_escapes();
        let mut fields = Fields {
            out: &mut writer,
            sanitize,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The level as the default format pads it (right-aligned in five columns) and a space.
fn level(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "TRACE ",
        Level::DEBUG => "DEBUG ",
        Level::INFO => " INFO ",
        Level::WARN => " WARN ",
        Level::ERROR => "ERROR ",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for a second since the epoch.
type Prefix = [u8; 20];

thread_local! {
    /// The second last formatted on this thread and its text.
    static STAMP: Cell<(u64, Prefix)> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Writes `at` as RFC 3339 in UTC with microseconds and a space (`2026-12-07T22:08:32.695187Z `).
fn write_stamp(w: &mut impl fmt::Write, at: SystemTime) -> fmt::Result {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let prefix = STAMP.with(|c| {
        let (s, p) = c.get();
        if s == secs {
            return p;
        }
        let p = prefix(secs);
        c.set((secs, p));
        p
    });
    // The prefix is ASCII digits and separators.
    w.write_str(std::str::from_utf8(&prefix).unwrap_or("1970-01-01T00:00:00."))?;
    let mut micros = *b"000000Z ";
    put_digits(&mut micros, 6, since.subsec_micros().into());
    w.write_str(std::str::from_utf8(&micros).unwrap_or("000000Z "))
}

/// The date and time of second `secs` since the epoch, to the second.
fn prefix(secs: u64) -> Prefix {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut p = *b"0000-00-00T00:00:00.";
    put_digits(&mut p[0..], 4, y.clamp(0, 9999) as u64);
    put_digits(&mut p[5..], 2, m.into());
    put_digits(&mut p[8..], 2, d.into());
    put_digits(&mut p[11..], 2, rem / 3600);
    put_digits(&mut p[14..], 2, rem % 3600 / 60);
    put_digits(&mut p[17..], 2, rem % 60);
    p
}

/// Writes an event's fields as the default format does: the message first and bare, then
/// `name=value` (strings quoted), separated by spaces; control characters in the message
/// escaped.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    sanitize: bool,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// Starts a field: the separating space and, except for the message, `name=`.
    fn start(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if !std::mem::replace(&mut self.first, false) {
            self.result = self.out.write_char(' ');
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .result
                .and_then(|()| self.out.write_str(name))
                .and_then(|()| self.out.write_char('='));
        }
        self.result.is_ok()
    }

    fn message(&mut self, value: fmt::Arguments<'_>) {
        self.result = match self.sanitize {
            true => Escaping(&mut *self.out).write_fmt(value),
            false => self.out.write_fmt(value),
        };
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.start(field) {
            match field.name() {
                "message" => self.message(format_args!("{value}")),
                // Quoted as `Debug` quotes it; most values need no escape, written as they are.
                _ if value
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
                {
                    self.result = self
                        .out
                        .write_char('"')
                        .and_then(|()| self.out.write_str(value))
                        .and_then(|()| self.out.write_char('"'));
                }
                _ => self.result = write!(self.out, "{value:?}"),
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = self
                .out
                .write_str(crate::dates::decimal(value, &mut [0; 20]));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_debug(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_debug(field, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.start(field) {
            return;
        }
        // Rare: formatted whole, then written as a message is.
        let mut text = value.to_string();
        if let Some(source) = value.source() {
            let name = field.name();
            let name = name.strip_prefix("r#").unwrap_or(name);
            let _ = write!(text, " {name}.sources=[");
            let mut next = Some(source);
            let mut sep = "";
            while let Some(e) = next {
                let _ = write!(text, "{sep}{e}");
                sep = ", ";
                next = e.source();
            }
            text.push(']');
        }
        self.message(format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            match field.name() {
                "message" => self.message(format_args!("{value:?}")),
                _ => self.result = write!(self.out, "{value:?}"),
            }
        }
    }
}

/// Writes through, escaping the control characters a terminal could act on (as the default
/// format's sanitizer does).
struct Escaping<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(|c: char| needs_escape(c)) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or(' ');
            match c {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", c as u32)?
                }
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
    )
}

#[cfg(test)]
mod tests;
