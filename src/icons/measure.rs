//! Measuring an SVG before it is drawn, so that a document whose drawing would run away is
//! refused in milliseconds instead of being stopped after its deadline.
//!
//! Neither usvg nor resvg can be interrupted, and a small document can ask for a great deal:
//! nested `<use>` multiplies elements (8 levels of 8 are 16 million), each filtered element
//! works on a layer up to 25 times the canvas, a morphology filter is quadratic in its radius,
//! a turbulence linear in its octaves, a pattern tile is as large as it declares. So the
//! document is measured in three steps, with the same rules the libraries draw by:
//!
//! 0. [`check_entities`], on the text before it is parsed: XML entities expand in full, so
//!    a few kilobytes of references to a long entity are gigabytes of text.
//! 1. [`check_document`], on the XML before usvg reads it: nesting, and the number of
//!    elements once every `<use>` is expanded (usvg copies the referenced subtree for each),
//!    times the stylesheet's rules (each is matched against each element).
//! 2. [`check_tree`], on usvg's tree at the asked size, walking it as resvg will draw it:
//!    every drawing counted where it happens (a pattern's content once per shape it fills, a
//!    mask once per group it masks), its segments, and its pixel work (the layer each isolated
//!    group allocates, times what its filters do per pixel).
//!
//! The bounds are far above what icons need (an icon with a soft shadow at 256 px is under a
//! million pixel operations; the unit tests pass 2,000 overlapping shapes) and far below
//! what keeps a core busy for seconds.

use super::render::RenderError;
use resvg::tiny_skia::{Rect, Transform};
use resvg::usvg::{self, roxmltree};
use std::collections::HashMap;

/// XML nodes (elements, text, comments) a document may have at all: 256 KiB of icon holds
/// far fewer, so more means expansion by entities.
pub const MAX_XML_NODES: u32 = 100_000;
/// Text that entity references may expand to: an exporter's entities (namespace URLs
/// referenced a few times) are a few kilobytes.
const MAX_ENTITY_TEXT: usize = 1 << 20;
/// Elements plus `<use>` nesting deep: usvg and resvg recurse once per level.
const MAX_DEPTH: u32 = 128;
/// Elements once every `<use>` is expanded (usvg's own limit is a million, a tree of some
/// gigabytes).
const MAX_ELEMENTS: u64 = 20_000;
/// Stylesheet rules times elements: usvg matches every rule against every element.
const MAX_STYLE_MATCHES: u64 = 2_000_000;
/// Nodes drawn, counting each time resvg draws one (a pattern's content per shape it fills).
const MAX_DRAWN: u64 = 50_000;
/// Path segments drawn, dashes included.
const MAX_SEGMENTS: u64 = 1_000_000;
/// Pixel operations: each isolated group's layer times the work per pixel of its filters,
/// plus every shape's covered area. 256 M is meant as a fraction of a second of drawing in a
/// release build (an estimate from tiny-skia's per-pixel pipelines, not a measurement).
const MAX_PIXEL_WORK: f64 = 256e6;
/// Isolated groups inside one another: each holds a layer (up to 25 canvases) while the
/// ones inside it are drawn.
const MAX_LAYER_DEPTH: u32 = 12;
/// Primitives of one filter: each keeps its result, a region of up to 25 canvases, to the end.
const MAX_PRIMITIVES: usize = 64;
/// Pixels one filter's results may hold at once (its steps times its region): 16 M is 64 MB.
const MAX_FILTER_PIXELS: f64 = 16e6;

/// How the message of a refusal starts.
pub const REFUSED: &str = "the SVG icon is too complex to resize";

fn refused(what: String) -> RenderError {
    RenderError(format!("{REFUSED}: {what}"))
}

/// Refuses a document whose entities could expand to more than [`MAX_ENTITY_TEXT`]: roxmltree
/// (as usvg sets it up) expands every reference in full, each up to 255 nested references
/// deep. An entity made of entities is refused; otherwise the bound is the references times
/// the longest value, counting every `&` as a reference.
pub fn check_entities(text: &str) -> Result<(), RenderError> {
    let Some(start) = text.find("<!ENTITY") else {
        return Ok(());
    };
    let mut longest = 0;
    for declaration in text[start..].split("<!ENTITY").skip(1) {
        // The value is the first quoted string (a SYSTEM id is never read).
        let Some(open) = declaration.find(['"', '\'']) else {
            continue;
        };
        let quote = &declaration[open..=open];
        let rest = &declaration[open + 1..];
        let value = rest.find(quote).map_or(rest, |end| &rest[..end]);
        if value.contains('&') {
            return Err(refused("an XML entity made of entities".into()));
        }
        longest = longest.max(value.len());
    }
    let references = text.matches('&').count();
    if references.saturating_mul(longest) > MAX_ENTITY_TEXT {
        return Err(refused(format!(
            "{references} references to XML entities of up to {longest} bytes"
        )));
    }
    Ok(())
}

/// Refuses a document whose parse alone would be too large: too deep, too many elements once
/// `<use>` is expanded, or too many style matches.
pub fn check_document(doc: &roxmltree::Document) -> Result<(), RenderError> {
    let ids: HashMap<&str, roxmltree::Node> = doc
        .descendants()
        .filter(roxmltree::Node::is_element)
        .filter_map(|n| n.attribute("id").map(|id| (id, n)))
        .collect();
    let mut counter = Expansion {
        ids,
        sizes: HashMap::new(),
        open: Vec::new(),
    };
    let elements = counter.size(doc.root_element(), 0)?;
    if elements > MAX_ELEMENTS {
        return Err(refused(format!(
            "{elements} elements once <use> is expanded (at most {MAX_ELEMENTS})"
        )));
    }
    let rules: u64 = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "style")
        .filter_map(|n| n.text())
        .map(|css| css.matches('{').count() as u64)
        .sum();
    if rules.saturating_mul(elements) > MAX_STYLE_MATCHES {
        return Err(refused(format!(
            "{rules} style rules for {elements} elements"
        )));
    }
    Ok(())
}

/// Elements per subtree with `<use>` followed, each subtree counted once.
struct Expansion<'a, 'input> {
    ids: HashMap<&'a str, roxmltree::Node<'a, 'input>>,
    sizes: HashMap<roxmltree::NodeId, u64>,
    /// The subtrees being counted: a `<use>` of one of them is a cycle, which usvg skips.
    open: Vec<roxmltree::NodeId>,
}

impl<'a, 'input> Expansion<'a, 'input> {
    fn size(&mut self, node: roxmltree::Node<'a, 'input>, depth: u32) -> Result<u64, RenderError> {
        if depth > MAX_DEPTH {
            return Err(refused(format!(
                "elements nested more than {MAX_DEPTH} deep"
            )));
        }
        if let Some(size) = self.sizes.get(&node.id()) {
            return Ok(*size);
        }
        if self.open.contains(&node.id()) {
            // usvg skips a `<use>` of itself or of its own ancestor, but a longer cycle (a uses
            // b, b uses a) it expands until its million-node limit.
            return Err(refused("a <use> cycle".into()));
        }
        self.open.push(node.id());
        let mut size = 1u64;
        for child in node.children().filter(roxmltree::Node::is_element) {
            size = size.saturating_add(self.size(child, depth + 1)?);
            if size > MAX_ELEMENTS {
                break;
            }
        }
        if node.tag_name().name() == "use"
            && let Some(target) = href(node).and_then(|id| self.ids.get(id).copied())
        {
            size = size.saturating_add(self.size(target, depth + 1)?);
        }
        self.open.pop();
        self.sizes.insert(node.id(), size);
        Ok(size)
    }
}

/// The local id a `<use>` names (`href` or `xlink:href`, `#id`).
fn href<'a>(node: roxmltree::Node<'a, '_>) -> Option<&'a str> {
    node.attribute("href")
        .or_else(|| node.attribute(("http://www.w3.org/1999/xlink", "href")))
        .and_then(|v| v.trim().strip_prefix('#'))
}

/// Refuses a tree whose drawing at `transform` on a `size`×`size` canvas would be more work
/// than an icon needs (see the module's comment).
pub fn check_tree(tree: &usvg::Tree, transform: Transform, size: u32) -> Result<(), RenderError> {
    // resvg bounds every layer by 5×5 canvases around the canvas.
    let side = 5.0 * f64::from(size);
    let mut walk = Walk {
        side,
        drawn: 0,
        segments: 0,
        work: 0.0,
    };
    walk.group(tree.root(), transform, 0)
}

struct Walk {
    /// The largest side of a layer, in pixels.
    side: f64,
    drawn: u64,
    segments: u64,
    work: f64,
}

impl Walk {
    /// Pixels of `rect` (in the coordinates `transform` maps to the canvas), as resvg bounds
    /// a layer.
    fn pixels(&self, rect: Rect, transform: Transform) -> f64 {
        rect.transform(transform).map_or(0.0, |r| {
            f64::from(r.width()).min(self.side) * f64::from(r.height()).min(self.side)
        })
    }

    /// Counts one drawing and refuses once any count is over its bound; checked at every
    /// node, so the walk itself stops early on a tree that multiplies.
    fn count(&mut self, segments: u64, work: f64) -> Result<(), RenderError> {
        self.drawn += 1;
        self.segments = self.segments.saturating_add(segments);
        self.work += work;
        if self.drawn > MAX_DRAWN {
            return Err(refused(format!("more than {MAX_DRAWN} shapes to draw")));
        }
        if self.segments > MAX_SEGMENTS {
            return Err(refused(format!(
                "more than {MAX_SEGMENTS} path segments to draw"
            )));
        }
        if self.work.is_nan() || self.work > MAX_PIXEL_WORK {
            return Err(refused(format!(
                "more than {} million pixel operations to draw",
                MAX_PIXEL_WORK / 1e6
            )));
        }
        Ok(())
    }

    fn group(
        &mut self,
        group: &usvg::Group,
        transform: Transform,
        layers: u32,
    ) -> Result<(), RenderError> {
        let transform = transform.pre_concat(group.transform());
        let mut layers = layers;
        if group.should_isolate() {
            layers += 1;
            if layers > MAX_LAYER_DEPTH {
                return Err(refused(format!(
                    "groups with effects nested more than {MAX_LAYER_DEPTH} deep"
                )));
            }
            let layer = self.pixels(group.layer_bounding_box().to_rect(), transform);
            // Allocated, drawn into, composited.
            let mut per_pixel = 2.0;
            for filter in group.filters() {
                if filter.primitives().len() > MAX_PRIMITIVES {
                    return Err(refused(format!(
                        "a filter of more than {MAX_PRIMITIVES} steps"
                    )));
                }
                if filter.primitives().len() as f64 * layer > MAX_FILTER_PIXELS {
                    return Err(refused(format!(
                        "a filter whose steps would hold more than {} million pixels",
                        MAX_FILTER_PIXELS / 1e6
                    )));
                }
                for primitive in filter.primitives() {
                    per_pixel += self.primitive(primitive.kind(), transform, layers)?;
                }
            }
            self.count(0, layer * per_pixel)?;
            let mut clip = group.clip_path();
            while let Some(c) = clip {
                self.count(0, layer)?;
                self.group(c.root(), transform.pre_concat(c.transform()), layers)?;
                clip = c.clip_path();
            }
            let mut mask = group.mask();
            while let Some(m) = mask {
                self.count(0, 2.0 * layer)?;
                self.group(m.root(), transform, layers)?;
                mask = m.mask();
            }
        } else {
            self.count(0, 0.0)?;
        }
        for child in group.children() {
            match child {
                usvg::Node::Group(g) => self.group(g, transform, layers)?,
                usvg::Node::Path(p) => self.path(p, transform, layers)?,
                other => {
                    let area = self.pixels(other.bounding_box(), transform);
                    self.count(1, area)?;
                }
            }
        }
        Ok(())
    }

    /// The work per pixel of one filter step; an `feImage` of a subtree draws it as well.
    fn primitive(
        &mut self,
        kind: &usvg::filter::Kind,
        transform: Transform,
        layers: u32,
    ) -> Result<f64, RenderError> {
        use usvg::filter::Kind;
        let (sx, sy) = transform.get_scale();
        Ok(match kind {
            // Box or IIR blurs: a few passes whatever the deviation.
            Kind::GaussianBlur(_) | Kind::DropShadow(_) => 8.0,
            // A window of (2r+1)² pixels read for every pixel, r as drawn.
            Kind::Morphology(m) => {
                let rx = (f64::from(m.radius_x().get() * sx)).min(self.side);
                let ry = (f64::from(m.radius_y().get() * sy)).min(self.side);
                (2.0 * rx + 1.0) * (2.0 * ry + 1.0)
            }
            Kind::ConvolveMatrix(c) => {
                f64::from(c.matrix().columns()) * f64::from(c.matrix().rows())
            }
            Kind::Turbulence(t) => 4.0 * f64::from(t.num_octaves()),
            Kind::DiffuseLighting(_) | Kind::SpecularLighting(_) => 16.0,
            Kind::Image(image) => {
                self.group(image.root(), transform, layers)?;
                2.0
            }
            _ => 2.0,
        })
    }

    fn path(
        &mut self,
        path: &usvg::Path,
        transform: Transform,
        layers: u32,
    ) -> Result<(), RenderError> {
        if !path.is_visible() {
            return self.count(0, 0.0);
        }
        let segments = path.data().verbs().len() as u64;
        let area = self.pixels(path.stroke_bounding_box(), transform);
        let mut passes = 0.0;
        let mut dashes = 0u64;
        if let Some(fill) = path.fill() {
            passes += 1.0;
            self.paint(fill.paint(), transform, layers, area)?;
        }
        if let Some(stroke) = path.stroke() {
            passes += 1.0;
            self.paint(stroke.paint(), transform, layers, area)?;
            if let Some(pattern) = stroke.dasharray() {
                let period: f32 = pattern.iter().sum();
                let points = path.data().points();
                let length: f32 = points.windows(2).map(|w| w[0].distance(w[1])).sum();
                let count = f64::from(length) / f64::from(period) * pattern.len() as f64;
                dashes = if count.is_finite() {
                    count.min(u64::MAX as f64) as u64
                } else {
                    u64::MAX
                };
            }
        }
        self.count(
            segments.saturating_mul(2).saturating_add(dashes),
            passes * area,
        )
    }

    /// A gradient looks through its stops for every pixel it paints; a pattern's tile is
    /// drawn for each shape it paints, at the shape's scale.
    fn paint(
        &mut self,
        paint: &usvg::Paint,
        transform: Transform,
        layers: u32,
        area: f64,
    ) -> Result<(), RenderError> {
        let pattern = match paint {
            usvg::Paint::Color(_) => return Ok(()),
            usvg::Paint::LinearGradient(g) => return self.count(0, area * g.stops().len() as f64),
            usvg::Paint::RadialGradient(g) => return self.count(0, area * g.stops().len() as f64),
            usvg::Paint::Pattern(pattern) => pattern,
        };
        let (sx, sy) = transform.pre_concat(pattern.transform()).get_scale();
        let rect = pattern.rect();
        let tile = f64::from(rect.width() * sx) * f64::from(rect.height() * sy);
        if tile.is_nan() || tile > self.side * self.side {
            return Err(refused(format!("a pattern tile of {tile:.0} pixels")));
        }
        self.count(0, tile)?;
        self.group(pattern.root(), Transform::from_scale(sx, sy), layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(svg: &str, size: u32) -> Result<(), RenderError> {
        check_entities(svg)?;
        let doc = roxmltree::Document::parse_with_options(
            svg,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                nodes_limit: MAX_XML_NODES,
                entity_resolver: None,
            },
        )
        .map_err(|e| RenderError(e.to_string()))?;
        check_document(&doc)?;
        let tree = usvg::Tree::from_xmltree(&doc, &usvg::Options::default())
            .map_err(|e| RenderError(e.to_string()))?;
        let scale = size as f32 / tree.size().width();
        check_tree(&tree, Transform::from_scale(scale, scale), size)
    }

    const HEAD: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64" viewBox="0 0 64 64">"#;

    #[test]
    fn icons_pass() {
        let plain = format!(r#"{HEAD}<circle cx="32" cy="32" r="30"/></svg>"#);
        let shadow = format!(
            r##"{HEAD}<filter id="s"><feGaussianBlur stdDeviation="2"/></filter><circle cx="32" cy="34" r="26" filter="url(#s)"/><g opacity=".5"><rect width="64" height="64" stroke="red" stroke-dasharray="2 2"/></g></svg>"##
        );
        // Many shapes, each over much of the canvas: a detailed illustration.
        let mut busy = String::from(HEAD);
        for i in 0..2000 {
            busy.push_str(&format!(
                r##"<path d="M{} 0 L64 {} L0 64 Z" fill="#123" fill-opacity=".5"/>"##,
                i % 64,
                i % 64
            ));
        }
        busy.push_str("</svg>");
        for svg in [plain, shadow, busy] {
            for size in [16, 64, 256] {
                measured(&svg, size).unwrap();
            }
        }
    }

    #[test]
    fn entity_expansion_is_refused_before_parsing() {
        // What Illustrator writes: namespace URLs as entities, referenced a few times.
        let exported = r#"<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd" [
<!ENTITY ns_svg "http://www.w3.org/2000/svg"> <!ENTITY ns_xlink 'http://www.w3.org/1999/xlink'>]>
<svg xmlns="&ns_svg;" xmlns:xlink="&ns_xlink;" width="64" height="64"><circle cx="32" cy="32" r="30"/></svg>"#;
        measured(exported, 64).unwrap();
        let nested = r#"<!DOCTYPE svg [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><svg xmlns="http://www.w3.org/2000/svg">&b;</svg>"#;
        let err = measured(nested, 64).unwrap_err();
        assert!(err.0.contains("made of entities"), "{err}");
        // 64 KB behind each of 100 references would be 6.4 MB of text (a real bomb is the
        // same with 50,000 references: 3 GB).
        let long = format!(
            r#"<!DOCTYPE svg [<!ENTITY a "{}">]><svg xmlns="http://www.w3.org/2000/svg"><desc>{}</desc></svg>"#,
            "a".repeat(65_536),
            "&a;".repeat(100)
        );
        let err = measured(&long, 64).unwrap_err();
        assert!(err.0.contains("references to XML entities"), "{err}");
    }

    #[test]
    fn expansion_by_use_is_refused_before_parsing() {
        let mut svg = format!(r#"{HEAD}<defs><circle id="a0" r="1"/>"#);
        for level in 1..=6 {
            svg.push_str(&format!(r#"<g id="a{level}">"#));
            for _ in 0..8 {
                svg.push_str(&format!(r##"<use href="#a{}"/>"##, level - 1));
            }
            svg.push_str("</g>");
        }
        svg.push_str(r##"</defs><use href="#a6"/></svg>"##);
        let err = measured(&svg, 16).unwrap_err();
        assert!(err.0.contains("once <use> is expanded"), "{err}");
        // usvg expands this cycle to a million nodes before it gives up.
        let cycle = format!(
            r##"{HEAD}<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g></svg>"##
        );
        let err = measured(&cycle, 16).unwrap_err();
        assert!(err.0.contains("<use> cycle"), "{err}");
        // Two uses of one shape are no cycle.
        let twice = format!(
            r##"{HEAD}<circle id="c" r="2"/><use href="#c" x="4"/><use href="#c" x="8"/></svg>"##
        );
        measured(&twice, 16).unwrap();
    }

    #[test]
    fn expensive_filters_and_patterns_are_refused() {
        let morphology = format!(
            r##"{HEAD}<filter id="m" x="-1" y="-1" width="3" height="3"><feMorphology radius="64"/></filter><circle cx="32" cy="32" r="20" filter="url(#m)"/></svg>"##
        );
        let turbulence = format!(
            r##"{HEAD}<filter id="t"><feTurbulence baseFrequency=".1" numOctaves="100000"/></filter><rect width="64" height="64" filter="url(#t)"/></svg>"##
        );
        let tile = format!(
            r##"{HEAD}<pattern id="p" width="100000" height="100000" patternUnits="userSpaceOnUse"><rect width="9" height="9"/></pattern><rect width="64" height="64" fill="url(#p)"/></svg>"##
        );
        let dashes = format!(
            r#"{HEAD}<path d="M0 0 L1000000 0" stroke="red" stroke-dasharray="0.01"/></svg>"#
        );
        let mut blurs = format!(
            r##"{HEAD}<filter id="b" x="-2" y="-2" width="5" height="5"><feGaussianBlur stdDeviation="40"/></filter>"##
        );
        for _ in 0..400 {
            blurs.push_str(r##"<circle cx="32" cy="32" r="20" filter="url(#b)"/>"##);
        }
        blurs.push_str("</svg>");
        let mut nested = String::from(HEAD);
        for _ in 0..20 {
            nested.push_str(r#"<g opacity=".9">"#);
        }
        nested.push_str(r#"<circle cx="32" cy="32" r="20"/>"#);
        nested.push_str(&"</g>".repeat(20));
        nested.push_str("</svg>");
        let mut stops = String::from(r#"<linearGradient id="g">"#);
        for i in 0..5_000 {
            stops.push_str(&format!(r#"<stop offset="{}"/>"#, f64::from(i) / 5_000.0));
        }
        let stops = format!(
            r##"{HEAD}{stops}</linearGradient><rect width="64" height="64" fill="url(#g)"/></svg>"##
        );
        let mut steps = format!(r#"{HEAD}<filter id="f" x="-2" y="-2" width="5" height="5">"#);
        for _ in 0..30 {
            steps.push_str(r#"<feOffset dx="1"/>"#);
        }
        let steps =
            format!(r##"{steps}</filter><circle cx="32" cy="32" r="20" filter="url(#f)"/></svg>"##);
        for svg in [
            morphology, turbulence, tile, dashes, blurs, nested, stops, steps,
        ] {
            let err = measured(&svg, 256).expect_err(&svg[..svg.len().min(300)]);
            assert!(err.0.contains("too complex"), "{err}");
        }
    }
}
