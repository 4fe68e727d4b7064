//! The shape ARCHITECTURE.md promises, checked on the source itself: the layering rules, no
//! import cycle between modules (nor between the files of one module), and no function or file
//! too long to read. A rule written only in prose drifts; this one fails the build instead.

// Test code: a failed unwrap is the test failing (the unwrap_used lint is for the service).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest function body outside tests, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 120;
/// The longest file under `src/`.
const MAX_FILE_LINES: usize = 600;

/// Modules below the core: they may be used by everyone and use neither `jobs` nor `store`.
const BASE: &[&str] = &[
    "config", "redact", "error", "model", "clean", "domain", "metrics", "quiet",
];

/// One source file: its path under `src/`, the top-level module it belongs to, and its text
/// with test-only items taken out.
struct Source {
    path: String,
    module: String,
    code: String,
    lines: usize,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|file| {
            let path = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = fs::read_to_string(&file).unwrap();
            let module = path.split(['/', '.']).next().unwrap().to_string();
            let code = if is_test_file(&path) {
                String::new()
            } else {
                without_tests(&text)
            };
            Source {
                path,
                module,
                code,
                lines: text.lines().count(),
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files that hold only tests: a `tests.rs`, `*_tests.rs`, or anything under a `tests/` folder.
fn is_test_file(path: &str) -> bool {
    path.ends_with("tests.rs") || path.contains("/tests/")
}

/// The text with every `#[cfg(test)]` item removed (a `mod tests;` line or a braced block that
/// rustfmt closes at the attribute's own indentation).
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let indent = indent_of(line);
        let Some(item) = lines.next() else { break };
        if item.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        for rest in lines.by_ref() {
            if rest.trim_end() == close {
                break;
            }
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The top-level modules a file names through `crate::…` paths (in `use` or inline).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let name: String = line[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// Which files break a rule "files matching `who` never name a module in `banned`".
fn offenders(sources: &[Source], who: impl Fn(&Source) -> bool, banned: &[&str]) -> Vec<String> {
    sources
        .iter()
        .filter(|s| who(s))
        .flat_map(|s| {
            crate_refs(&s.code)
                .into_iter()
                .filter(|m| banned.contains(&m.as_str()))
                .map(move |m| format!("{} names crate::{m}", s.path))
        })
        .collect()
}

#[test]
fn the_seven_layering_rules_hold() {
    let src = sources();
    let adapter = |s: &Source| s.module == "api" || s.path == "auth/cli.rs";
    let mut broken = Vec::new();
    // 1. Adapters go through the core (`Jobs`, `Accounts`), never the store or its rows.
    broken.extend(offenders(&src, adapter, &["store", "entities"]));
    // 2. The store knows no finder types.
    broken.extend(offenders(&src, |s| s.module == "store", &["finder"]));
    // 3. Event transport never reaches the store.
    broken.extend(offenders(
        &src,
        |s| s.module == "events",
        &["store", "entities"],
    ));
    // 4 and 5. Config and the other base modules reach neither the core nor the store.
    let base = |s: &Source| BASE.contains(&s.module.as_str());
    broken.extend(offenders(
        &src,
        base,
        &["jobs", "store", "entities", "worker", "api"],
    ));
    // 6. The finder never touches the database.
    broken.extend(offenders(
        &src,
        |s| s.module == "finder",
        &["store", "entities"],
    ));
    let sea_orm: Vec<_> = src
        .iter()
        .filter(|s| s.module == "finder" && s.code.contains("sea_orm"))
        .map(|s| format!("{} names sea_orm", s.path))
        .collect();
    broken.extend(sea_orm);
    // 7. Nothing below the adapters reaches up into them (only `app` and `cli` mount them).
    let below = |s: &Source| !["api", "app", "cli", "main", "lib"].contains(&s.module.as_str());
    broken.extend(offenders(&src, below, &["api"]));
    assert!(
        broken.is_empty(),
        "layering rules broken:\n{}",
        broken.join("\n")
    );
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources() {
        let refs = crate_refs(&s.code).into_iter().filter(|m| *m != s.module);
        graph.entry(s.module.clone()).or_default().extend(refs);
    }
    assert_eq!(find_cycle(&graph), None, "an import cycle between modules");
}

#[test]
fn no_two_files_of_one_module_import_each_other() {
    let sources = sources();
    let folders: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| s.path.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .collect();
    let mut cycles = Vec::new();
    // SeaORM's relations name both ends (a job belongs to a client, a client has jobs): the
    // entities are declarations the framework wants that way, not code that calls itself.
    for folder in folders.into_iter().filter(|f| f != "entities") {
        let siblings: Vec<&Source> = sources
            .iter()
            .filter(|s| {
                s.path
                    .rsplit_once('/')
                    .is_some_and(|(dir, _)| dir == folder)
            })
            .filter(|s| !s.path.ends_with("/mod.rs"))
            .collect();
        let names: BTreeSet<String> = siblings.iter().map(|s| stem(&s.path).to_string()).collect();
        let crate_path = format!("crate::{}::", folder.replace('/', "::"));
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in &siblings {
            let uses = names
                .iter()
                .filter(|n| **n != stem(&s.path))
                .filter(|n| {
                    s.code.contains(&format!("super::{n}::"))
                        || s.code.contains(&format!("{crate_path}{n}::"))
                })
                .cloned();
            graph
                .entry(stem(&s.path).to_string())
                .or_default()
                .extend(uses);
        }
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("src/{folder}: {}", cycle.join(" → ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        cycles.join("\n")
    );
}

fn stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap();
    file.strip_suffix(".rs").unwrap_or(file)
}

/// Each function's name and length, found as rustfmt lays code out: the body closes with a
/// brace at the `fn` line's own indentation.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        if line.trim_end().ends_with('}') {
            found.push((name, at + 1, 1));
            continue;
        }
        // A declaration without a body (in a trait) ends with `;` before any `{`.
        let opens = lines[at..].iter().position(|l| {
            let l = l.trim_end();
            l.ends_with('{') || l.ends_with(';')
        });
        if opens.is_none_or(|o| lines[at + o].trim_end().ends_with(';')) {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent_of(line)));
        if let Some(end) = lines[at..].iter().position(|l| l.trim_end() == close) {
            found.push((name, at + 1, end + 1));
        }
    }
    found
}

/// The name in a line that starts a function definition, if it does.
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r;
        }
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && !line.trim_end().ends_with(';')).then_some(name)
}

#[test]
fn no_function_is_longer_than_a_screenful_or_two() {
    let mut long = Vec::new();
    for s in sources() {
        for (name, line, len) in functions(&s.code) {
            if len > MAX_FN_LINES {
                long.push(format!("{}:{line} {name} is {len} lines", s.path));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_file_is_over_the_limit() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|s| s.lines > MAX_FILE_LINES)
        .map(|s| format!("src/{} is {} lines", s.path, s.lines))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    // Positive controls: each scanner finds a planted case, so a green run means "none", not
    // "the scanner is blind".
    let planted = "use crate::store::Store;\nfn f() {\n    x();\n}\n#[cfg(test)]\nmod tests {\n    use crate::api::x;\n}\n";
    assert_eq!(
        crate_refs(&without_tests(planted)),
        BTreeSet::from(["store".to_string()])
    );
    assert_eq!(functions(planted), vec![("f".to_string(), 2, 3)]);
    let cyclic = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert!(find_cycle(&cyclic).is_some());
}
