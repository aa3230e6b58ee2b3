//! The audit log, seen from the CLI: every command that changes something is recorded
//! after it ran, with the account that ran it, the node, the command, its arguments
//! (secrets masked) and how it ended ([`phonetrust_store::audit`] holds the log).
//! `show audit [--since …]` prints it.

use std::process::ExitCode;

use phonetrust_store::audit::AuditEntry;

use crate::node::Node;

/// Commands (and command groups) that change nothing in the node's store: not recorded.
/// Everything else is (a new command is audited until it is listed here).
const READ_ONLY: [&str; 20] = [
    "serve",
    "doctor",
    "show",
    "report",
    "run sql",
    "tlv",
    "sgn",
    "cnf",
    "phone-sim",
    "ctl-client",
    "bench",
    "generate",
    "phone show",
    "phone list",
    "profile list",
    "profile show",
    "cluster group list",
    "cluster pool list",
    "user list",
    "user token list",
];

/// Options whose value is a secret: masked in the recorded arguments.
const SECRET_OPTIONS: [&str; 4] = ["--auth-string", "--pin", "--password", "--token-pin"];

/// The subcommand words of a parsed command line, e.g. `set cert regen`.
pub(crate) fn command_path(m: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut cur = m;
    while let Some((name, sub)) = cur.subcommand() {
        words.push(name.to_string());
        cur = sub;
    }
    words.join(" ")
}

/// Whether the command at `path` changes something (and so is recorded).
pub(crate) fn is_change(path: &str) -> bool {
    !path.is_empty()
        && !READ_ONLY
            .iter()
            .any(|r| path == *r || path.starts_with(&format!("{r} ")))
}

/// The arguments as given, secrets masked (`--auth-string 1234` and
/// `--auth-string=1234` both become `--auth-string ****`).
pub(crate) fn masked_args(args: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for a in args {
        if std::mem::take(&mut mask_next) {
            out.push("****".into());
            continue;
        }
        if let Some((opt, _)) = a.split_once('=')
            && SECRET_OPTIONS.contains(&opt)
        {
            out.push(format!("{opt}=****"));
            continue;
        }
        if SECRET_OPTIONS.contains(&a.as_str()) {
            mask_next = true;
        }
        out.push(if a.contains(char::is_whitespace) {
            format!("{a:?}")
        } else {
            a.clone()
        });
    }
    out.join(" ")
}

/// Who runs this process: the login name, with the sudo caller when run through sudo.
pub(crate) fn actor() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let name = std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|n| !n.is_empty());
    let base = match (name, uid) {
        (Some(n), _) => n,
        (None, Some(u)) => format!("uid {u}"),
        (None, None) => "unknown".into(),
    };
    match std::env::var("SUDO_USER") {
        Ok(s) if !s.is_empty() && s != base => format!("{base} (sudo by {s})"),
        _ => base,
    }
}

/// How the command ended, as recorded.
pub(crate) fn outcome(result: &anyhow::Result<ExitCode>) -> String {
    match result {
        Ok(c) if *c == ExitCode::SUCCESS => "ok".into(),
        Ok(_) => "failed (exit status 1)".into(),
        Err(e) => format!("failed: {e:#}"),
    }
}

/// Record the command that just ran. A node without a store (nothing was changed) records
/// nothing; a store that cannot be written is reported on standard error, not hidden.
pub(crate) fn record(node: &Node, path: &str, args: &[String], result: &anyhow::Result<ExitCode>) {
    if !phonetrust_store::identity::exists(&node.data) {
        return;
    }
    let entry = AuditEntry {
        at_ms: time::OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .div_euclid(1_000_000) as i64,
        actor: actor(),
        node: phonetrust_store::identity::load(&node.data)
            .ok()
            .and_then(|id| id.node().map(|n| n.host.clone()))
            .unwrap_or_default(),
        action: path.to_string(),
        detail: masked_args(args),
        result: outcome(result),
    };
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let db = node.db().await?;
                db.audit(&entry).await?;
                anyhow::Ok(())
            })
        });
    if let Err(e) = done {
        eprintln!("phonetrust: warning: the change was not written to the audit log: {e:#}");
    }
}

/// `--since`: a time (`2026-12-01T10:00Z`, as elsewhere) or a span back from now
/// (`30m`, `24h`, `7d`). Unix seconds.
pub(crate) fn parse_since(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Some((n, unit)) = t
        .char_indices()
        .last()
        .map(|(i, c)| (&t[..i], c))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        let n: i64 = n.parse().map_err(|_| format!("{s}: too large"))?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(format!("{s}: a span ends in s, m, h or d (e.g. 24h, 7d)")),
        };
        return Ok(crate::fsutil::now() - n.saturating_mul(secs));
    }
    phonetrust_store::model::parse_time(t)
        .map_err(|e| format!("{e} (or a span back from now: 30m, 24h, 7d)"))
}

/// `show audit`.
pub(crate) async fn show(
    node: &Node,
    since: Option<i64>,
    limit: u32,
    csv: bool,
) -> anyhow::Result<ExitCode> {
    let db = node.db().await?;
    let since_ms = since.unwrap_or(0).saturating_mul(1_000);
    let entries = db.audit_since(since_ms, limit.max(1)).await?;
    let time = |ms: i64| phonetrust_store::model::format_time(ms.div_euclid(1_000));
    if csv {
        outln!("time,actor,node,action,arguments,result");
        for e in &entries {
            let f: Vec<String> = [
                time(e.at_ms),
                e.actor.clone(),
                e.node.clone(),
                e.action.clone(),
                e.detail.clone(),
                e.result.clone(),
            ]
            .iter()
            .map(|c| crate::report::csv_field(c))
            .collect();
            outln!("{}", f.join(","));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        outln!(
            "No changes recorded{}",
            if since.is_some() { " in that time" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = crate::table::Table::new(&["Time", "Who", "Node", "Change", "Arguments", "Result"]);
    for e in &entries {
        t.row(vec![
            time(e.at_ms),
            e.actor.clone(),
            e.node.clone(),
            e.action.clone(),
            e.detail.clone(),
            e.result.clone(),
        ]);
    }
    out!("{}", t.render());
    outln!("{} change(s)", entries.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn read_only_commands_exist_and_changes_are_recorded() {
        // Every listed read-only command is a real command path.
        let cmd = crate::Cli::command();
        for r in READ_ONLY {
            let mut c = &cmd;
            for w in r.split(' ') {
                c = c
                    .find_subcommand(w)
                    .unwrap_or_else(|| panic!("{r}: no such command"));
            }
        }
        for change in [
            "init",
            "set cert regen",
            "set cert delete trust",
            "phone add",
            "phone capf",
            "phone import",
            "phone delete",
            "utils ctl update",
            "cluster add-node",
            "cluster group add",
            "profile set",
        ] {
            assert!(is_change(change), "{change}");
        }
        for read in [
            "show itl",
            "show cert expiry",
            "phone list",
            "run sql",
            "serve",
        ] {
            assert!(!is_change(read), "{read}");
        }
        // A prefix is a whole word: `phone listing` would not be `phone list`.
        assert!(is_change("phone listing"));
        assert!(!is_change(""));
    }

    #[test]
    fn command_path_of_parsed_lines() {
        let m = crate::Cli::command()
            .try_get_matches_from(["phonetrust", "set", "cert", "regen", "CAPF", "--yes"])
            .unwrap();
        assert_eq!(command_path(&m), "set cert regen");
    }

    #[test]
    fn since_takes_a_time_or_a_span() {
        let now = crate::fsutil::now();
        let d = parse_since("7d").unwrap();
        assert!((now - 7 * 86_400 - d).abs() <= 2);
        let h = parse_since("24h").unwrap();
        assert!((now - 86_400 - h).abs() <= 2);
        assert_eq!(parse_since("2026-12-01T10:00Z").unwrap(), 1_796_119_200);
        assert!(parse_since("7w").unwrap_err().contains("24h"));
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            masked_args(&args(
                "phone capf SEP1 --auth auth-string --auth-string 1234"
            )),
            "phone capf SEP1 --auth auth-string --auth-string ****"
        );
        assert_eq!(
            masked_args(&args("utils ctl update --pin=secret --yes")),
            "utils ctl update --pin=**** --yes"
        );
        assert_eq!(
            masked_args(&["phone".into(), "set".into(), "a b".into()]),
            "phone set \"a b\""
        );
    }
}
