//! `phonetrust user add|list|passwd|enable|disable|delete`: the accounts of the web
//! administration and the REST API ([`phonetrust_rules::accounts`]). There is no built-in
//! account. Passwords are asked on the terminal (twice, not echoed), or read from a file
//! or standard input for automation; never taken on the command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use phonetrust_rules::accounts::{self, Role};
use phonetrust_store::model::format_time;

use crate::node::Node;

/// `phonetrust user ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCmd {
    /// Add an account: `user add alice --role admin` (asks for the password).
    Add {
        /// Login name: lower-case letters, digits, '.', '_', '-'.
        name: String,
        /// admin (everything), operator (phones and their operations), read-only.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List the accounts: role, state (active, disabled, locked), when made, last login.
    List,
    /// Set an account's password (and clear its login lock).
    Passwd {
        /// The account.
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Let a disabled account log in again.
    Enable {
        /// The account.
        name: String,
    },
    /// Stop an account from logging in (its sessions end at their next request).
    Disable {
        /// The account.
        name: String,
    },
    /// REST API tokens: `user token create NAME [--label L]` (shown once),
    /// `user token list [NAME]`, `user token revoke ID`.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Delete an account.
    Delete {
        /// The account.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// `phonetrust user token ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a bearer token for an account (it has the account's role); printed once.
    Create {
        /// The account.
        name: String,
        /// What it is for (e.g. "inventory sync").
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (id, account, label, created, last used), of one account or all.
    List {
        /// Only this account's.
        name: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The id `user token list` prints.
        id: String,
    },
}

/// Where the password comes from (default: asked on the terminal, twice).
#[derive(Debug, Args)]
pub(crate) struct PasswordSource {
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
}

/// Read a line from the terminal without echo.
fn prompt_hidden(prompt: &str) -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context(
            "no terminal to ask the password on: give --password-file FILE or --password-stdin",
        )?;
    let mut w = &tty;
    write!(w, "{prompt}")?;
    w.flush()?;
    let old = tcgetattr(&tty)?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, OptionalActions::Now, &old);
    writeln!(w)?;
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

impl PasswordSource {
    fn read(&self, name: &str) -> Result<String> {
        let first_line = |text: &str| text.lines().next().unwrap_or("").to_string();
        let pw = if let Some(f) = &self.password_file {
            first_line(&std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?)
        } else if self.password_stdin {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        } else {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no terminal to ask the password on: give --password-file FILE or --password-stdin"
                );
            }
            let a = prompt_hidden(&format!("Password for {name}: "))?;
            let b = prompt_hidden("Again: ")?;
            if a != b {
                bail!("the two passwords differ: nothing was changed");
            }
            a
        };
        accounts::check_password(name, &pw).map_err(anyhow::Error::msg)?;
        Ok(pw)
    }
}

/// `phonetrust user ...`.
pub(crate) async fn run(node: &Node, cmd: UserCmd) -> Result<ExitCode> {
    let db = node.db().await?;
    let now = crate::fsutil::now();
    match cmd {
        UserCmd::Add {
            name,
            role,
            password,
        } => {
            let name = accounts::check_name(&name).map_err(anyhow::Error::msg)?;
            if db.account(&name).await?.is_some() {
                bail!(
                    "an account {name} exists already: `phonetrust user passwd {name}` changes its password"
                );
            }
            let pw = password.read(&name)?;
            let hash = accounts::hash_password(&pw).map_err(anyhow::Error::msg)?;
            db.add_account(&name, role.as_str(), &hash, now).await?;
            outln!("Added account {name} ({}).", role.as_str());
        }
        UserCmd::List => {
            let list = db.accounts().await?;
            if list.is_empty() {
                outln!(
                    "No accounts: the web administration serves only its set-up page until one exists (`phonetrust user add NAME --role admin`)."
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut t =
                crate::table::Table::new(&["Name", "Role", "State", "Created", "Last login"]);
            for a in &list {
                let state = if a.disabled {
                    "disabled".to_string()
                } else if a.locked_until > now {
                    format!("locked until {}", format_time(a.locked_until))
                } else {
                    "active".to_string()
                };
                t.row(vec![
                    a.name.clone(),
                    a.role.clone(),
                    state,
                    format_time(a.created_at),
                    if a.last_login_at > 0 {
                        format_time(a.last_login_at)
                    } else {
                        "never".into()
                    },
                ]);
            }
            out!("{}", t.render());
        }
        UserCmd::Passwd { name, password } => {
            if db.account(&name).await?.is_none() {
                bail!("no account {name} (`phonetrust user list` lists them)");
            }
            let pw = password.read(&name)?;
            let hash = accounts::hash_password(&pw).map_err(anyhow::Error::msg)?;
            db.set_account_password(&name, &hash, now).await?;
            outln!("Password of {name} changed.");
        }
        UserCmd::Enable { name } => {
            db.set_account_disabled(&name, false).await?;
            outln!("Account {name} enabled.");
        }
        UserCmd::Disable { name } => {
            db.set_account_disabled(&name, true).await?;
            outln!("Account {name} disabled.");
        }
        UserCmd::Token(TokenCmd::Create { name, label }) => {
            if db.account(&name).await?.is_none() {
                bail!("no account {name} (`phonetrust user list` lists them)");
            }
            let (id, token, sha) = accounts::new_token().map_err(anyhow::Error::msg)?;
            db.add_api_token(&id, &name, &label, &sha, now).await?;
            outln!("{token}");
            outln!(
                "Token {id} for {name}: keep it now, it is not shown again (`Authorization: Bearer <token>`)."
            );
        }
        UserCmd::Token(TokenCmd::List { name }) => {
            let list = db.api_tokens(name.as_deref()).await?;
            let mut t =
                crate::table::Table::new(&["Id", "Account", "Label", "Created", "Last used"]);
            for k in &list {
                t.row(vec![
                    k.id.clone(),
                    k.account.clone(),
                    k.label.clone(),
                    format_time(k.created_at),
                    if k.last_used_at > 0 {
                        format_time(k.last_used_at)
                    } else {
                        "never".into()
                    },
                ]);
            }
            out!("{}", t.render());
        }
        UserCmd::Token(TokenCmd::Revoke { id }) => {
            db.revoke_api_token(&id).await?;
            outln!("Token {id} revoked.");
        }
        UserCmd::Delete { name, yes } => {
            if db.account(&name).await?.is_none() {
                bail!("no account {name} (`phonetrust user list` lists them)");
            }
            if !crate::confirm::operation(
                &format!("deletes the account {name}"),
                yes,
                "the account was kept.",
            )? {
                return Ok(ExitCode::FAILURE);
            }
            db.delete_account(&name).await?;
            outln!("Account {name} deleted.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
