//! `Content-Encoding: deflate` as browsers read it: zlib or raw deflate, in steps counted
//! against the body caps.

/// A `Content-Encoding: deflate` body, decoded as browsers decode it: HTTP says zlib, but
/// servers also send raw deflate, so the first two bytes decide (a zlib header or not).
/// reqwest's own decoder reads only zlib, and a page it cannot read would look empty.
pub(super) struct Inflate {
    /// Set once two bytes have come.
    decoder: Option<flate2::Decompress>,
    /// The first byte, when it came alone.
    first: Option<u8>,
    /// The stream ended (or the reader stopped it); anything after is ignored.
    pub(super) ended: bool,
}

/// Decoded bytes produced per step, each passed on (and counted against the cap) before the
/// next is made, so a small body that inflates hugely never sits in memory whole.
const INFLATE_STEP: usize = 32 * 1024;

impl Inflate {
    pub(super) fn new() -> Self {
        Self {
            decoder: None,
            first: None,
            ended: false,
        }
    }

    /// Decodes `input`, handing the output to `out` a step at a time until it returns false.
    pub(super) fn push(
        &mut self,
        input: &[u8],
        mut out: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), String> {
        if self.ended || input.is_empty() {
            return Ok(());
        }
        let joined;
        let mut input = input;
        if self.decoder.is_none() {
            if let Some(first) = self.first.take() {
                joined = [&[first][..], input].concat();
                input = &joined;
            }
            let [cmf, flg, ..] = *input else {
                self.first = input.first().copied();
                return Ok(());
            };
            // RFC 1950's header: method 8, a window of at most 32 KiB, a multiple of 31.
            let zlib = cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
            self.decoder = Some(flate2::Decompress::new(zlib));
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(());
        };
        let mut buf = vec![0u8; INFLATE_STEP];
        loop {
            let (in_before, out_before) = (decoder.total_in(), decoder.total_out());
            let status = decoder
                .decompress(input, &mut buf, flate2::FlushDecompress::None)
                .map_err(|e| format!("bad deflate data: {e}"))?;
            let read = usize::try_from(decoder.total_in() - in_before).unwrap_or(input.len());
            let written = usize::try_from(decoder.total_out() - out_before).unwrap_or(0);
            input = input.get(read..).unwrap_or_default();
            if written > 0 && !out(&buf[..written]) {
                self.ended = true;
                return Ok(());
            }
            if status == flate2::Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            if read == 0 && written == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_with_or_without_its_zlib_header_in_any_chunking() {
        use std::io::Write;
        let text = b"<head><link rel=icon href=/d.png></head>".repeat(100);
        let level = flate2::Compression::default();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), level);
        raw.write_all(&text).unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), level);
        zlib.write_all(&text).unwrap();
        for body in [raw.finish().unwrap(), zlib.finish().unwrap()] {
            for step in [1, 2, 7, 4096] {
                let mut inflate = Inflate::new();
                let mut out = Vec::new();
                for chunk in body.chunks(step) {
                    let push = inflate.push(chunk, |p| {
                        out.extend_from_slice(p);
                        true
                    });
                    assert_eq!(push, Ok(()));
                }
                assert_eq!(out, text, "chunks of {step}");
                assert!(inflate.ended);
            }
        }
        // A zlib header, then a block of the reserved type.
        assert!(Inflate::new().push(b"\x78\x9c\xff\xff", |_| true).is_err());
    }
}
