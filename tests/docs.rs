//! The documentation against the tree and the binary it describes, so that what it tells an
//! operator to run exists as written: every relative link leads to a file (and heading) that
//! exists, every repository path and test target a command or a sentence names exists, and
//! the configuration reference and the binary's `--help` name the same settings.
//!
//! Commands that take minutes (benchmarks) are not run here; what they name is checked.
#![cfg(feature = "server")]

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

mod common;

use common::binary::BIN;

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every page of `docs/`, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("page");
            (p, text)
        })
        .collect()
}

fn name(page: &Path) -> String {
    page.strip_prefix(root())
        .unwrap_or(page)
        .display()
        .to_string()
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors GitHub gives a page's headings: lowercased, punctuation but `-` and `_`
/// dropped, spaces made `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#').trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while !seen.insert(unique.clone()) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
    }
    seen
}

/// The targets of the inline links `[text](target)` in a line.
fn link_targets(line: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn relative_links_lead_to_files_and_headings_that_exist() {
    let pages = pages();
    let (mut broken, mut headings) = (Vec::new(), 0);
    for (page, text) in &pages {
        for line in prose(text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("a directory").join(file)
                };
                if !file.exists() {
                    broken.push(format!("{}: {target}: no such file", name(page)));
                    continue;
                }
                if anchor.is_empty() || file.extension().is_none_or(|e| e != "md") {
                    continue;
                }
                let text = std::fs::read_to_string(&file).expect("linked page");
                headings += 1;
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{}: {target}: no such heading", name(page)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    eprintln!("{headings} links to headings checked");
    assert!(headings > 30, "only {headings} links to headings found");
}

/// The top-level directories whose files the docs name by path.
const TREE: [&str; 6] = ["src/", "tests/", "benches/", "scripts/", "docs/", ".ci/"];

/// The repository paths a page names (in code spans and code blocks): words starting with
/// one of [`TREE`], without the punctuation around them. Patterns (`*`, `<…>`, `{…}`) and
/// line numbers (`file.rs:42`) are left out or cut off.
fn named_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for word in text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '`' | '(' | ')' | '[' | ']' | ',' | ';' | '"' | '\'' | '='
            )
    }) {
        let word = word.trim_end_matches(['.', ':']);
        let start = TREE.iter().filter_map(|dir| word.find(dir)).min();
        let Some(start) = start else { continue };
        // `../shared/…` and URLs are outside the repository.
        if start > 0 && !word[..start].ends_with("./") || word.contains("://") {
            continue;
        }
        let path = &word[start..];
        let path = path.split([':', '#']).next().unwrap_or(path);
        if path.contains(['*', '<', '>', '{', '}', '$', '…']) || path.contains("...") {
            continue;
        }
        paths.insert(path.trim_end_matches(['.', '/']).to_owned());
    }
    paths
}

/// Asserts that each `(page, what it says, path)` names a path that exists, and that more
/// than `at_least` were found (a reader that finds nothing must not pass).
fn assert_each_exists(kind: &str, named: Vec<(String, String, PathBuf)>, at_least: usize) {
    let missing: Vec<String> = named
        .iter()
        .filter(|(_, _, path)| !path.exists())
        .map(|(page, said, _)| format!("{page}: {said}"))
        .collect();
    assert!(
        missing.is_empty(),
        "{kind} the docs name that do not exist:\n{}",
        missing.join("\n")
    );
    eprintln!("{} {kind} checked", named.len());
    assert!(named.len() > at_least, "only {} {kind} found", named.len());
}

#[test]
fn repository_paths_named_in_the_docs_exist() {
    let mut named = Vec::new();
    for (page, text) in pages() {
        for path in named_paths(&text) {
            named.push((name(&page), path.clone(), root().join(&path)));
        }
    }
    assert_each_exists("paths", named, 100);
}

#[test]
fn test_targets_named_in_the_docs_exist() {
    let mut named = Vec::new();
    for (page, text) in pages() {
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2).filter(|pair| pair[0] == "--test") {
            let target = pair[1].trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
            let file = root().join("tests").join(format!("{target}.rs"));
            named.push((name(&page), format!("--test {target}"), file));
        }
    }
    assert_each_exists("test targets", named, 5);
}

/// The environment variables a text names: upper-case words with one of the registry's
/// prefixes.
fn variables(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| {
            ["MARINA_", "STORAGE_", "S3_", "GCS_"]
                .iter()
                .any(|p| w.starts_with(p) && w.len() > p.len())
        })
        .map(str::to_owned)
        .collect()
}

/// The long flags (`--word-word`) in `lines`.
fn flags<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    lines
        .flat_map(|line| {
            line.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        })
        .filter(|w| w.starts_with("--") && w.len() > 2 && !w.ends_with('-'))
        .map(str::to_owned)
        .collect()
}

/// What `marina-registry <args> --help` prints.
fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("marina-registry --help");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The options `--help` describes (its lines that start with one), but `--help` and
/// `--version`.
fn options(help: &str) -> BTreeSet<String> {
    let described = help.lines().filter(|line| {
        let line = line.trim_start();
        line.starts_with("--") || (line.starts_with('-') && line.get(2..4) == Some(", "))
    });
    let mut options = flags(described);
    options.remove("--help");
    options.remove("--version");
    options
}

/// Asserts that the reference documents exactly what `--help` offers, of one `kind`.
fn assert_same(kind: &str, documented: &BTreeSet<String>, offered: &BTreeSet<String>) {
    let undocumented: Vec<_> = offered.difference(documented).collect();
    assert!(
        undocumented.is_empty(),
        "{kind} in --help missing from docs/configuration.md: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(offered).collect();
    assert!(
        unknown.is_empty(),
        "{kind} in docs/configuration.md that --help does not list: {unknown:?}"
    );
}

#[test]
fn the_configuration_reference_and_the_help_name_the_same_settings() {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let help = help(&[]);
    assert_same("variables", &variables(&reference), &variables(&help));
    // The reference's table rows, and the options of the server and of `gc`.
    let documented = flags(reference.lines().filter(|l| l.starts_with('|')));
    let mut offered = options(&help);
    offered.extend(options(&self::help(&["gc"])));
    assert_same("flags", &documented, &offered);
}
