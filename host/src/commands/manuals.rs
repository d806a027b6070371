//! `completions SHELL` and `man`: shell completions and a man page made
//! from the command line's own definition (clap_complete, clap_mangen), so
//! they never drift from the flags. The caller hands the definition in:
//! it is the binary's, environment variables included.

use clap::Args;
use std::io::Write;

pub(super) const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  widget-host completions bash > ~/.local/share/bash-completion/completions/widget-host
  widget-host completions zsh > ~/.zfunc/_widget-host
  widget-host completions fish > ~/.config/fish/completions/widget-host.fish";

pub(super) const MAN_EXAMPLES: &str = "\
Examples:
  widget-host man > widget-host.1 && man ./widget-host.1
  sudo sh -c 'widget-host man > /usr/local/share/man/man1/widget-host.1'";

/// `completions`' flags.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    shell: clap_complete::Shell,
}

/// Writes completions for `args.shell` from `definition` to `out`.
pub(super) fn completions(args: &CompletionsArgs, mut definition: clap::Command, out: &mut dyn Write) {
    let name = definition.get_name().to_owned();
    clap_complete::generate(args.shell, &mut definition, name, out);
}

/// Writes the man page (roff) of `definition`, its subcommands' flags
/// included, to `out`.
pub(super) fn man(definition: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let definition = definition.subcommand_help_heading("COMMANDS");
    let page = clap_mangen::Man::new(definition.clone());
    page.render(out)?;
    // Each command's flags, as its --help gives them.
    for sub in definition.get_subcommands() {
        let title = format!("{}-{}", definition.get_name(), sub.get_name());
        writeln!(out, ".SH \"{}\"", title.to_uppercase())?;
        clap_mangen::Man::new(sub.clone()).render_options_section(out)?;
    }
    Ok(())
}
