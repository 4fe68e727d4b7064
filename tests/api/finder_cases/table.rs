//! The scenario table the runner in finder_cases.rs checks, one row per scenario domain.
use super::*;

#[rustfmt::skip]
pub(super) const SCENARIOS: &[Scenario] = &[
    row("c01-uppercase-rel.test", Icon(SELF, "/Fav.ico"), &[
        (SELF, "/", Head(r#"<LINK REL="SHORTCUT ICON" HREF="/Fav.ico">"#)),
        (SELF, "/Fav.ico", Image(ICO, Ico(&[32]))),
        (SELF, "/fav.ico", Image(ICO, Ico(&[48]))),
    ]),
    row("c02-token-order.test", Icon(SELF, "/a.png"), &[
        (SELF, "/", Head(r#"<link rel="icon shortcut" href="/a.png">"#)),
        (SELF, "/a.png", Image(PNG, Png(32, 32))),
    ]),
    row("c02-alternate-icon.test", Icon(SELF, "/b.png"), &[
        (SELF, "/", Head(r#"<link rel="alternate icon" href="/b.png">"#)),
        (SELF, "/b.png", Image(PNG, Png(32, 32))),
    ]),
    row("c03-whitespace.test", Icon(SELF, "/icon.png"), &[
        (SELF, "/", Head("<link rel=\" icon\n\" href=\"\n /ic\ton.png \">")),
        (SELF, "/icon.png", Image(PNG, Png(32, 32))),
    ]),
    row("c04-substring-traps.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="apple-touch-startup-image" href="/s.png">
                   <link rel="icons" href="/n.png">
                   <link rel="preload" as="image" href="/favicon.png">"#)),
        (SELF, "/s.png", Image(PNG, Png(64, 64))),
        (SELF, "/n.png", Image(PNG, Png(64, 64))),
        (SELF, "/favicon.png", Image(PNG, Png(64, 64))),
        FAVICON,
    ]),
    row("c05-mask-icon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<link rel=mask-icon href=/pin.svg color=#000>")),
        (SELF, "/pin.svg", Image(SVG, Svg)),
        FAVICON,
    ]),
    row("c05-mask-icon-only.test", Fail("no_icon"), &[
        (SELF, "/", Head("<link rel=mask-icon href=/pin.svg color=#000>")),
        (SELF, "/pin.svg", Image(SVG, Svg)),
    ]),
    row("c06-fluid-below-apple.test", Icon(SELF, "/apple.png"), &[
        (SELF, "/", Head(r#"<link rel="fluid-icon" href="/fluid.png"><link rel="apple-touch-icon" href="/apple.png">"#)),
        (SELF, "/fluid.png", Image(PNG, Png(512, 512))),
        (SELF, "/apple.png", Image(PNG, Png(180, 180))),
    ]),
    // A real 512 px RGBA PNG stored uncompressed would pass the 1 MiB icon cap.
    row("c06-fluid-only.test", Sized(SELF, "/fluid.png", 512, 512), &[
        (SELF, "/", Head(r#"<link rel="fluid-icon" href="/fluid.png">"#)),
        (SELF, "/fluid.png", Image(PNG, Claiming(512, 512))),
        FAVICON,
    ]),
    row("c07-precomposed.test", Sized(SELF, "/p.png", 180, 180), &[
        (SELF, "/", Head(r#"<link rel="apple-touch-icon-precomposed" href="/p.png">"#)),
        (SELF, "/p.png", Image(PNG, Png(180, 180))),
        FAVICON,
    ]),
    row("c08-empty-href.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r##"<link rel="icon" href=""><link rel="icon" href="#"><link rel="icon">"##)),
        FAVICON,
    ]),
    row("c09-xhtml-unquoted.test", Icon(SELF, "/f.png"), &[
        (SELF, "/", Head("<LINK rel=icon href=/f.png />")),
        (SELF, "/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c09-slash-glued.test", Icon(SELF, "/g.png/"), &[
        (SELF, "/", Head("<link rel=icon href=/g.png/>")),
        (SELF, "/g.png/", Image(PNG, Png(32, 32))),
        (SELF, "/g.png", Image(PNG, Png(32, 32))),
    ]),
    row("c10-multi-size-ico.test", Sized(SELF, "/m.ico", 48, 48), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/m.ico" sizes="16x16 32x32 48x48">"#)),
        (SELF, "/m.ico", Image(ICO, Ico(&[16, 32, 48]))),
    ]),
    row("c11-svg-any.test", Icon(SELF, "/s.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/s.svg" sizes="any" type="image/svg+xml">
                   <link rel="icon" href="/p.png" sizes="32x32">"#)),
        (SELF, "/s.svg", Image(SVG, Svg)),
        (SELF, "/p.png", Image(PNG, Png(32, 32))),
    ]),
    row("c12-malformed-sizes.test", Sized(SELF, "/c.png", 96, 96), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/a.png" sizes="32X32">
                   <link rel="icon" href="/b.png" sizes="48×48">
                   <link rel="icon" href="/c.png" sizes="96x96+">
                   <link rel="icon" href="/d.png" sizes="banana">"#)),
        (SELF, "/a.png", Image(PNG, Png(32, 32))),
        (SELF, "/b.png", Image(PNG, Png(48, 48))),
        (SELF, "/c.png", Image(PNG, Png(96, 96))),
        (SELF, "/d.png", Image(PNG, Png(16, 16))),
    ]),
    row("c13-lying-sizes.test", Sized(SELF, "/real.png", 64, 64), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/big.png" sizes="192x192">
                   <link rel="icon" href="/real.png" sizes="16x16">"#)),
        (SELF, "/big.png", Image(PNG, Png(16, 16))),
        (SELF, "/real.png", Image(PNG, Png(64, 64))),
    ]),
    row("c14-pick-svg.test", Icon(SELF, "/i.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/i.svg" type="image/svg+xml">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#)),
        (SELF, "/16.png", Image(PNG, Png(16, 16))),
        (SELF, "/32.png", Image(PNG, Png(32, 32))),
        (SELF, "/i.svg", Image(SVG, Svg)),
        (SELF, "/180.png", Image(PNG, Png(180, 180))),
        (SELF, "/m.json", File(JSON, MANIFEST_192)),
        (SELF, "/m192.png", Image(PNG, Png(192, 192))),
    ]),
    // Our policy: rel=icon is a tier above apple-touch and manifest, so among the icons the
    // largest below 64 wins rather than the 180 px apple-touch icon.
    row("c14-pick-raster.test", Sized(SELF, "/32.png", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#)),
        (SELF, "/16.png", Image(PNG, Png(16, 16))),
        (SELF, "/32.png", Image(PNG, Png(32, 32))),
        (SELF, "/180.png", Image(PNG, Png(180, 180))),
        (SELF, "/m.json", File(JSON, MANIFEST_192)),
        (SELF, "/m192.png", Image(PNG, Png(192, 192))),
    ]),
    row("c14-closest-above-64.test", Sized(SELF, "/96.png", 96, 96), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/512.png"><link rel="icon" href="/96.png">
                   <link rel="icon" href="/48.png">"#)),
        (SELF, "/512.png", Image(PNG, Png(512, 512))),
        (SELF, "/96.png", Image(PNG, Png(96, 96))),
        (SELF, "/48.png", Image(PNG, Png(48, 48))),
    ]),
    row("c14-later-wins.test", Icon(SELF, "/second.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/first.png"><link rel="icon" href="/second.png">"#)),
        (SELF, "/first.png", Image(PNG, Png(32, 32))),
        (SELF, "/second.png", Image(PNG, Png(32, 32))),
    ]),
    row("c14-png-over-ico.test", Icon(SELF, "/x.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/x.png"><link rel="icon" href="/x.ico">"#)),
        (SELF, "/x.png", Image(PNG, Png(32, 32))),
        (SELF, "/x.ico", Image(ICO, Ico(&[32]))),
    ]),
    row("c15-non-square.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/wide.png">"#)),
        (SELF, "/wide.png", Image(PNG, Png(300, 100))),
        FAVICON,
    ]),
    row("c15-non-square-last-resort.test", Sized(SELF, "/wide.png", 300, 100), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/wide.png">"#)),
        (SELF, "/wide.png", Image(PNG, Png(300, 100))),
    ]),
    row("c16-dark-variant.test", Icon(SELF, "/light.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/light.png">
                   <link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#)),
        (SELF, "/light.png", Image(PNG, Png(32, 32))),
        (SELF, "/dark.png", Image(PNG, Png(32, 32))),
    ]),
    // Only the colour-scheme rule keeps the dark SVG (scalable, declared last) behind a 16 px
    // PNG; alone, it is still chosen.
    row("c16-dark-svg-loses.test", Sized(SELF, "/light.png", 16, 16), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/light.png" sizes="16x16">
                   <link rel="icon" href="/dark.svg" type="image/svg+xml" media="(prefers-color-scheme: dark)">"#)),
        (SELF, "/light.png", Image(PNG, Png(16, 16))),
        (SELF, "/dark.svg", Image(SVG, Svg)),
    ]),
    row("c16-dark-only.test", Icon(SELF, "/dark.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#)),
        (SELF, "/dark.png", Image(PNG, Png(32, 32))),
    ]),
    row("c17-type-lies.test", Sized(SELF, "/t.svg", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" type="image/svg+xml" href="/t.svg">"#)),
        (SELF, "/t.svg", Image(SVG, Png(32, 32))),
    ]),
    row("c18-webp.test", Sized(SELF, "/w.webp", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/w.webp">"#)),
        (SELF, "/w.webp", Image("image/webp", Webp(32, 32))),
    ]),
    row("c19-path-relative.test", Icon(SELF, "/blog/img/f.png"), &[
        (SELF, "/", Redirect(302, "/blog/post")),
        (SELF, "/blog/post", Head(r#"<link rel="icon" href="img/f.png">"#)),
        (SELF, "/blog/img/f.png", Image(PNG, Png(32, 32))),
        (SELF, "/img/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c20-dot-segments.test", Icon(SELF, "/a/assets/f.ico"), &[
        (SELF, "/", Redirect(302, "/a/b/c/")),
        (SELF, "/a/b/c/", Head(r#"<link rel="icon" href="../../assets/f.ico">"#)),
        (SELF, "/a/assets/f.ico", Image(ICO, Ico(&[32]))),
    ]),
    row("c21-protocol-relative.test", Icon("cdn.c21-protocol-relative.test", "/i.ico"), &[
        (SELF, "/", Head(r#"<link rel="SHORTCUT ICON" href=//cdn.c21-protocol-relative.test/i.ico>"#)),
        ("cdn.c21-protocol-relative.test", "/i.ico", Image(ICO, Ico(&[32]))),
    ]),
    row("c23-base-href.test", Icon("static.c23-base-href.test", "/v2/i.png"), &[
        (SELF, "/", Head(r#"<base href="http://static.c23-base-href.test/v2/"><base href="/other/"><link rel="icon" href="i.png">"#)),
        ("static.c23-base-href.test", "/v2/i.png", Image(PNG, Png(32, 32))),
        (SELF, "/other/i.png", Image(PNG, Png(32, 32))),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c24-root-relative-base.test", Icon(SELF, "/app/f.png"), &[
        (SELF, "/", Redirect(302, "/en/home")),
        (SELF, "/en/home", Head(r#"<base href="/app/"><link rel="icon" href="f.png">"#)),
        (SELF, "/app/f.png", Image(PNG, Png(32, 32))),
        (SELF, "/en/home/app/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c25-non-ascii-path.test", Icon(SELF, "/%C3%ADcone%20final.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/ícone final.png">"#)),
        (SELF, "/%C3%ADcone%20final.png", Image(PNG, Png(32, 32))),
    ]),
    row("c26-cache-buster.test", Icon(SELF, "/f.png?v=3"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/f.png?v=3#x">"#)),
        (SELF, "/f.png", Image(PNG, Png(32, 32))),
    ]),
    // Character references in an attribute are decoded before the URL is resolved.
    row("c26-entity-in-href.test", Icon(SELF, "/icons/a&b.png?v=3&s=32"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/icons/a&amp;b.png?v=3&#38;s=32">"#)),
        (SELF, "/icons/a&b.png", Image(PNG, Png(32, 32))),
    ]),
    row("c27-data-base64.test", Data(DATA_PNG16, 16, 16), &[
        (SELF, "/", Head(r#"<link rel="icon" href="$DATA_PNG16">"#)),
        FAVICON,
    ]),
    row("c28-data-svg.test", Data("data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E", 24, 24), &[
        (SELF, "/", Head(r#"<link rel="icon" href="data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E">"#)),
    ]),
    row("c29-other-schemes.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="javascript:alert(1)"><link rel="icon" href="blob:http://x/1">
                   <link rel="icon" href="file:///etc/passwd"><link rel="icon" href="ftp://c29-other-schemes.test/f.png">
                   <link rel="icon" href="about:blank">"#)),
        (SELF, "/f.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c30-cdn-host.test", Icon("cdn30.test", "/icons/f.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="http://cdn30.test/icons/f.png">"#)),
        ("cdn30.test", "/icons/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c31-body-link.test", Icon(SELF, "/body.png"), &[
        (SELF, "/", Html("<html><head><title>t</title></head><body><p>x</p><link rel=icon href=/body.png></body></html>")),
        (SELF, "/body.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c31-head-before-body.test", Icon(SELF, "/head.png"), &[
        (SELF, "/", Html("<html><head><link rel=icon href=/head.png></head><body><link rel=icon href=/body.svg></body></html>")),
        (SELF, "/head.png", Image(PNG, Png(16, 16))),
        (SELF, "/body.svg", Image(SVG, Svg)),
    ]),
    row("c32-between-head-and-body.test", Icon(SELF, "/between.png"), &[
        (SELF, "/", Html("<html><head><title>t</title></head>\n<link rel=icon href=/between.png>\n<body>x</body></html>")),
        (SELF, "/between.png", Image(PNG, Png(32, 32))),
    ]),
    row("c33-commented-out.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<!-- <link rel=icon href=/old.png> -->")),
        (SELF, "/old.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c34-template.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<template><link rel=icon href=/tpl.png></template>")),
        (SELF, "/tpl.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    // A scripting browser ignores <noscript>: /favicon.ico first, the noscript icon only as
    // the last resort.
    row("c35-noscript.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<noscript><link rel=icon href=/ns.png></noscript>")),
        (SELF, "/ns.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c35-noscript-last-resort.test", Icon(SELF, "/ns.png"), &[
        (SELF, "/", Head("<noscript><link rel=icon href=/ns.png></noscript>")),
        (SELF, "/ns.png", Image(PNG, Png(32, 32))),
    ]),
    row("c36-script-string.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<script>document.write('<link rel="icon" href="/js.png">')</script>"#)),
        (SELF, "/js.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    // A long head (megabytes of inline state) is read to its end, as browsers read it.
    row("c37-huge-html-late-link.test", Icon(SELF, "/late.png"), &[
        (SELF, "/", Huge("", "<link rel=icon href=/late.png>")),
        (SELF, "/late.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c37-huge-html-early-link.test", Icon(SELF, "/early.png"), &[
        (SELF, "/", Huge("<link rel=icon href=/early.png>", "")),
        (SELF, "/early.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c38-gzip-page.test", Icon(SELF, "/z.png"), &[
        (SELF, "/", GzipHead(r#"<link rel="icon" href="/z.png">"#)),
        (SELF, "/z.png", Image(PNG, Png(32, 32))),
    ]),
    row("c38-deflate-page.test", Icon(SELF, "/d.png"), &[
        (SELF, "/", DeflateHead(r#"<link rel="icon" href="/d.png">"#)),
        (SELF, "/d.png", Image(PNG, Png(32, 32))),
    ]),
    // HTTP's deflate is zlib, but servers also send raw deflate; browsers read both.
    row("c38-raw-deflate-page.test", Icon(SELF, "/r.png"), &[
        (SELF, "/", RawDeflateHead(r#"<link rel="icon" href="/r.png">"#)),
        (SELF, "/r.png", Image(PNG, Png(32, 32))),
    ]),
    // A page that cannot be decoded is not an empty page.
    row("c38-undecodable-page.test", Fail("invalid_content"), &[
        (SELF, "/", Undecodable),
    ]),
    row("c38-undecodable-page-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Undecodable),
        FAVICON,
    ]),
    row("c38-gzip-svg.test", Icon(SELF, "/i.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/i.svg">"#)),
        (SELF, "/i.svg", GzipSvg),
    ]),
    // The href "/иконка.png" written in windows-1251: decoded first, then percent-encoded as
    // UTF-8; a wrong decoding gives a different URL.
    row("c39-charset-header.test", Icon(SELF, CYR), &[
        (SELF, "/", Cp1251("text/html; charset=windows-1251", "")),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-charset-meta.test", Icon(SELF, CYR), &[
        (SELF, "/", Cp1251(HTML, r#"<meta charset="windows-1251">"#)),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-bom-beats-header.test", Icon(SELF, CYR), &[
        (SELF, "/", Utf8Bom("text/html; charset=windows-1251")),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-utf16le-bom.test", Icon(SELF, CYR), &[
        (SELF, "/", Utf16(false)),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-utf16be-bom.test", Icon(SELF, CYR), &[
        (SELF, "/", Utf16(true)),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c40-json-root.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", File(JSON, r#"{"link":"<link rel=icon href=/j.png>"}"#)),
        (SELF, "/j.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c40-pdf-root.test", Icon(SELF, "/apple-touch-icon.png"), &[
        (SELF, "/", File("application/pdf", "%PDF-1.4\n")),
        (SELF, "/apple-touch-icon.png", Image(PNG, Png(180, 180))),
    ]),
    row("c41-vite-default.test", Icon(SELF, "/vite.svg"), &[
        (SELF, "/", Html(r#"<!doctype html><html><head><link rel="icon" type="image/svg+xml" href="/vite.svg" /></head><body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>"#)),
        (SELF, "/vite.svg", Image(SVG, Svg)),
    ]),
    row("c42-manifest.test", Sized(SELF, "/s/i/192.png", 192, 192), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/s/site.webmanifest">"#)),
        (SELF, "/s/site.webmanifest", File("application/manifest+json", r#"{"name":"x","icons":[{"src":"i/192.png","sizes":"192x192","type":"image/png"}]}"#)),
        (SELF, "/s/i/192.png", Image(PNG, Png(192, 192))),
        (SELF, "/i/192.png", Image(PNG, Png(192, 192))),
    ]),
    row("c42-manifest-text-plain.test", Icon(SELF, "/m.png"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/manifest.json">"#)),
        (SELF, "/manifest.json", File("text/plain", r#"{"icons":[{"src":"/m.png","sizes":"144x144"}]}"#)),
        (SELF, "/m.png", Image(PNG, Png(144, 144))),
    ]),
    row("c43-purpose.test", Icon(SELF, "/any.png"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", File(JSON, r#"{"icons":[{"src":"/mask.png","sizes":"512x512","purpose":"maskable"},
                {"src":"/mono.png","sizes":"192x192","purpose":"monochrome"},
                {"src":"/any.png","sizes":"192x192","purpose":"any"}]}"#)),
        (SELF, "/mask.png", Image(PNG, Png(512, 512))),
        (SELF, "/mono.png", Image(PNG, Png(192, 192))),
        (SELF, "/any.png", Image(PNG, Png(192, 192))),
    ]),
    row("c43-monochrome-only.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", File(JSON, r#"{"icons":[{"src":"/mono.png","sizes":"192x192","purpose":"monochrome"}]}"#)),
        (SELF, "/mono.png", Image(PNG, Png(192, 192))),
        FAVICON,
    ]),
    row("c44-partly-invalid-manifest.test", Icon(SELF, "/good.png"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", File(JSON, "\u{feff}{\"icons\":[{\"sizes\":\"512x512\"},{\"src\":7},{\"src\":\"/good.png\"}]} junk")),
        (SELF, "/good.png", Image(PNG, Png(192, 192))),
    ]),
    row("c45-manifest-404.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/missing.json">"#)),
        FAVICON,
    ]),
    row("c45-manifest-html.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", Html("<html><body>login</body></html>")),
        FAVICON,
    ]),
    row("c46-tile.test", Icon(SELF, "/tile.png"), &[
        (SELF, "/", Head(r#"<meta name="msapplication-TileImage" content="/tile.png">"#)),
        (SELF, "/tile.png", Image(PNG, Png(144, 144))),
        FAVICON,
    ]),
    row("c46-tile-below-icon.test", Icon(SELF, "/i.png"), &[
        (SELF, "/", Head(r#"<meta name="msapplication-TileImage" content="/tile.png"><link rel="icon" href="/i.png">"#)),
        (SELF, "/tile.png", Image(PNG, Png(144, 144))),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    // The tiles of browserconfig.xml: the one the page names, else `/browserconfig.xml`, which
    // is asked for only when nothing else verified (`/favicon.ico` is the better icon).
    row("c46-browserconfig-named.test", Sized(SELF, "/t/150.png", 150, 150), &[
        (SELF, "/", Head(r#"<meta name="msapplication-config" content="/ie/browserconfig.xml">"#)),
        (SELF, "/ie/browserconfig.xml", File(XML, BROWSERCONFIG)),
        (SELF, "/t/150.png", Image(PNG, Png(150, 150))),
        (SELF, "/t/wide.png", Image(PNG, Png(310, 150))),
    ]),
    row("c46-browserconfig-default.test", Sized(SELF, "/t/150.png", 150, 150), &[
        (SELF, "/", Head("")),
        (SELF, "/browserconfig.xml", File("text/xml", BROWSERCONFIG)),
        (SELF, "/t/150.png", Image(PNG, Png(150, 150))),
    ]),
    row("c46-browserconfig-after-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("")),
        (SELF, "/browserconfig.xml", File(XML, BROWSERCONFIG)),
        (SELF, "/t/150.png", Image(PNG, Png(150, 150))),
        FAVICON,
    ]),
    row("c47-og-image-only.test", Fail("no_icon"), &[
        (SELF, "/", Head(OG)),
        (SELF, "/og.png", Image(PNG, Png(1200, 630))),
        (SELF, "/tw.png", Image(PNG, Png(1200, 630))),
    ]),
    row("c47-og-image-and-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(OG)),
        (SELF, "/og.png", Image(PNG, Png(630, 630))),
        FAVICON,
    ]),
    row("c48-nothing-declared-apple.test", Icon(SELF, "/apple-touch-icon.png"), &[
        (SELF, "/", Head("")),
        (SELF, "/apple-touch-icon.png", Image(PNG, Png(180, 180))),
    ]),
    row("c48-nothing-declared-precomposed.test", Icon(SELF, "/apple-touch-icon-precomposed.png"), &[
        (SELF, "/", Head("")),
        (SELF, "/apple-touch-icon-precomposed.png", Image(PNG, Png(180, 180))),
    ]),
    row("c48-nothing-at-all.test", Fail("no_icon"), &[(SELF, "/", Head(""))]),
    row("c49-declared-404.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/missing.png">"#)),
        FAVICON,
    ]),
    row("c50-soft-404.test", Fail("no_icon"), &[
        (SELF, "/", Head("")),
        (SELF, "/favicon.ico", Html("<!doctype html><html><body>Not found</body></html>")),
        (SELF, "/apple-touch-icon.png", Html("<html><body>app shell</body></html>")),
    ]),
    row("c51-octet-stream.test", Icon(SELF, "/i.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/i.png">"#)),
        (SELF, "/i.png", Image("application/octet-stream", Png(32, 32))),
    ]),
    row("c51-svg-as-text.test", Icon(SELF, "/i.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/i.svg">"#)),
        (SELF, "/i.svg", Image("text/plain", Svg)),
    ]),
    row("c52-empty-and-truncated.test", Fail("no_icon"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/t.png">"#)),
        (SELF, "/t.png", Image(PNG, Truncated)),
        (SELF, "/favicon.ico", File(ICO, "")),
    ]),
    row("c52-broken-then-good.test", Icon(SELF, "/apple.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/t.png"><link rel="apple-touch-icon" href="/apple.png">"#)),
        (SELF, "/t.png", Image(PNG, Truncated)),
        (SELF, "/apple.png", Image(PNG, Png(180, 180))),
        (SELF, "/favicon.ico", File(ICO, "")),
    ]),
    row("c53-placeholder-pixel.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/pixel.gif">"#)),
        (SELF, "/pixel.gif", Image("image/gif", Gif(1, 1))),
        FAVICON,
    ]),
    row("c55-oversized-bytes.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/big.png">"#)),
        (SELF, "/big.png", Image(PNG, Oversized)),
        FAVICON,
    ]),
    row("c55-pixel-bomb.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/bomb.png">"#)),
        (SELF, "/bomb.png", Image(PNG, Claiming(30_000, 30_000))),
        FAVICON,
    ]),
    row("c56-ico-256.test", Sized(SELF, "/favicon.ico", 256, 256), &[
        (SELF, "/", Head("")),
        (SELF, "/favicon.ico", Image(ICO, Ico(&[16, 256]))),
    ]),
    row("c57-animated-gif.test", Sized(SELF, "/a.gif", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/a.gif">"#)),
        (SELF, "/a.gif", Image("image/gif", Gif(32, 32))),
    ]),
    row("c58-svg-with-script.test", Icon(SELF, "/s.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/s.svg">"#)),
        (SELF, "/s.svg", File(SVG, r#"<?xml version="1.0"?><!-- logo --><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><script>alert(1)</script><image href="http://elsewhere.test/x.png"/></svg>"#)),
    ]),
    // The declared URL is what is reported; its redirects are followed to the bytes.
    row("c60-icon-redirect.test", Icon(SELF, "/r.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/r.png">"#)),
        (SELF, "/r.png", Redirect(302, "http://cdn60.test/real.png")),
        ("cdn60.test", "/real.png", Image(PNG, Png(32, 32))),
    ]),
    row("c60-icon-redirect-to-login.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/r.png">"#)),
        (SELF, "/r.png", Redirect(302, "/login")),
        (SELF, "/login", Html("<html><body>Sign in</body></html>")),
        FAVICON,
    ]),
    row("c60-icon-redirect-too-long.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/r0.png">"#)),
        (SELF, "/r0.png", Redirect(302, "/r1.png")),
        (SELF, "/r1.png", Redirect(302, "/r2.png")),
        (SELF, "/r2.png", Redirect(302, "/r3.png")),
        (SELF, "/r3.png", Redirect(302, "/r4.png")),
        (SELF, "/r4.png", Redirect(302, "/r5.png")),
        (SELF, "/r5.png", Redirect(302, "/r6.png")),
        (SELF, "/r6.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c61-http-www-chain.test", Icon("www.c61-http-www-chain.test", "/home/i.png"), &[
        (SELF, "/", Redirect(301, "http://www.c61-http-www-chain.test/")),
        ("www.c61-http-www-chain.test", "/", Redirect(302, "/home/")),
        ("www.c61-http-www-chain.test", "/home/", Head(r#"<link rel="icon" href="i.png">"#)),
        ("www.c61-http-www-chain.test", "/home/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c62-cross-domain.test", Icon("parent62.test", "/brand/p.png"), &[
        (SELF, "/", Redirect(301, "http://parent62.test/brand/")),
        FAVICON,
        ("parent62.test", "/brand/", Head(r#"<link rel="icon" href="p.png">"#)),
        ("parent62.test", "/brand/p.png", Image(PNG, Png(32, 32))),
    ]),
    row("c63-redirect-loop.test", Fail("too_many_redirects"), &[
        (SELF, "/", Redirect(302, "/a")),
        (SELF, "/a", Redirect(302, "/")),
    ]),
    row("c63-loop-favicon-still-tried.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Redirect(302, "/a")),
        (SELF, "/a", Redirect(302, "/")),
        FAVICON,
    ]),
    row("c63-eleven-hops.test", Fail("too_many_redirects"), &[
        (SELF, "/", Redirect(302, "/h1")),
        (SELF, "/h1", Redirect(302, "/h2")),
        (SELF, "/h2", Redirect(302, "/h3")),
        (SELF, "/h3", Redirect(302, "/h4")),
        (SELF, "/h4", Redirect(302, "/h5")),
        (SELF, "/h5", Redirect(302, "/h6")),
        (SELF, "/h6", Redirect(302, "/h7")),
        (SELF, "/h7", Redirect(302, "/h8")),
        (SELF, "/h8", Redirect(302, "/h9")),
        (SELF, "/h9", Redirect(302, "/h10")),
        (SELF, "/h10", Redirect(302, "/h11")),
        (SELF, "/h11", Redirect(302, "/h12")),
        (SELF, "/h12", Head("<link rel=icon href=/i.png>")),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c64-meta-refresh.test", Icon(SELF, "/en/i.png"), &[
        (SELF, "/", Head(r#"<meta http-equiv="Refresh" content="0; URL='/en/'">"#)),
        (SELF, "/en/", Head(r#"<link rel="icon" href="i.png">"#)),
        (SELF, "/en/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c64-meta-refresh-odd-case.test", Icon(SELF, "/fr/i.png"), &[
        (SELF, "/", Head("<META HTTP-EQUIV=refresh CONTENT=\"5;url=/fr/\">")),
        (SELF, "/fr/", Head(r#"<link rel="icon" href="i.png">"#)),
        (SELF, "/fr/i.png", Image(PNG, Png(32, 32))),
    ]),
    // The dead hosts are in `DEAD`.
    row("c65-apex-dead-www-alive.test", Icon("www.c65-apex-dead-www-alive.test", "/w.png"), &[
        ("www.c65-apex-dead-www-alive.test", "/", Head(r#"<link rel="icon" href="/w.png">"#)),
        ("www.c65-apex-dead-www-alive.test", "/w.png", Image(PNG, Png(32, 32))),
    ]),
    row("www.c65-www-dead-apex-alive.test", Icon("c65-www-dead-apex-alive.test", "/a.png"), &[
        ("c65-www-dead-apex-alive.test", "/", Head(r#"<link rel="icon" href="/a.png">"#)),
        ("c65-www-dead-apex-alive.test", "/a.png", Image(PNG, Png(32, 32))),
    ]),
    row("c65-both-dead.test", Fail("connect"), &[]),
    // Browsers do not count header lines: a few hundred repeated ones are read.
    row("c65-many-headers.test", Icon(SELF, "/i.png"), &[
        (SELF, "/", ManyHeaders(150, "<link rel=icon href=/i.png>")),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    // An answer past every header bound came from a working server: its `/favicon.ico` is
    // tried, not the www twin.
    row("c65-headers-over-bound.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", ManyHeaders(5000, "<link rel=icon href=/i.png>")),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
        FAVICON,
        ("www.c65-headers-over-bound.test", "/", Head("<link rel=icon href=/w.png>")),
        ("www.c65-headers-over-bound.test", "/w.png", Image(PNG, Png(32, 32))),
    ]),
    row("c67-nxdomain.test", Fail("dns"), &[]),
    row("c69-bot-wall-browser-retry.test", Icon(SELF, "/b.png"), &[
        (SELF, "/", BrowserOnly(r#"<link rel="icon" href="/b.png">"#)),
        (SELF, "/b.png", Image(PNG, Png(32, 32))),
    ]),
    row("c69-bot-wall-403.test", Fail("http_status"), &[(SELF, "/", Status(403, HTML, CHALLENGE))]),
    row("c69-challenge-503.test", Fail("http_status"), &[
        (SELF, "/", Status(503, HTML, CHALLENGE)),
    ]),
    row("c69-403-page-but-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Status(403, HTML, "<html>Forbidden</html>")),
        FAVICON,
    ]),
    row("c70-429-retry-after.test", Fail("rate_limited"), &[(SELF, "/", TooManyRequests("120"))]),
    row("c70-500.test", Fail("rate_limited"), &[
        (SELF, "/", Status(500, HTML, "<html>oops</html>")),
    ]),
    row("c70-404-home.test", Fail("http_status"), &[
        (SELF, "/", Status(404, HTML, "<html>gone</html>")),
    ]),
];
