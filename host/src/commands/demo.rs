//! `demo`: produce requests into a fresh local folder, add three the
//! handler must refuse, process them all with the built-in handler, and say
//! where to look.

use super::Controls;
use crate::aws::Clients;
use crate::producer::write::{Pacing, now_ms, write_requests};
use crate::retry::Retry;
use crate::runner::{self, Config};
use crate::sink;
use crate::source::{NewRequest, Place};
use anyhow::Context as _;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const EXAMPLES: &str = "\
Examples:
  widget-host demo
  widget-host demo --requests 5000 --dir /tmp/widgets-demo";

/// `demo`'s flags.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How many requests to produce.
    #[arg(long, default_value_t = crate::producer::DEFAULT_REQUESTS)]
    requests: u64,

    /// The folder to work in (default: a fresh one in the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Seed of the generator. Fixed unless given (`produce`'s is drawn):
    /// every demo shows the same requests.
    #[arg(long, default_value_t = 2022)]
    seed: u64,
}

/// Three requests the handler must refuse, to show dead-lettering: an
/// empty file, an unknown type, a create without an owner.
const BAD_REQUESTS: [&str; 3] = [
    "",
    r#"{"type":"bad","requestId":"r","widgetId":"w","owner":"Sue Smith"}"#,
    r#"{"type":"create","requestId":"r","widgetId":"bad"}"#,
];

/// The demo's log file, in its folder.
const LOG_FILE: &str = "widget-host.log";

impl DemoArgs {
    /// Settles the demo's folder (a fresh temporary one unless given), so
    /// that its log can go there; returns the log's path.
    pub(super) fn settle_folder(&mut self) -> anyhow::Result<PathBuf> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => tempfile::Builder::new()
                .prefix("widget-host-demo-")
                .tempdir()
                .context("cannot create the demo folder")?
                .keep(),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.dir = Some(dir.clone());
        Ok(dir.join(LOG_FILE))
    }
}

pub(super) async fn execute(args: &DemoArgs, controls: Controls, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = args.dir.clone().context("the demo folder is not set")?;
    let requests = dir.join("requests");
    let widgets = dir.join("widgets");
    let start_ms = now_ms();
    let pacing = Pacing {
        count: args.requests,
        delay: Duration::ZERO,
        max_runtime: None,
    };
    let place = Place::Dir(requests.clone());
    let mut target = place
        .open_writer(
            &Clients::new(Default::default()),
            Retry::new(controls.stop.clone()),
        )
        .await?;
    write_requests(
        target.as_mut(),
        args.seed,
        start_ms,
        &pacing,
        &Default::default(),
        &controls.stop,
    )
    .await?;
    for (i, body) in BAD_REQUESTS.iter().enumerate() {
        // Keys just after the first produced request, so they sort among them.
        let bad = NewRequest {
            key: format!("{:013}", start_ms + 1 + i as u64),
            body: (*body).to_owned(),
            ordering_key: format!("bad-{i}"),
            id: format!("bad-{i}"),
        };
        target.write(bad, true).await?;
    }
    writeln!(
        out,
        "Produced {} requests (seed {}) into {}; processing them with the built-in handler...",
        args.requests + BAD_REQUESTS.len() as u64,
        args.seed,
        requests.display()
    )?;
    // A run's configuration, as `run` makes it, with its defaults.
    let mut config = Config::new(place, sink::Spec::Dir(widgets.clone()));
    config.options.until_empty = true;
    let summary = runner::run(config, controls.stop, controls.reload).await?;
    writeln!(out, "{summary}")?;
    where_to_look(out, &dir, &requests, &widgets)?;
    Ok(())
}

fn where_to_look(out: &mut dyn Write, dir: &Path, requests: &Path, widgets: &Path) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "Where to look:")?;
    writeln!(
        out,
        "  widgets:        {}/widgets/<owner>/<widget id>",
        widgets.display()
    )?;
    writeln!(
        out,
        "  dead letters:   {}/dead-letter/ (each with a .reason file)",
        requests.display()
    )?;
    writeln!(out, "  log:            {}", dir.join(LOG_FILE).display())?;
    writeln!(out, "Run it again on your own requests with:")?;
    writeln!(
        out,
        "  widget-host run --requests-dir {} --widgets-dir {} --until-empty",
        requests.display(),
        widgets.display()
    )
}
