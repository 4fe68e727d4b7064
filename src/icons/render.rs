//! Turning a stored icon into an N×N PNG: raster formats with `image`, SVG with `resvg`.
//!
//! Everything here runs on a blocking thread under a deadline (see [`super::Icons`]); what
//! bounds the work is set here: the decoders' pixel and memory limits, the N×N canvas an SVG
//! is drawn on whatever size it declares, no reference out of the document followed, an SVG
//! measured before it is drawn ([`super::measure`]), and the deadline checked between the
//! shapes it draws, so a render past its deadline stops instead of running on unseen.

use super::measure;
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbaImage};
use resvg::{tiny_skia, usvg};
use std::io::Cursor;
use std::time::Instant;

/// The largest side a raster icon may have to be decoded (the finder stores up to
/// [`crate::finder::image::MAX_SIDE`]; decoding more than this for a 256 px answer is waste).
pub const MAX_DECODE_SIDE: u32 = 4096;
/// The most memory one decode may allocate.
pub const MAX_DECODE_ALLOC: u64 = 64 * 1024 * 1024;
/// The largest `size` a client may ask for.
pub const MAX_SIZE: u32 = 256;

/// Why an icon could not be rendered: the answer is a 422 that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl RenderError {
    /// Whether the icon was refused as too complex to draw (rather than undecodable).
    pub fn is_refusal(&self) -> bool {
        self.0.starts_with(measure::REFUSED)
    }

    /// Whether the render stopped at its deadline.
    pub fn is_overrun(&self) -> bool {
        self.0 == OVERRUN
    }
}

/// The message of a render stopped at its deadline.
const OVERRUN: &str = "resizing took longer than its deadline";

/// Renders `bytes` (of the sniffed `mime`) as a `size`×`size` PNG, the image scaled to fit
/// and centred on a transparent square; an SVG stops drawing once `deadline` has passed.
pub fn to_png(
    bytes: &[u8],
    mime: &str,
    size: u32,
    deadline: Instant,
) -> Result<Vec<u8>, RenderError> {
    let canvas = if mime == "image/svg+xml" {
        svg(bytes, size, deadline)?
    } else {
        raster(bytes, mime, size)?
    };
    let mut out = Vec::new();
    DynamicImage::ImageRgba8(canvas)
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| RenderError(format!("could not encode the PNG: {e}")))?;
    Ok(out)
}

/// The decoder for a sniffed raster mime; the bytes were sniffed, so this is never a guess.
fn format_of(mime: &str) -> Option<ImageFormat> {
    Some(match mime {
        "image/png" => ImageFormat::Png,
        "image/x-icon" => ImageFormat::Ico,
        "image/gif" => ImageFormat::Gif,
        "image/bmp" => ImageFormat::Bmp,
        "image/webp" => ImageFormat::WebP,
        "image/jpeg" => ImageFormat::Jpeg,
        _ => return None,
    })
}

fn raster(bytes: &[u8], mime: &str, size: u32) -> Result<RgbaImage, RenderError> {
    let format = format_of(mime)
        .ok_or_else(|| RenderError(format!("{mime} icons cannot be resized by this service")))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| RenderError(format!("the {mime} icon could not be decoded: {e}")))?;
    let scaled = image.resize(size, size, image::imageops::FilterType::CatmullRom);
    let mut canvas = RgbaImage::new(size, size);
    let x = i64::from((size - scaled.width()) / 2);
    let y = i64::from((size - scaled.height()) / 2);
    image::imageops::overlay(&mut canvas, &scaled.to_rgba8(), x, y);
    Ok(canvas)
}

/// Parse options that follow no reference out of the document: usvg's default resolver reads
/// any local file an `<image href>` names, which would put the server's files in the answer.
fn svg_options() -> usvg::Options<'static> {
    usvg::Options {
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(|_, _, _| None),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    }
}

fn svg(bytes: &[u8], size: u32, deadline: Instant) -> Result<RgbaImage, RenderError> {
    let unparsable =
        |e: &dyn std::fmt::Display| RenderError(format!("the SVG icon could not be parsed: {e}"));
    // What usvg's `from_data` does, in two steps so the document is measured in between;
    // compressed SVG (svgz) is not built in.
    let text = std::str::from_utf8(bytes).map_err(|e| unparsable(&e))?;
    measure::check_entities(text)?;
    let doc = usvg::roxmltree::Document::parse_with_options(
        text,
        usvg::roxmltree::ParsingOptions {
            allow_dtd: true,
            nodes_limit: measure::MAX_XML_NODES,
            entity_resolver: None,
        },
    )
    .map_err(|e| unparsable(&e))?;
    measure::check_document(&doc)?;
    let tree = usvg::Tree::from_xmltree(&doc, &svg_options()).map_err(|e| unparsable(&e))?;
    // The canvas is N×N whatever the document declares, so a huge width or height only
    // changes the scale, never the memory.
    let mut pixmap =
        tiny_skia::Pixmap::new(size, size).ok_or_else(|| RenderError("empty canvas".into()))?;
    let declared = tree.size();
    let scale = (size as f32 / declared.width()).min(size as f32 / declared.height());
    if !scale.is_finite() || scale <= 0.0 {
        return Err(RenderError("the SVG icon declares no usable size".into()));
    }
    let dx = (size as f32 - declared.width() * scale) / 2.0;
    let dy = (size as f32 - declared.height() * scale) / 2.0;
    let transform = tiny_skia::Transform::from_row(scale, 0.0, 0.0, scale, dx, dy);
    measure::check_tree(&tree, transform, size)?;
    draw(tree.root(), transform, &mut pixmap.as_mut(), deadline)?;
    // tiny-skia keeps premultiplied RGBA; PNG wants straight alpha.
    let mut rgba = Vec::with_capacity((size * size * 4) as usize);
    for p in pixmap.pixels() {
        let c = p.demultiply();
        rgba.extend_from_slice(&[c.red(), c.green(), c.blue(), c.alpha()]);
    }
    RgbaImage::from_raw(size, size, rgba).ok_or_else(|| RenderError("bad canvas".into()))
}

/// Draws `group`'s children one at a time as `resvg::render` would, checking the deadline
/// before each: a plain group (one resvg draws straight onto the canvas) is entered, anything
/// else (a shape, a group with effects) is drawn whole, its cost bounded by the measure.
fn draw(
    group: &usvg::Group,
    transform: tiny_skia::Transform,
    pixmap: &mut tiny_skia::PixmapMut,
    deadline: Instant,
) -> Result<(), RenderError> {
    for child in group.children() {
        if Instant::now() >= deadline {
            return Err(RenderError(OVERRUN.into()));
        }
        match child {
            usvg::Node::Group(g) if !g.should_isolate() => {
                draw(g, transform.pre_concat(g.transform()), pixmap, deadline)?;
            }
            node => {
                // `render_node` draws a node with its layer's corner at the origin (to draw it
                // alone); shifting by that corner puts it where `render` would.
                if let Some(bbox) = node.abs_layer_bounding_box() {
                    resvg::render_node(node, transform.pre_translate(bbox.x(), bbox.y()), pixmap);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finder::image::tests::png_bytes;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn decoded(png: &[u8]) -> RgbaImage {
        image::load_from_memory_with_format(png, ImageFormat::Png)
            .unwrap()
            .to_rgba8()
    }

    #[test]
    fn svg_with_a_huge_declared_size_renders_at_the_asked_size() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="100000000" height="100000000" viewBox="0 0 10 10"><rect width="10" height="10" fill="red"/></svg>"#;
        let out = decoded(&to_png(svg, "image/svg+xml", 32, later()).unwrap());
        assert_eq!(out.dimensions(), (32, 32));
        assert_eq!(out.get_pixel(16, 16).0, [255, 0, 0, 255]);
    }

    #[test]
    fn svg_references_to_local_files_are_not_followed() {
        // A red square on disk, named by an absolute path: usvg's default resolver would
        // read and draw it.
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("secret.svg");
        std::fs::write(
            &inner,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>"#,
        )
        .unwrap();
        let outer = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10"><image width="10" height="10" href="{p}" xlink:href="{p}"/></svg>"#,
            p = inner.display()
        );
        let out = decoded(&to_png(outer.as_bytes(), "image/svg+xml", 16, later()).unwrap());
        assert!(out.pixels().all(|p| p.0[3] == 0), "nothing was drawn");
    }

    #[test]
    fn a_decompression_bomb_is_refused_not_decoded() {
        let bomb = png_bytes(9000, 9000);
        let err = to_png(&bomb, "image/png", 64, later()).unwrap_err();
        assert!(err.0.contains("could not be decoded"), "{err}");
    }

    #[test]
    fn non_square_rasters_are_centred() {
        let wide = crate::icons::tests::real_png(40, 20);
        let out = decoded(&to_png(&wide, "image/png", 20, later()).unwrap());
        assert_eq!(out.dimensions(), (20, 20));
        assert_eq!(out.get_pixel(10, 0).0[3], 0, "transparent above");
        assert_eq!(out.get_pixel(10, 10).0[3], 255, "opaque in the middle");
    }
}

#[cfg(test)]
mod drawing {
    use super::*;
    use std::time::Duration;

    fn decoded(png: &[u8]) -> RgbaImage {
        image::load_from_memory_with_format(png, ImageFormat::Png)
            .unwrap()
            .to_rgba8()
    }

    #[test]
    fn shapes_land_where_resvg_puts_them() {
        // Nested plain groups with transforms, a group with an effect, a path at an offset:
        // drawn one node at a time, the picture is the one `resvg::render` draws.
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><g transform="translate(8 4)"><g transform="scale(0.5)"><rect x="10" y="10" width="40" height="40" fill="red"/></g><g opacity="0.5"><circle cx="40" cy="40" r="10" fill="blue"/></g></g><path d="M50 2 L62 2 L62 14 Z" fill="green" stroke="black"/></svg>"##;
        let ours = decoded(
            &to_png(
                svg,
                "image/svg+xml",
                48,
                Instant::now() + Duration::from_secs(60),
            )
            .unwrap(),
        );
        let tree = usvg::Tree::from_data(svg, &svg_options()).unwrap();
        let mut pixmap = tiny_skia::Pixmap::new(48, 48).unwrap();
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(0.75, 0.75),
            &mut pixmap.as_mut(),
        );
        let mut differ = 0;
        for (p, q) in ours.pixels().zip(pixmap.pixels()) {
            let q = q.demultiply();
            let q = [q.red(), q.green(), q.blue(), q.alpha()];
            if p.0.iter().zip(q).any(|(a, b)| a.abs_diff(b) > 2) {
                differ += 1;
            }
        }
        assert_eq!(differ, 0);
    }

    #[test]
    fn a_render_past_its_deadline_stops() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>"#;
        let err = to_png(svg, "image/svg+xml", 8, Instant::now()).unwrap_err();
        assert!(err.is_overrun(), "{err}");
    }
}
