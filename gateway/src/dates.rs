//! Numbers and dates as text, for what is written on every request (log timestamps,
//! `Last-Modified`, `Content-Range`), without the general formatting machinery: dates derived
//! from days since the epoch directly.

use std::time::{SystemTime, UNIX_EPOCH};

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `v` as `width` decimal digits (the lowest ones) into `out`.
pub fn put_digits(out: &mut [u8], width: usize, mut v: u64) {
    for d in out[..width].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Appends `v` in decimal (what `write!(s, "{v}")` does, without the formatting machinery).
pub fn push_u64(s: &mut String, v: u64) {
    s.push_str(decimal(v, &mut [0; 20]));
}

/// `v` in decimal, written into `buf` (no allocation).
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// `t` as an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`); `None` before 1970
/// or after 9999, which the caller formats another way.
pub fn http_date(t: SystemTime) -> Option<[u8; 29]> {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let days = i64::try_from(secs / 86_400).ok()?;
    let (y, m, d) = civil(days);
    if y > 9999 {
        return None;
    }
    let rem = secs % 86_400;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    out[..3].copy_from_slice(DAYS[((days + 4) % 7) as usize]);
    put_digits(&mut out[5..], 2, d.into());
    out[8..11].copy_from_slice(MONTHS[m as usize - 1]);
    put_digits(&mut out[12..], 4, y as u64);
    put_digits(&mut out[17..], 2, rem / 3600);
    put_digits(&mut out[20..], 2, rem % 3600 / 60);
    put_digits(&mut out[23..], 2, rem % 60);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn http_dates_match_s3s() {
        use s3s::dto::{Timestamp, TimestampFormat};
        // Every 7th day over four centuries, at a time of day that moves, and the edges.
        let mut cases: Vec<u64> = (0..146_097u64)
            .step_by(7)
            .map(|d| d * 86_400 + d % 86_400)
            .collect();
        cases.extend([0, 59, 86_399, 951_782_400, 253_402_300_799]);
        for secs in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let mut want = Vec::new();
            Timestamp::from(t)
                .format(TimestampFormat::HttpDate, &mut want)
                .expect("test value");
            let got = http_date(t).expect("in range");
            assert_eq!(
                std::str::from_utf8(&got).expect("test value"),
                std::str::from_utf8(&want).expect("test value")
            );
        }
        assert_eq!(
            &http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)).expect("test value"),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert!(http_date(UNIX_EPOCH + Duration::from_secs(253_402_300_800)).is_none());
        assert!(http_date(UNIX_EPOCH - Duration::from_secs(1)).is_none());
    }

    #[test]
    fn decimals_match_display() {
        for v in [0u64, 1, 9, 10, 99, 100, 4095, 1 << 32, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, v);
            assert_eq!(s, format!("x{v}"));
        }
    }

    #[test]
    fn civil_agrees_with_the_time_crate() {
        for day in (-800_000i64..800_000).step_by(13) {
            let t = time::OffsetDateTime::from_unix_timestamp(day * 86_400).expect("test value");
            assert_eq!(
                civil(day),
                (
                    i64::from(t.year()),
                    u8::from(t.month()).into(),
                    t.day().into()
                )
            );
        }
    }
}
