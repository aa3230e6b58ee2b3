//! `phonetrust generate man DIR` and `phonetrust generate completions SHELL`: man pages and
//! shell completions made from the command-line definitions themselves, so they never
//! drift from `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

/// `generate` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GenerateCmd {
    /// Write the man pages (`phonetrust.1`, `phonetrust-serve.1`, …) into DIR.
    Man {
        /// Directory to write into (created when missing).
        dir: PathBuf,
    },
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Run a `generate` command.
pub(crate) fn run(cmd: GenerateCmd) -> Result<ExitCode> {
    match cmd {
        GenerateCmd::Man { dir } => {
            let n = man_pages(&crate::Cli::command(), &dir)?;
            outln!("wrote {n} man pages to {}", dir.display());
        }
        GenerateCmd::Completions { shell } => {
            let mut cmd = crate::Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "phonetrust", &mut out);
            crate::output::write_bytes(&out);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for the command and one for every subcommand (`phonetrust-utils-ctl.1`);
/// how many were written.
fn man_pages(cmd: &clap::Command, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut n = 0;
    // (command, its page name `phonetrust-utils-ctl`, how it is typed `phonetrust utils ctl`)
    let root = cmd.clone().version(env!("CARGO_PKG_VERSION"));
    let mut stack = vec![(root, String::new(), String::new())];
    while let Some((c, page_prefix, bin_prefix)) = stack.pop() {
        let (name, bin) = if page_prefix.is_empty() {
            (c.get_name().to_string(), c.get_name().to_string())
        } else {
            (
                format!("{page_prefix}-{}", c.get_name()),
                format!("{bin_prefix} {}", c.get_name()),
            )
        };
        for sub in c.get_subcommands().filter(|s| !s.is_hide_set()) {
            stack.push((sub.clone(), name.clone(), bin.clone()));
        }
        let page = c.clone().name(name.clone()).bin_name(bin);
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .title(name.to_ascii_uppercase())
            .render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        n += 1;
    }
    Ok(n)
}
