//! The README's configuration table, `.env.template` and `src/config/mod.rs` describe the same
//! settings with the same defaults, so none of the three can drift from the others.
//!
//! The names come from the code itself (every `env.…("NAME"` read in `src/config/mod.rs`). A default
//! is checked by behaviour, not by text: setting a variable to the default the docs state must
//! give the same `Config` as leaving it unset.

use favicon_finder::config::Config;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Read by the logging set-up rather than `Config` (tracing's `EnvFilter`).
const OUTSIDE_CONFIG: &[&str] = &["RUST_LOG"];

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The code that reads settings: `src/config/mod.rs`, and `traces.rs` for the `OTEL_*` ones.
fn config_code() -> String {
    read("src/config/mod.rs") + &read("src/config/traces.rs")
}

/// Every variable the config code reads: the string literal right after `env.<method>(`.
fn names_in_code() -> BTreeSet<String> {
    let code = config_code();
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("env.") {
        let rest = &code[at + 4..];
        let Some(open) = rest.find('(') else { continue };
        if !rest[..open]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let args = rest[open + 1..].trim_start();
        if let Some(quoted) = args.strip_prefix('"') {
            let name = &quoted[..quoted.find('"').unwrap()];
            if name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The README's configuration table: name → (the default it states, its meaning).
fn readme_rows() -> BTreeMap<String, (String, String)> {
    let readme = read("README.md");
    let start = readme
        .find("\n## Configuration")
        .expect("a Configuration section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let names: Vec<&str> = cells[1].split(" / ").collect();
        let defaults: Vec<&str> = cells[2].split(" / ").collect();
        for (i, name) in names.iter().enumerate() {
            let default = defaults.get(i).or(defaults.first()).unwrap();
            rows.insert(
                name.trim_matches('`').to_owned(),
                (default.to_string(), cells[3].to_owned()),
            );
        }
    }
    rows
}

/// The README's configuration table: name → the default it states.
fn readme_table() -> BTreeMap<String, String> {
    readme_rows()
        .into_iter()
        .map(|(name, (default, _))| (name, default))
        .collect()
}

/// Every variable the config code checks against a range (`parse_in` and `millis`).
fn ranged_in_code() -> BTreeSet<String> {
    let code = config_code();
    let mut names = BTreeSet::new();
    for call in ["parse_in(", "millis("] {
        for (at, _) in code.match_indices(call) {
            let args = code[at + call.len()..].trim_start();
            if let Some(quoted) = args.strip_prefix('"') {
                names.insert(quoted[..quoted.find('"').unwrap()].to_owned());
            }
        }
    }
    names
}

/// `(lo, hi)` from a meaning that ends "(lo–hi)", or `(lo, None)` from "(lo or more)".
fn stated_range(meaning: &str) -> Option<(String, Option<String>)> {
    let inner = meaning.strip_suffix(')')?;
    let inner = &inner[inner.rfind('(')? + 1..];
    if let Some(lo) = inner.strip_suffix(" or more") {
        return Some((lo.to_owned(), None));
    }
    let (lo, hi) = inner.split_once('–')?;
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    (number(lo) && number(hi)).then(|| (lo.to_owned(), Some(hi.to_owned())))
}

/// The value just outside `edge`: one less or more for integers, 0.1 for fractions.
fn beyond(edge: &str, up: bool) -> Option<String> {
    if edge.contains('.') {
        let v: f64 = edge.parse().unwrap();
        return Some(format!("{}", if up { v + 0.1 } else { v - 0.1 }));
    }
    let v: u128 = edge.parse().unwrap();
    if up {
        Some((v + 1).to_string())
    } else {
        v.checked_sub(1).map(|v| v.to_string())
    }
}

/// `NAME` when `line` is a setting (`NAME=value`), set or shown in a comment.
fn setting_name(line: &str) -> Option<&str> {
    let (name, _) = line.split_once('=')?;
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    is_name.then_some(name)
}

/// `.env.template`: name → `Some(value)` when set, `None` when only shown commented out. The
/// set values are read by dotenvy, the loader the binary reads `.env` with, so a line it
/// cannot read fails here as it would fail start-up.
fn template() -> BTreeMap<String, Option<String>> {
    let text = read(".env.template");
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix('#')
            .and_then(|l| setting_name(l.trim_start()))
        {
            vars.insert(name.to_owned(), None);
        }
    }
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (name, value) =
            item.unwrap_or_else(|e| panic!(".env.template is not a .env the binary reads: {e}"));
        vars.insert(name, Some(value));
    }
    vars
}

fn config_with(name: &str, value: &str) -> Result<Config, String> {
    let vars: HashMap<String, String> = [(name.to_owned(), value.to_owned())].into();
    Config::from_vars(vars).map_err(|e| e.to_string())
}

#[test]
fn readme_template_and_code_name_the_same_settings() {
    let mut code = names_in_code();
    assert!(code.len() > 20, "the scan found the settings: {code:?}");
    code.extend(OUTSIDE_CONFIG.iter().map(|s| s.to_string()));
    let readme: BTreeSet<String> = readme_table().into_keys().collect();
    let template: BTreeSet<String> = template().into_keys().collect();
    let missing = |from: &BTreeSet<String>, what: &str| -> Vec<String> {
        code.difference(from)
            .map(|n| format!("{n} missing from {what}"))
            .collect()
    };
    let unknown = |from: &BTreeSet<String>, what: &str| -> Vec<String> {
        from.difference(&code)
            .map(|n| format!("{n} in {what} is read nowhere"))
            .collect()
    };
    let problems: Vec<String> = [
        missing(&readme, "the README table"),
        missing(&template, ".env.template"),
        unknown(&readme, "the README table"),
        unknown(&template, ".env.template"),
    ]
    .concat();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn stated_defaults_are_the_code_defaults() {
    let defaults = Config::from_vars(HashMap::new()).unwrap();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, stated) in readme_table() {
        let value = stated.trim_matches('`');
        // Prose ("browser-like, …") and "unset" are not values to set.
        if value == "unset" || value.contains(' ') || OUTSIDE_CONFIG.contains(&name.as_str()) {
            continue;
        }
        checked += 1;
        match config_with(&name, value) {
            Ok(config) if config == defaults => {}
            Ok(_) => problems.push(format!("README: {name} default {value} is not the code's")),
            Err(e) => problems.push(format!("README: {name} default {value}: {e}")),
        }
    }
    for (name, value) in template() {
        let Some(value) = value else { continue };
        if OUTSIDE_CONFIG.contains(&name.as_str()) {
            problems.push(format!(".env.template sets {name}; its default is unset"));
            continue;
        }
        checked += 1;
        match config_with(&name, &value) {
            Ok(config) if config == defaults => {}
            Ok(_) => problems.push(format!(".env.template: {name}={value} is not the default")),
            Err(e) => problems.push(format!(".env.template: {name}={value}: {e}")),
        }
    }
    assert!(checked > 20, "only {checked} defaults were checked");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn stated_ranges_are_the_enforced_ones() {
    let rows = readme_rows();
    let mut problems = Vec::new();
    for name in ranged_in_code() {
        let Some((_, meaning)) = rows.get(&name) else {
            problems.push(format!("{name}: no README row"));
            continue;
        };
        let Some((lo, hi)) = stated_range(meaning) else {
            problems.push(format!("{name}: the README states no range (\"(lo–hi)\")"));
            continue;
        };
        let mut accepted = vec![lo.clone()];
        accepted.extend(hi.clone());
        for value in accepted {
            if let Err(e) = config_with(&name, &value) {
                problems.push(format!(
                    "{name}={value} is in the stated range but refused: {e}"
                ));
            }
        }
        let outside = [
            beyond(&lo, false),
            hi.as_deref().and_then(|h| beyond(h, true)),
        ];
        for value in outside.into_iter().flatten() {
            match config_with(&name, &value) {
                Ok(_) => problems.push(format!(
                    "{name}={value} is outside the stated range but accepted"
                )),
                Err(e) => assert!(e.contains(&name), "{e}"),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A commented example, uncommented as its comment invites, is a line the binary's loader
/// reads as that one setting (a value with spaces needs its quotes in the example too).
#[test]
fn commented_examples_load_when_uncommented() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for line in read(".env.template").lines() {
        let Some(example) = line.strip_prefix("# ") else {
            continue;
        };
        let Some(name) = setting_name(example) else {
            continue;
        };
        checked += 1;
        match dotenvy::from_read_iter(example.as_bytes()).collect::<Result<Vec<_>, _>>() {
            Ok(read) if read.len() == 1 && read[0].0 == name => {}
            Ok(read) => problems.push(format!("{example:?} reads as {read:?}")),
            Err(e) => problems.push(format!("{example:?}: {e}")),
        }
    }
    assert!(checked > 10, "only {checked} examples were found");
    assert!(problems.is_empty(), "{problems:#?}");
}
