//! `new-handler`: write a ready handler project in Rust, Python or
//! JavaScript: the WIT, a complete handler of the widget contract that
//! passes `check` (the built-in one's source for Rust, the example handlers
//! for Python and JavaScript), its build script, a `cases/` folder with an
//! example case, a sample `request.json`, and a README. The files are built
//! into the binary.

use super::UsageError;
use anyhow::Context as _;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host new-handler --lang rust my-handler
  widget-host new-handler --lang rust --minimal my-handler      # one short file to start from
  widget-host new-handler --lang python my-handler && cd my-handler && ./build.sh
  widget-host new-handler --lang javascript my-handler && cd my-handler && npm ci && node build.mjs";

/// `new-handler`'s flags.
#[derive(Debug, Clone, Args)]
pub struct NewHandlerArgs {
    /// The language of the handler.
    #[arg(long, value_enum)]
    lang: Language,

    /// A minimal handler instead of a complete one: one short file that
    /// maps a request to a put or a delete; `check` lists what the widget
    /// contract asks beyond it.
    #[arg(long)]
    minimal: bool,

    /// The folder to write the project into (new, or empty).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// The languages there are templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Language {
    Rust,
    Python,
    Javascript,
}

/// A file of a template: its path in the project, its text, and whether it
/// is a script to run.
type File = (&'static str, &'static str, bool);

const WIT: &str = include_str!("../../../wit/handler.wit");
const README: &str = include_str!("../../../guest/templates/README.md");
/// A request to try a handler on: `widget-host invoke handler.wasm request.json`.
const REQUEST: &str = include_str!("../../../guest/templates/request.json");

const RUST: [File; 8] = [
    (
        "Cargo.toml",
        include_str!("../../../guest/templates/rust/Cargo.toml"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../guest/templates/rust/build.sh"),
        true,
    ),
    (
        "cases/example.json",
        include_str!("../../../guest/templates/rust/cases/example.json"),
        false,
    ),
    ("src/lib.rs", include_str!("../../../guest/src/lib.rs"), false),
    (
        "src/component.rs",
        include_str!("../../../guest/src/component.rs"),
        false,
    ),
    ("src/plan.rs", include_str!("../../../guest/src/plan.rs"), false),
    (
        "src/request.rs",
        include_str!("../../../guest/src/request.rs"),
        false,
    ),
    (
        "src/widget.rs",
        include_str!("../../../guest/src/widget.rs"),
        false,
    ),
];

const PYTHON: [File; 3] = [
    (
        "handler.py",
        include_str!("../../../guest/python/handler.py"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../../guest/templates/python/build.sh"),
        true,
    ),
    (
        "cases/example.json",
        include_str!("../../../guest/python/cases/label-length.json"),
        false,
    ),
];

const JAVASCRIPT: [File; 6] = [
    (
        "handler.js",
        include_str!("../../../guest/javascript/handler.js"),
        false,
    ),
    (
        "build.mjs",
        include_str!("../../../guest/templates/javascript/build.mjs"),
        false,
    ),
    (
        "package.json",
        include_str!("../../../guest/javascript/package.json"),
        false,
    ),
    (
        "package-lock.json",
        include_str!("../../../guest/javascript/package-lock.json"),
        false,
    ),
    (".npmrc", include_str!("../../../guest/javascript/.npmrc"), false),
    (
        "cases/example.json",
        include_str!("../../../guest/javascript/cases/attribute-count.json"),
        false,
    ),
];

/// The minimal handlers: one file each, the rest of the project as the
/// complete one's (the Rust template's example case, which they pass).
const MINIMAL_CASE: File = (
    "cases/example.json",
    include_str!("../../../guest/templates/rust/cases/example.json"),
    false,
);
const MINIMAL_RUST: [File; 4] = [
    RUST[0],
    RUST[1],
    MINIMAL_CASE,
    (
        "src/lib.rs",
        include_str!("../../../guest/templates/minimal/lib.rs"),
        false,
    ),
];
const MINIMAL_PYTHON: [File; 3] = [
    (
        "handler.py",
        include_str!("../../../guest/templates/minimal/handler.py"),
        false,
    ),
    PYTHON[1],
    MINIMAL_CASE,
];
const MINIMAL_JAVASCRIPT: [File; 6] = [
    (
        "handler.js",
        include_str!("../../../guest/templates/minimal/handler.js"),
        false,
    ),
    JAVASCRIPT[1],
    JAVASCRIPT[2],
    JAVASCRIPT[3],
    JAVASCRIPT[4],
    MINIMAL_CASE,
];

impl Language {
    fn files(self, minimal: bool) -> &'static [File] {
        match (self, minimal) {
            (Language::Rust, false) => &RUST,
            (Language::Python, false) => &PYTHON,
            (Language::Javascript, false) => &JAVASCRIPT,
            (Language::Rust, true) => &MINIMAL_RUST,
            (Language::Python, true) => &MINIMAL_PYTHON,
            (Language::Javascript, true) => &MINIMAL_JAVASCRIPT,
        }
    }

    /// The README's words for this language: its name, the handler's
    /// variation on the contract, the build command.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Language::Rust => ("Rust", " (the built-in handler's own source)", "./build.sh"),
            Language::Python => (
                "Python",
                ", with one variation to show where changes go: it refuses labels over 64 characters",
                "./build.sh",
            ),
            Language::Javascript => (
                "JavaScript",
                ", with one variation to show where changes go: it refuses more than 30 other attributes",
                "npm ci && node build.mjs",
            ),
        }
    }
}

pub(super) fn execute(args: &NewHandlerArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = &args.dir;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(UsageError(format!("{} exists and is not an empty folder", dir.display())).into());
    }
    let name = project_name(dir);
    let (language, variation, build) = args.lang.words();
    let variation = match args.minimal {
        false => variation,
        true => {
            " in few lines: it stores each create or update as the widget's own fields, removes a widget on delete, and rejects what is not a widget request. `widget-host check handler.wasm` lists what the full contract asks beyond it (`new-handler` without `--minimal` writes a complete handler)"
        }
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{language}}", language)
            .replace("{{variation}}", variation)
            .replace("{{build}}", build)
            // The Rust sources find the WIT beside them, not in the repo.
            .replace(r#"path: "../wit""#, r#"path: "wit""#)
    };
    write(dir, "wit/handler.wit", WIT, false)?;
    let readme = match args.minimal {
        false => fill(README),
        true => fill(README).replace("a complete handler", "a minimal handler"),
    };
    write(dir, "README.md", &readme, false)?;
    for (path, text, script) in args.lang.files(args.minimal) {
        // The JavaScript package is named for the project, not for the
        // example it was made from.
        let text = fill(text).replace(r#""name": "widget-handler-js""#, &format!(r#""name": "{name}""#));
        write(dir, path, &text, *script)?;
    }
    write(dir, "request.json", REQUEST, false)?;
    writeln!(
        out,
        "Wrote a {language} handler to {}. Next:\n  cd {} && {build} && widget-host check handler.wasm --cases cases",
        dir.display(),
        dir.display()
    )?;
    Ok(())
}

/// The project's name: the folder's name, as a crate name.
fn project_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    match name.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => name.to_owned(),
        _ => format!("handler-{name}").trim_end_matches('-').to_owned(),
    }
}

fn write(dir: &Path, path: &str, text: &str, script: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = dir.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
    if script {
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_name_becomes_a_crate_name() {
        assert_eq!(project_name(Path::new("/tmp/My Handler")), "my-handler");
        assert_eq!(project_name(Path::new("2fast")), "handler-2fast");
        assert_eq!(project_name(Path::new("ok_name")), "ok-name");
    }

    #[test]
    fn a_javascript_project_is_named_for_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("label-rules");
        let args = NewHandlerArgs {
            lang: Language::Javascript,
            minimal: false,
            dir: project.clone(),
        };
        execute(&args, &mut Vec::new()).unwrap();
        for file in ["package.json", "package-lock.json"] {
            let text = std::fs::read_to_string(project.join(file)).unwrap();
            assert!(text.contains(r#""name": "label-rules""#), "{file}");
            assert!(!text.contains("widget-handler-js"), "{file}");
        }
    }

    #[test]
    fn the_rust_template_finds_its_wit_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("mine");
        let args = NewHandlerArgs {
            lang: Language::Rust,
            minimal: false,
            dir: project.clone(),
        };
        execute(&args, &mut Vec::new()).unwrap();
        let component = std::fs::read_to_string(project.join("src/component.rs")).unwrap();
        assert!(component.contains(r#"path: "wit""#), "{component}");
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"name = "mine""#));
        assert!(project.join("wit/handler.wit").is_file());
        let request: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(project.join("request.json")).unwrap()).unwrap();
        assert_eq!(request["type"], "create");
        // A second time into the same folder is refused.
        assert!(execute(&args, &mut Vec::new()).is_err());
    }
}
