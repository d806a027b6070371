//! The structure ARCHITECTURE.md states, checked in the code: no import
//! circle among the modules of `host/src` (at any level: among the crate's
//! parts, among the files of a folder), and the crate's parts import each
//! other only as the document's arrows say.
//!
//! A module's imports are read from its source: `use` trees and paths in
//! the code that start with `crate::`, `super::` or `self::`, comments and
//! strings aside, and nothing marked `#[cfg(test)]` (a test may reach
//! anywhere). A module using its own parent's items, or its children's, is
//! not an arrow: a folder's `mod.rs` is the folder itself. An arrow from
//! `a::b::c` to `a::d` is an arrow between `b` and `d`, the parts of `a`
//! they are in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `host/src`.
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A module's path from the crate root: `["pipeline", "keys"]`.
type Module = Vec<String>;

/// Every module that is a file, with its file. `main.rs` is the binary,
/// not a part of the library: left out.
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &Module, found: &mut BTreeMap<Module, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut module = prefix.clone();
            if path.is_dir() {
                module.push(name);
                if path.join("mod.rs").exists() {
                    found.insert(module.clone(), path.join("mod.rs"));
                }
                walk(&path, &module, found);
            } else if let Some(stem) = name.strip_suffix(".rs")
                && stem != "mod"
            {
                if !(prefix.is_empty() && stem == "main") {
                    if !(prefix.is_empty() && stem == "lib") {
                        module.push(stem.to_owned());
                    }
                    found.insert(module, path);
                }
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(&src(), &Vec::new(), &mut found);
    found
}

/// `source` with comments, string literals and character literals blanked
/// out (lifetimes kept).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char_before(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Tokens: identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_owned());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// The tokens of `tokens` outside items marked `#[cfg(test)]`.
fn without_tests(tokens: &[String]) -> Vec<String> {
    let is = |i: usize, s: &str| tokens.get(i).is_some_and(|t| t == s);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let cfg_test = is(i, "#")
            && is(i + 1, "[")
            && is(i + 2, "cfg")
            && is(i + 3, "(")
            && is(i + 4, "test")
            && is(i + 5, ")")
            && is(i + 6, "]");
        if !cfg_test {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // Skip the item: a `use` or `mod x;` to its `;`, anything else to
        // the end of its first block (or its `;`).
        i += 7;
        let is_use = is(i, "use") || (is(i, "pub") && tokens[i..].iter().take(6).any(|t| t == "use"));
        let mut depth = 0;
        while i < tokens.len() {
            let t = tokens[i].as_str();
            i += 1;
            match t {
                "{" if !is_use => depth += 1,
                "}" if !is_use => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ";" if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// The paths a use tree starting at `tokens[*i]` names, each whole.
fn use_tree(tokens: &[String], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    loop {
        match tokens.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                loop {
                    if tokens.get(*i).map(String::as_str) == Some("}") {
                        *i += 1;
                        return;
                    }
                    use_tree(tokens, i, &path, out);
                    if tokens.get(*i).map(String::as_str) == Some(",") {
                        *i += 1;
                    }
                }
            }
            Some("*") => {
                *i += 1;
                out.push(path);
                return;
            }
            Some(t) if t.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_') => {
                if t != "self" || path.is_empty() {
                    path.push(t.to_owned());
                }
                *i += 1;
                if tokens.get(*i).map(String::as_str) == Some("::") {
                    *i += 1;
                    continue;
                }
                if tokens.get(*i).map(String::as_str) == Some("as") {
                    *i += 2;
                }
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// Every path module `at` names that starts at `crate`, `super` or `self`.
fn paths(tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let previous_is_colons = i > 0 && tokens[i - 1] == "::";
        if tokens[i] == "use" {
            i += 1;
            use_tree(tokens, &mut i, &[], &mut out);
        } else if !previous_is_colons && matches!(tokens[i].as_str(), "crate" | "super" | "self") {
            let mut path = vec![tokens[i].clone()];
            i += 1;
            while tokens.get(i).map(String::as_str) == Some("::")
                && tokens
                    .get(i + 1)
                    .is_some_and(|t| t.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_'))
            {
                path.push(tokens[i + 1].clone());
                i += 2;
            }
            out.push(path);
        } else {
            i += 1;
        }
    }
    out
}

/// The module a path used in `at` refers to: as far as its segments name
/// modules. `None` for paths outside the crate.
fn resolve(at: &Module, path: &[String], known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut module: Module = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => at.clone(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        module.pop();
        while rest.first().is_some_and(|s| s == "super") {
            module.pop();
            rest = &rest[1..];
        }
    }
    for segment in rest {
        let mut deeper = module.clone();
        deeper.push(segment.clone());
        if !known.contains_key(&deeper) && !known.keys().any(|m| m.starts_with(&deeper)) {
            break;
        }
        module = deeper;
    }
    Some(module)
}

/// The modules declared `#[cfg(test)] mod NAME;` in `tokens`.
fn test_modules(tokens: &[String]) -> Vec<String> {
    tokens
        .windows(10)
        .filter(|w| w[..7].join("") == "#[cfg(test)]" && w[7] == "mod" && w[9] == ";")
        .map(|w| w[8].clone())
        .collect()
}

/// Every import of one module by another: `(from, to)`, the module a path
/// names as far as its segments are modules. Modules only tests build are
/// left out, and a module's imports of itself.
fn imports() -> BTreeSet<(Module, Module)> {
    let known = modules();
    let read: BTreeMap<&Module, Vec<String>> = known
        .iter()
        .map(|(module, file)| {
            (
                module,
                tokens(&code_only(&std::fs::read_to_string(file).unwrap())),
            )
        })
        .collect();
    let tests_only: Vec<Module> = read
        .iter()
        .flat_map(|(module, tokens)| {
            test_modules(tokens).into_iter().map(|name| {
                let mut child = (*module).clone();
                child.push(name);
                child
            })
        })
        .collect();
    let mut imports = BTreeSet::new();
    for (module, tokens) in &read {
        if tests_only.iter().any(|test| module.starts_with(test)) {
            continue;
        }
        for path in paths(&without_tests(tokens)) {
            if let Some(target) = resolve(module, &path, &known)
                && target != **module
            {
                imports.insert(((*module).clone(), target));
            }
        }
    }
    imports
}

/// The arrows between modules, each lifted to the parts of the module both
/// are in: `(parent, from, to)`, `from` and `to` children of `parent`.
fn arrows() -> BTreeSet<(Module, String, String)> {
    let mut arrows = BTreeSet::new();
    for (module, target) in imports() {
        let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
        if common == module.len() || common == target.len() {
            // An ancestor or a descendant: the same room.
            continue;
        }
        arrows.insert((
            module[..common].to_vec(),
            module[common].clone(),
            target[common].clone(),
        ));
    }
    arrows
}

/// The imports from modules under `from` of modules under `to` that
/// `allowed` does not accept, as `a::b -> c::d` lines.
fn imports_of(from: &str, to: &[&str], allowed: impl Fn(&Module, &Module) -> bool) -> Vec<String> {
    imports()
        .into_iter()
        .filter(|(module, target)| {
            module.first().is_some_and(|m| m == from)
                && target.first().is_some_and(|t| to.contains(&t.as_str()))
                && !allowed(module, target)
        })
        .map(|(module, target)| format!("{} -> {}", module.join("::"), target.join("::")))
        .collect()
}

/// A circle in `graph`, if there is one: the modules on it, first repeated.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut rooms: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in arrows() {
        rooms
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .insert(to);
    }
    let circles: Vec<String> = rooms
        .iter()
        .filter_map(|(parent, graph)| {
            let found = circle(graph)?;
            let room = match parent.is_empty() {
                true => "the crate".to_owned(),
                false => parent.join("::"),
            };
            Some(format!("in {room}: {}", found.join(" -> ")))
        })
        .collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

/// The arrows among the crate's parts that ARCHITECTURE.md draws under
/// "Which part uses which": `a -> b, c` (continued on indented lines), and
/// chains `a -> b -> c`; a qualified target (`sink::Read`) is its part.
fn drawn() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md")).unwrap();
    let section = text
        .split("## Which part uses which")
        .nth(1)
        .expect("ARCHITECTURE.md has a section \"Which part uses which\"");
    let block = section
        .split("```")
        .nth(1)
        .expect("the section opens with a code block");
    let part = |s: &str| -> String {
        s.trim()
            .split(|c: char| c == ':' || c.is_whitespace() || c == '(')
            .next()
            .unwrap()
            .to_owned()
    };
    // Parentheses hold words, not parts.
    let without_remarks = |line: &str| -> String {
        let mut depth = 0;
        line.chars()
            .filter(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        return false;
                    }
                    _ => {}
                }
                depth == 0
            })
            .collect()
    };
    // A line that starts with a space continues the one above.
    let mut lines: Vec<String> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let line = without_remarks(line);
        match (line.starts_with(' '), lines.last_mut()) {
            (true, Some(last)) => {
                last.push_str(", ");
                last.push_str(line.trim());
            }
            _ => lines.push(line),
        }
    }
    let mut drawn = BTreeSet::new();
    for line in &lines {
        let stages: Vec<Vec<String>> = line
            .split("->")
            .map(|stage| stage.split(',').map(part).filter(|p| !p.is_empty()).collect())
            .collect();
        for pair in stages.windows(2) {
            // `main` is the binary, not a part of the library.
            for from in pair[0].iter().filter(|from| *from != "main") {
                for to in &pair[1] {
                    drawn.insert((from.clone(), to.clone()));
                }
            }
        }
    }
    drawn
}

#[test]
fn the_crates_parts_import_each_other_only_as_architecture_md_draws() {
    let drawn = drawn();
    let actual: BTreeSet<(String, String)> = arrows()
        .into_iter()
        .filter(|(parent, _, _)| parent.is_empty())
        .map(|(_, from, to)| (from, to))
        .collect();
    let undrawn: Vec<String> = actual
        .difference(&drawn)
        .map(|(f, t)| format!("{f} -> {t}"))
        .collect();
    let unused: Vec<String> = drawn
        .difference(&actual)
        .map(|(f, t)| format!("{f} -> {t}"))
        .collect();
    assert!(
        undrawn.is_empty() && unused.is_empty(),
        "arrows in the code that ARCHITECTURE.md does not draw: {undrawn:#?}\n\
         arrows it draws that the code does not have: {unused:#?}"
    );
}

#[test]
fn the_reader_finds_uses_and_paths_but_not_tests_comments_or_strings() {
    let source = r#"
        use super::keys::{self, Admission};
        use crate::{error::StorageError, retry::{Attempt, Hold as _}};
        // crate::commented::out
        const S: &str = "crate::in_a_string";
        fn f<'a>(x: &'a str) -> char { crate::metrics::record(x); super::super::top::f(); 'c' }
        #[cfg(test)]
        use crate::test_only;
        #[cfg(test)]
        mod tests { use crate::also_test_only; }
    "#;
    let found = paths(&without_tests(&tokens(&code_only(source))));
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "super::keys",
            "super::keys::Admission",
            "crate::error::StorageError",
            "crate::retry::Attempt",
            "crate::retry::Hold",
            "crate::metrics::record",
            "super::super::top::f",
        ]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .fold(BTreeMap::new(), |mut graph, (from, to)| {
            graph.entry(from.to_string()).or_default().insert(to.to_string());
            graph
        });
    assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn the_pipeline_uses_sources_and_sinks_through_their_traits_never_a_kind() {
    // The traits are the folders' own (`source`, `sink`); `sink::recorded`
    // is a reader over any store, not a kind of one.
    let kinds = imports_of("pipeline", &["source", "sink"], |_, target| {
        target.len() == 1 || target.join("::") == "sink::recorded"
    });
    assert!(kinds.is_empty(), "the pipeline names a kind of place: {kinds:#?}");
}

#[test]
fn a_kind_of_source_is_named_in_source_and_the_shared_flags_only() {
    // `source::place` opens each kind; `commands::flags` turns the flags
    // into a place. Nothing else outside `source/` names a kind.
    let mut named = imports_of("commands", &["source"], |module, target| {
        target.len() == 1 || target[1] == "place" || module.join("::") == "commands::flags"
    });
    named.extend(imports_of("runner", &["source"], |_, target| {
        target.len() == 1 || target[1] == "place"
    }));
    assert!(named.is_empty(), "outside source/ and flags.rs: {named:#?}");
}
