//! The documentation stays true to the repository: every relative link in
//! the docs leads to a file that exists (and a heading there, when it names
//! one), and ARCHITECTURE.md's map of `host/src` names every file and folder
//! there, and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The pages whose links are checked.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "CHANGELOG.md", "guest/README.md"]
        .iter()
        .map(|page| root.join(page))
        .collect();
    for entry in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            pages.push(entry.path());
        }
    }
    pages
}

/// The text of `markdown` outside fenced code blocks and inline code.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            // Inline code spans are every other piece between backticks.
            out.extend(line.split('`').step_by(2));
            out.push('\n');
        }
    }
    out
}

/// The targets of the links in `markdown`: `[text](target)`.
fn links(markdown: &str) -> Vec<String> {
    prose(markdown)
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .filter(|target| !target.contains(char::is_whitespace))
        .collect()
}

/// A heading's anchor, as GitHub makes it: lower case, spaces to hyphens,
/// punctuation other than hyphens and underscores dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The anchors of `markdown`'s headings (outside code blocks).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#').replace('`', "").as_str()));
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = match path {
                "" => page.clone(),
                path => page.parent().unwrap().join(path),
            };
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                let headings = anchors(&std::fs::read_to_string(&file).unwrap_or_default());
                if !headings.contains(fragment) {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The files and folders ARCHITECTURE.md's map names, as paths under
/// `host/src` (`pipeline/keys.rs`, `pipeline/`).
fn mapped() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let (_, after) = text.split_once("## The map").expect("a section \"The map\"");
    let (_, block) = after.split_once("```\n").expect("the map's code block");
    let (block, _) = block.split_once("```").expect("the map's code block ends");
    let mut folders: Vec<String> = Vec::new();
    let mut found = BTreeSet::new();
    for line in block.lines() {
        let indent = line.len() - line.trim_start().len();
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        // An entry is a file or a folder name at an even indentation;
        // anything else continues the line before.
        let is_entry = (name.ends_with(".rs") || name.ends_with('/'))
            && indent % 2 == 0
            && indent / 2 <= folders.len()
            && name
                .trim_end_matches('/')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !is_entry {
            continue;
        }
        folders.truncate(indent / 2);
        let path = format!("{}{name}", folders.concat());
        if name.ends_with('/') {
            folders.push(name.to_owned());
        }
        found.insert(path);
    }
    found
}

/// The files and folders under `host/src`, a folder's `mod.rs` being the
/// folder itself.
fn in_the_code(dir: &Path, prefix: &str, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        if entry.path().is_dir() {
            found.insert(format!("{prefix}{name}/"));
            in_the_code(&entry.path(), &format!("{prefix}{name}/"), found);
        } else if name.ends_with(".rs") && name != "mod.rs" {
            found.insert(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn the_architecture_map_names_every_module_under_host_src_and_nothing_else() {
    let mut code = BTreeSet::new();
    in_the_code(&root().join("host/src"), "", &mut code);
    let map = mapped();
    let missing: Vec<_> = code.difference(&map).collect();
    let gone: Vec<_> = map.difference(&code).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "ARCHITECTURE.md's map lacks {missing:?} and names {gone:?}, which is not under host/src"
    );
}

#[test]
fn the_map_reader_follows_folders_and_skips_continuation_lines() {
    assert_eq!(
        anchor("From an SQS queue: many hosts on one queue"),
        "from-an-sqs-queue-many-hosts-on-one-queue"
    );
    assert_eq!(
        anchor("Throughput, side by side: bench/run.sh"),
        "throughput-side-by-side-benchrunsh"
    );
    assert_eq!(
        links("see [a](b.md) and `[c](d.md)` and [e](f.md#g)"),
        ["b.md", "f.md#g"]
    );
}

/// The `WIDGET_HOST_*` names in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("WIDGET_HOST_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        // `WIDGET_HOST_<FLAG>` in prose names the pattern, not a setting.
        if name.len() > "WIDGET_HOST_".len() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_setting_in_the_deployment_kit_is_a_flag_of_run() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_widget-host"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let flags = variables(&String::from_utf8_lossy(&help.stdout));
    assert!(flags.contains("WIDGET_HOST_MAX_CONCURRENCY"), "{flags:?}");
    let mut checked = 0;
    for file in [
        "deploy/systemd/widget-host.env",
        "deploy/container/Containerfile",
        "deploy/kubernetes/deployment.yaml",
        "docs/deploying.md",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for name in variables(&text) {
            // Variables the host reads itself, not flags.
            if ["WIDGET_HOST_POOL_RESET", "WIDGET_HOST_TEST_"]
                .iter()
                .any(|own| name.starts_with(own))
            {
                continue;
            }
            assert!(flags.contains(&name), "{file}: {name} is no flag of `run`");
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "the kit sets its flags from the environment ({checked})"
    );
}
