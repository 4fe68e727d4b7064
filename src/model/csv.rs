//! The CSV export's text: one row at a time from cells borrowed from the database driver's
//! row, into one growing buffer that is cut into chunks for the response body.
//!
//! The bytes are those the `csv` crate's default writer makes from
//! [`ResultColumns::csv_record`] (quoted only when a cell holds a comma, a quote or a line
//! break; quotes doubled; `\n` after each row), which the tests check cell by cell; writing
//! them here spares a record of owned cells per row.

use super::{ICONS_PREFIX, ResultColumns};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Datelike, Timelike, Utc};

/// One result as the export reads it, each text cell borrowed from the driver's row, in
/// [`ResultColumns::NAMES`] order; `icon_url` is made from `has_icon` and the domain.
#[derive(Clone, Copy, Debug, Default)]
pub struct CsvRow<'a> {
    /// The normalised domain.
    pub domain: &'a str,
    /// The stored status word.
    pub status: &'a str,
    /// The chosen icon, on success.
    pub favicon_url: Option<&'a str>,
    /// Category and message, on failure.
    pub error: Option<&'a str>,
    /// Tries so far.
    pub tries: i32,
    /// The stored failure code.
    pub error_code: Option<&'a str>,
    /// The home page after redirects.
    pub final_url: Option<&'a str>,
    /// Sniffed mime of the chosen icon.
    pub mime: Option<&'a str>,
    /// Real width of the chosen icon.
    pub width: Option<i32>,
    /// Real height of the chosen icon.
    pub height: Option<i32>,
    /// When the outcome was fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// Copied from an earlier job's result.
    pub cached: bool,
    /// Whether the icon's bytes are stored (then `icon_url` is this service's URL of it).
    pub has_icon: bool,
}

/// Writes export rows as CSV into one buffer, which the caller cuts into chunks.
#[derive(Debug)]
pub struct CsvWriter {
    buf: BytesMut,
    /// What goes before a domain in `icon_url`: `PUBLIC_URL` (if set) and [`ICONS_PREFIX`].
    icon_base: String,
    /// Where `icon_url` is assembled before it is written as one cell.
    scratch: Vec<u8>,
}

impl CsvWriter {
    /// A writer whose icon links are absolute under `public_url` (a URL without a trailing
    /// slash), or paths without one, as [`ResultColumns::link_icon`] makes them.
    pub fn new(public_url: Option<&str>, capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            icon_base: format!("{}{ICONS_PREFIX}", public_url.unwrap_or("")),
            scratch: Vec::with_capacity(512),
        }
    }

    /// Writes the header row: the column names.
    pub fn header(&mut self) {
        for (i, name) in ResultColumns::NAMES.iter().enumerate() {
            if i > 0 {
                self.buf.extend_from_slice(b",");
            }
            self.cell(name.as_bytes());
        }
        self.buf.extend_from_slice(b"\n");
    }

    /// Writes one row.
    pub fn row(&mut self, row: &CsvRow<'_>) {
        let text = |w: &mut Self, v: Option<&str>| w.cell(v.unwrap_or("").as_bytes());
        self.cell(row.domain.as_bytes());
        self.buf.extend_from_slice(b",");
        self.cell(row.status.as_bytes());
        self.buf.extend_from_slice(b",");
        text(self, row.favicon_url);
        self.buf.extend_from_slice(b",");
        text(self, row.error);
        self.buf.extend_from_slice(b",");
        self.number(Some(row.tries));
        self.buf.extend_from_slice(b",");
        text(self, row.error_code);
        self.buf.extend_from_slice(b",");
        text(self, row.final_url);
        self.buf.extend_from_slice(b",");
        text(self, row.mime);
        self.buf.extend_from_slice(b",");
        self.number(row.width);
        self.buf.extend_from_slice(b",");
        self.number(row.height);
        self.buf.extend_from_slice(b",");
        if let Some(t) = row.fetched_at {
            rfc3339(t, &mut self.buf);
        }
        self.buf
            .extend_from_slice(if row.cached { b",true," } else { b",false," });
        if row.has_icon {
            let mut url = std::mem::take(&mut self.scratch);
            url.clear();
            url.extend_from_slice(self.icon_base.as_bytes());
            url.extend_from_slice(row.domain.as_bytes());
            self.cell(&url);
            self.scratch = url;
        }
        self.buf.extend_from_slice(b"\n");
    }

    /// Bytes written and not yet taken.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The first `n` bytes written and not yet taken (whole rows, if `n` was a [`Self::len`]
    /// between rows), without copying them.
    pub fn take(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n.min(self.buf.len())).freeze()
    }

    /// One cell, quoted as the `csv` crate's default writer quotes it: only when it holds a
    /// comma, a quote or a line break, with quotes doubled.
    fn cell(&mut self, v: &[u8]) {
        if !v.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
            self.buf.extend_from_slice(v);
            return;
        }
        self.buf.reserve(v.len() + 8);
        self.buf.extend_from_slice(b"\"");
        for part in v.split_inclusive(|&b| b == b'"') {
            self.buf.extend_from_slice(part);
            if part.last() == Some(&b'"') {
                self.buf.extend_from_slice(b"\"");
            }
        }
        self.buf.extend_from_slice(b"\"");
    }

    /// A number cell (empty when absent).
    fn number(&mut self, v: Option<i32>) {
        if let Some(n) = v {
            let mut digits = itoa::Buffer::new();
            self.buf.extend_from_slice(digits.format(n).as_bytes());
        }
    }
}

/// `t` as [`DateTime::to_rfc3339`] writes it (`2026-12-06T20:18:29.123+00:00`: the fraction
/// only as long as its non-zero digits need, in 3, 6 or 9 digits), without a `String`.
fn rfc3339(t: DateTime<Utc>, out: &mut BytesMut) {
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign, and leap seconds: never stored, written its way.
        out.extend_from_slice(t.to_rfc3339().as_bytes());
        return;
    }
    let mut b = [0u8; 35];
    let two = |b: &mut [u8], v: u32| {
        b[0] = b'0' + (v / 10) as u8;
        b[1] = b'0' + (v % 10) as u8;
    };
    let year = t.year() as u32;
    two(&mut b[0..2], year / 100);
    two(&mut b[2..4], year % 100);
    b[4] = b'-';
    two(&mut b[5..7], t.month());
    b[7] = b'-';
    two(&mut b[8..10], t.day());
    b[10] = b'T';
    two(&mut b[11..13], t.hour());
    b[13] = b':';
    two(&mut b[14..16], t.minute());
    b[16] = b':';
    two(&mut b[17..19], t.second());
    let mut len = 19;
    let (mut fraction, digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if digits > 0 {
        b[len] = b'.';
        for i in (0..digits).rev() {
            b[len + 1 + i] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        len += 1 + digits;
    }
    b[len..len + 6].copy_from_slice(b"+00:00");
    out.extend_from_slice(&b[..len + 6]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorCategory, ResultStatus};
    use chrono::TimeZone;

    /// What the export wrote before this writer: the `csv` crate over
    /// [`ResultColumns::csv_record`], icon links made absolute by `link_icon`.
    fn reference(rows: &[ResultColumns], public_url: Option<&str>) -> Vec<u8> {
        let mut writer = ::csv::Writer::from_writer(Vec::new());
        writer.write_record(ResultColumns::NAMES).unwrap();
        for row in rows {
            let mut row = row.clone();
            row.link_icon(public_url);
            writer
                .write_record(row.csv_record().iter().map(|c| c.as_bytes()))
                .unwrap();
        }
        writer.into_inner().unwrap()
    }

    fn borrowed(row: &ResultColumns) -> CsvRow<'_> {
        CsvRow {
            domain: &row.domain,
            status: row.status.as_str(),
            favicon_url: row.favicon_url.as_deref(),
            error: row.error.as_deref(),
            tries: row.tries,
            error_code: row.error_code.map(ErrorCategory::as_str),
            final_url: row.final_url.as_deref(),
            mime: row.mime.as_deref(),
            width: row.width,
            height: row.height,
            fetched_at: row.fetched_at,
            cached: row.cached,
            has_icon: row.icon_url.is_some(),
        }
    }

    /// Every kind of cell, quoting and time the export meets comes out byte for byte as the
    /// `csv` crate wrote it.
    #[test]
    fn rows_are_written_as_the_csv_crate_wrote_them() {
        let times = [
            Utc.with_ymd_and_hms(2026, 12, 6, 20, 18, 29).unwrap(),
            Utc.timestamp_millis_opt(1_765_000_000_123).unwrap(),
            Utc.timestamp_nanos(1_765_000_000_000_450_000),
            Utc.timestamp_nanos(1_765_000_000_000_000_007),
            Utc.with_ymd_and_hms(9, 1, 2, 3, 4, 5).unwrap(),
        ];
        let tricky = [
            "plain",
            "",
            "a,b",
            "say \"no\"",
            "\"",
            "line\nbreak",
            "cr\r\nlf",
            "ünï,cödé \"x\"",
            " spaced ",
            "semi;colon 'quote'",
        ];
        let mut rows = Vec::new();
        for (i, text) in tricky.iter().enumerate() {
            rows.push(ResultColumns {
                domain: format!("d{i}.test"),
                status: [
                    ResultStatus::Pending,
                    ResultStatus::Success,
                    ResultStatus::Failed,
                ][i % 3],
                favicon_url: (i % 2 == 0).then(|| format!("https://x/{text}")),
                error: Some((*text).to_owned()),
                tries: i as i32 * 7 - 3,
                error_code: (i % 3 == 2).then_some(ErrorCategory::NoIcon),
                final_url: Some(format!("{text},{text}")),
                mime: (i % 4 == 0).then(|| "image/png".to_owned()),
                width: (i % 2 == 1).then_some(i32::MAX - i as i32),
                height: (i % 3 == 0).then_some(-(i as i32)),
                fetched_at: (i % 5 != 4).then(|| times[i % times.len()]),
                cached: i % 2 == 0,
                icon_url: (i % 3 != 1).then(|| format!("{ICONS_PREFIX}d{i}.test")),
                ..ResultColumns::default()
            });
        }
        for public_url in [None, Some("https://icons.example"), Some("http://a,b")] {
            let mut writer = CsvWriter::new(public_url, 16);
            writer.header();
            for row in &rows {
                writer.row(&borrowed(row));
            }
            let n = writer.len();
            let ours = writer.take(n);
            let theirs = reference(&rows, public_url);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
            assert!(writer.is_empty());
        }
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let mut nanos = 1_765_000_000_000_000_000i64;
        for step in [
            0,
            1,
            10,
            1_000,
            999_000,
            1_000_000,
            123_000_000,
            999_999_999,
        ] {
            nanos += step;
            let t = Utc.timestamp_nanos(nanos);
            let mut out = BytesMut::new();
            rfc3339(t, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), t.to_rfc3339());
        }
    }
}
