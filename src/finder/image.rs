//! Sniffing image bytes: the declared `type` and the server's Content-Type are hints only, so
//! every icon is judged by its own bytes and measured from its own header.
//!
//! Raster formats other than PNG and ICO are measured with `imagesize`; PNG and ICO are walked
//! by hand because a truncated file must be rejected (imagesize only reads the header) and an
//! ICO's largest entry is the one worth reporting.

/// Larger than this on either side is treated as a decompression/pixel bomb.
pub const MAX_SIDE: u32 = 10_000;

/// How far into a text file we look for an `<svg` root (BOMs, XML prologs and comments first).
const SVG_SNIFF_BYTES: usize = 4096;

/// What sniffing found: the real format and dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The sniffed mime type, e.g. `image/png`.
    pub mime: String,
    /// Real width in pixels (0 for an SVG without intrinsic size).
    pub width: u32,
    /// Real height in pixels (0 for an SVG without intrinsic size).
    pub height: u32,
}

impl ImageInfo {
    fn new(mime: &str, width: u32, height: u32) -> Self {
        Self {
            mime: mime.to_string(),
            width,
            height,
        }
    }
}

/// Identifies an icon from its bytes and reads its real size; `Err` says why it is not an icon.
pub fn sniff(bytes: &[u8]) -> Result<ImageInfo, String> {
    if bytes.is_empty() {
        return Err("empty body".into());
    }
    let info = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(bytes)?
    } else if bytes.starts_with(&[0, 0, 1, 0]) {
        ico(bytes)?
    } else if let Some(info) = raster(bytes)? {
        info
    } else {
        return text(bytes);
    };
    check_dimensions(&info)?;
    Ok(info)
}

fn check_dimensions(info: &ImageInfo) -> Result<(), String> {
    if info.width <= 1 || info.height <= 1 {
        return Err(format!(
            "{}x{} placeholder pixel, not an icon",
            info.width, info.height
        ));
    }
    if info.width > MAX_SIDE || info.height > MAX_SIDE {
        return Err(format!(
            "{}x{} exceeds the {MAX_SIDE} px pixel cap",
            info.width, info.height
        ));
    }
    Ok(())
}

/// Walks every chunk so that a file cut short anywhere before `IEND` is rejected.
fn png(b: &[u8]) -> Result<ImageInfo, String> {
    let mut pos = 8usize;
    let mut dims = None;
    loop {
        let header = b
            .get(pos..pos + 8)
            .ok_or_else(|| "truncated PNG (missing IEND)".to_string())?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        let data_end = pos
            .checked_add(8 + len + 4)
            .ok_or_else(|| "corrupt PNG chunk length".to_string())?;
        if data_end > b.len() {
            return Err("truncated PNG".into());
        }
        if pos == 8 {
            if kind != b"IHDR" || len < 8 {
                return Err("corrupt PNG (no IHDR)".into());
            }
            let d = &b[pos + 8..pos + 16];
            dims = Some((
                u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            ));
        }
        if kind == b"IEND" {
            break;
        }
        pos = data_end;
    }
    let (w, h) = dims.ok_or_else(|| "corrupt PNG".to_string())?;
    Ok(ImageInfo::new("image/png", w, h))
}

/// Reads the whole directory and reports the largest entry whose data lies inside the file.
fn ico(b: &[u8]) -> Result<ImageInfo, String> {
    let count = u16::from_le_bytes([
        *b.get(4).ok_or("truncated ICO")?,
        *b.get(5).ok_or("truncated ICO")?,
    ]) as usize;
    if count == 0 {
        return Err("ICO with no images".into());
    }
    let mut best: Option<(u32, u32)> = None;
    for i in 0..count {
        let Some(e) = b.get(6 + i * 16..6 + i * 16 + 16) else {
            return Err("truncated ICO directory".into());
        };
        // A width or height byte of 0 means 256 (the field is one byte).
        let w = if e[0] == 0 { 256 } else { e[0] as u32 };
        let h = if e[1] == 0 { 256 } else { e[1] as u32 };
        let size = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as usize;
        let offset = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as usize;
        if size == 0 || offset.checked_add(size).is_none_or(|end| end > b.len()) {
            continue;
        }
        if best.is_none_or(|(bw, bh)| w * h > bw * bh) {
            best = Some((w, h));
        }
    }
    let (w, h) = best.ok_or_else(|| "truncated ICO (no entry inside the file)".to_string())?;
    Ok(ImageInfo::new("image/x-icon", w, h))
}

/// Other raster formats via `imagesize`; `Ok(None)` when the bytes are none of them.
fn raster(b: &[u8]) -> Result<Option<ImageInfo>, String> {
    use imagesize::ImageType as T;
    let Ok(kind) = imagesize::image_type(b) else {
        return Ok(None);
    };
    let mime = match kind {
        T::Gif => "image/gif",
        T::Jpeg => "image/jpeg",
        T::Webp => "image/webp",
        T::Bmp => "image/bmp",
        T::Heif(_) => "image/avif",
        _ => return Ok(None),
    };
    let size = imagesize::blob_size(b).map_err(|e| format!("corrupt {mime}: {e}"))?;
    let w = u32::try_from(size.width).unwrap_or(u32::MAX);
    let h = u32::try_from(size.height).unwrap_or(u32::MAX);
    Ok(Some(ImageInfo::new(mime, w, h)))
}

/// Text bodies: an SVG document is an icon, an HTML page (SPA catch-all) is a soft 404.
fn text(b: &[u8]) -> Result<ImageInfo, String> {
    let head = &b[..b.len().min(SVG_SNIFF_BYTES)];
    let lower: Vec<u8> = head.iter().map(|c| c.to_ascii_lowercase()).collect();
    let svg_at = position_of(&lower, b"<svg");
    let html_at = [
        &b"<!doctype html"[..],
        b"<html",
        b"<head",
        b"<body",
        b"<title",
    ]
    .iter()
    .filter_map(|m| position_of(&lower, m))
    .min();
    match (svg_at, html_at) {
        (Some(s), h) if h.is_none_or(|h| s < h) => {
            let tag_end = head[s..]
                .iter()
                .position(|&c| c == b'>')
                .map_or(head.len(), |p| s + p);
            let tag = String::from_utf8_lossy(&head[s + 4..tag_end]);
            let (w, h) = svg_size(&tag);
            if (w, h) != (0, 0) {
                let info = ImageInfo::new("image/svg+xml", w, h);
                check_dimensions(&info)?;
                return Ok(info);
            }
            Ok(ImageInfo::new("image/svg+xml", 0, 0))
        }
        (_, Some(_)) => Err("HTML page, not an image (soft 404)".into()),
        _ => Err("unrecognised content, not an image".into()),
    }
}

fn position_of(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Intrinsic size from `width`/`height` (absolute units only), else from `viewBox`.
fn svg_size(tag: &str) -> (u32, u32) {
    let attrs = parse_attrs(tag);
    let get = |n: &str| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let len = |v: Option<&str>| -> Option<u32> {
        let v = v?.trim();
        let v = v.strip_suffix("px").unwrap_or(v).trim();
        let n: f64 = v.parse().ok()?;
        (n.is_finite() && n > 0.0).then(|| n.round().min(u32::MAX as f64) as u32)
    };
    if let (Some(w), Some(h)) = (len(get("width")), len(get("height"))) {
        return (w, h);
    }
    if let Some(vb) = get("viewbox") {
        let nums: Vec<f64> = vb
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        if let [_, _, w, h] = nums[..]
            && w.is_finite()
            && h.is_finite()
            && w > 0.0
            && h > 0.0
        {
            return (
                w.round().min(u32::MAX as f64) as u32,
                h.round().min(u32::MAX as f64) as u32,
            );
        }
    }
    (0, 0)
}

/// A tolerant attribute tokenizer for one start tag's inside (quoted or bare values).
fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    let bytes = s.as_bytes();
    while let Some(&(i, c)) = it.peek() {
        if c.is_whitespace() || c == '/' {
            it.next();
            continue;
        }
        let start = i;
        while it
            .peek()
            .is_some_and(|&(_, c)| !c.is_whitespace() && c != '=' && c != '/')
        {
            it.next();
        }
        let end = it.peek().map_or(s.len(), |&(j, _)| j);
        let name = s[start..end].to_string();
        while it.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek().is_some_and(|&(_, c)| c == '=') {
            it.next();
            while it.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
                it.next();
            }
            if let Some(&(j, q)) = it.peek() {
                if q == '"' || q == '\'' {
                    it.next();
                    let vstart = j + 1;
                    let vend = s[vstart..].find(q).map_or(s.len(), |p| vstart + p);
                    value = s[vstart..vend].to_string();
                    while it.peek().is_some_and(|&(k, _)| k <= vend) {
                        it.next();
                    }
                } else {
                    let vstart = j;
                    while it.peek().is_some_and(|&(_, c)| !c.is_whitespace()) {
                        it.next();
                    }
                    let vend = it.peek().map_or(bytes.len(), |&(k, _)| k);
                    value = s[vstart..vend].to_string();
                }
            }
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(data);
        v.extend_from_slice(&[0, 0, 0, 0]); // CRC is not checked
        v
    }

    /// A structurally complete PNG of the given size (pixel data is not decoded).
    pub(crate) fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        v.extend(chunk(b"IHDR", &ihdr));
        v.extend(chunk(b"IDAT", &[0; 12]));
        v.extend(chunk(b"IEND", &[]));
        v
    }

    /// An ICO whose entries embed PNGs; a size of 256 is written as the byte 0.
    pub(crate) fn ico_bytes(sizes: &[u32]) -> Vec<u8> {
        let mut v = vec![0, 0, 1, 0];
        v.extend_from_slice(&(sizes.len() as u16).to_le_bytes());
        let mut data = Vec::new();
        let dir_end = 6 + 16 * sizes.len();
        for &s in sizes {
            let img = png_bytes(s, s);
            let b = if s >= 256 { 0 } else { s as u8 };
            v.extend_from_slice(&[b, b, 0, 0, 1, 0, 32, 0]);
            v.extend_from_slice(&(img.len() as u32).to_le_bytes());
            v.extend_from_slice(&((dir_end + data.len()) as u32).to_le_bytes());
            data.extend(img);
        }
        v.extend(data);
        v
    }

    pub(crate) fn gif_bytes(w: u16, h: u16) -> Vec<u8> {
        let mut v = b"GIF89a".to_vec();
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 0x3b]);
        v
    }

    fn bmp_bytes(w: i32, h: i32) -> Vec<u8> {
        let mut v = b"BM".to_vec();
        v.extend_from_slice(&[0; 12]);
        v.extend_from_slice(&40u32.to_le_bytes());
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
        v.extend_from_slice(&[1, 0, 24, 0]);
        v.extend_from_slice(&[0; 24]);
        v
    }

    #[test]
    fn png_size_and_truncation() {
        let p = png_bytes(32, 32);
        assert_eq!(sniff(&p).unwrap(), ImageInfo::new("image/png", 32, 32));
        assert!(sniff(&p[..p.len() - 6]).unwrap_err().contains("truncated"));
        assert!(sniff(&p[..20]).is_err());
    }

    #[test]
    fn ico_reports_largest_and_zero_means_256() {
        let i = ico_bytes(&[16, 32, 256]);
        assert_eq!(sniff(&i).unwrap(), ImageInfo::new("image/x-icon", 256, 256));
        // The 256 entry's data cut off: the largest complete entry is reported.
        let cut = &i[..i.len() - 5];
        assert_eq!(sniff(cut).unwrap().width, 32);
        assert!(sniff(&[0, 0, 1, 0, 0, 0]).is_err());
        assert!(sniff(&[0, 0, 1, 0, 1]).is_err());
    }

    #[test]
    fn gif_bmp_and_placeholder_pixel() {
        assert_eq!(sniff(&gif_bytes(48, 48)).unwrap().mime, "image/gif");
        assert!(sniff(&gif_bytes(1, 1)).unwrap_err().contains("placeholder"));
        let b = sniff(&bmp_bytes(64, 64)).unwrap();
        assert_eq!(b, ImageInfo::new("image/bmp", 64, 64));
    }

    #[test]
    fn pixel_bomb_rejected() {
        assert!(sniff(&png_bytes(30000, 30000)).unwrap_err().contains("cap"));
    }

    #[test]
    fn svg_sizes() {
        let s = br#"<?xml version="1.0"?><!-- c --><svg xmlns="http://www.w3.org/2000/svg" width="32px" height='24'></svg>"#;
        assert_eq!(sniff(s).unwrap(), ImageInfo::new("image/svg+xml", 32, 24));
        let v = b"\xef\xbb\xbf  <SVG viewBox=\"0 0 100 100\"><path/></SVG>";
        assert_eq!(sniff(v).unwrap().width, 100);
        let none = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><circle r=\"4\"/></svg>";
        assert_eq!(sniff(none).unwrap(), ImageInfo::new("image/svg+xml", 0, 0));
        let pct = b"<svg width=\"100%\" height=\"100%\" viewBox=\"0,0,48,48\"/>";
        assert_eq!(sniff(pct).unwrap().height, 48);
    }

    #[test]
    fn html_soft_404_and_junk_rejected() {
        let h = b"<!DOCTYPE html><html><head><title>Not found</title></head><body><svg></svg></body></html>";
        assert!(sniff(h).unwrap_err().contains("soft 404"));
        assert!(sniff(b"").unwrap_err().contains("empty"));
        assert!(sniff(b"{\"error\":1}").is_err());
        assert!(sniff(b"GIF89a\x10").is_err());
    }
}
