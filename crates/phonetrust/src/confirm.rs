//! Confirmation of changes to what phones trust (trust lists, their signers, the
//! certificates they list, TVS trust): every such command asks, takes `-y`, and refuses
//! when there is no terminal to ask on and no `-y` — a script never changes trust by
//! accident, and never hangs on a question nobody sees.

use std::io::{BufRead, IsTerminal};

use anyhow::{Result, bail};

/// Ask `question` on the terminal; true for "y". With `yes`, prints the question and
/// "y" and goes on. Without a terminal on standard input, refuses (naming `-y`).
pub(crate) fn ask(question: &str, yes: bool) -> Result<bool> {
    out!("{question}");
    if yes {
        outln!("y");
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        outln!();
        bail!(
            "this changes what phones trust and needs confirmation, but standard input is not a terminal to ask on: nothing was changed; repeat with -y to confirm"
        );
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().eq_ignore_ascii_case("y"))
}

/// The seeds' "This operation <what>. Do you want to continue? (y/n):"; on "n" says what
/// stays as it was.
pub(crate) fn operation(what: &str, yes: bool, unchanged: &str) -> Result<bool> {
    let ok = ask(
        &format!("This operation {what}. Do you want to continue? (y/n):"),
        yes,
    )?;
    if !ok {
        outln!("Aborted: {unchanged}");
    }
    Ok(ok)
}
