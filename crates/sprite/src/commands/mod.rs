//! One module per command; `run` dispatches.

mod api;
mod checkpoint;
mod console;
mod cp;
mod create;
mod destroy;
mod exec;
mod info;
mod list;
mod login;
mod policy;
mod proxy;
mod services;
mod sessions;
mod url;
mod usage;
mod use_sprite;

use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use sprites_client::{Client, SpriteHandle};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{self, Endpoint};
use crate::sprite_file;

/// Run the command line; answers the exit status.
pub async fn run(cli: Cli) -> Result<i32> {
    let ctx = Context::from_env(cli.global)?;
    match cli.command {
        Command::Login(args) => login::run(&ctx, args).await,
        Command::Create(args) => create::run(&ctx, args).await,
        Command::Use(args) => use_sprite::run(&ctx, args).await,
        Command::List(args) => list::run(&ctx, args).await,
        Command::Info => info::run(&ctx).await,
        Command::Evict => info::evict(&ctx).await,
        Command::Exec(args) => exec::run(&ctx, args).await,
        Command::Console => console::run(&ctx).await,
        Command::Cp(args) => cp::run(&ctx, args).await,
        Command::Sessions { command } => sessions::run(&ctx, command).await,
        Command::Checkpoint { command } => checkpoint::run(&ctx, command).await,
        Command::Restore(args) => checkpoint::restore(&ctx, args).await,
        Command::Services { command } => services::run(&ctx, command).await,
        Command::Usage(args) => usage::run(&ctx, args).await,
        Command::Policy { command } => policy::run(&ctx, command).await,
        Command::Tokens { command } => usage::tokens(&ctx, command).await,
        Command::Url { command } => url::run(&ctx, command).await,
        Command::Proxy(args) => proxy::run(&ctx, args).await,
        Command::Destroy(args) => destroy::run(&ctx, args).await,
        Command::Api(args) => api::run(&ctx, args).await,
    }
}

/// What every command may need: the global flags, the home and working
/// directories.
pub struct Context {
    pub global: GlobalArgs,
    pub home: Option<PathBuf>,
    pub cwd: PathBuf,
}

impl Context {
    fn from_env(global: GlobalArgs) -> Result<Self> {
        Ok(Context {
            global,
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            cwd: std::env::current_dir().context("reading the current directory")?,
        })
    }

    pub fn home(&self) -> Result<&PathBuf> {
        self.home
            .as_ref()
            .ok_or_else(|| anyhow!("HOME is not set, so there is no ~/.sprites/config.json"))
    }

    pub fn saved_config(&self) -> Result<Option<config::Config>> {
        match &self.home {
            Some(home) => config::load(home),
            None => Ok(None),
        }
    }

    pub fn endpoint(&self) -> Result<Endpoint> {
        let saved = self.saved_config()?;
        config::resolve(
            self.global.api_url.as_deref(),
            self.global.token.as_deref(),
            saved.as_ref(),
        )
    }

    pub fn client(&self) -> Result<Client> {
        let endpoint = self.endpoint()?;
        Ok(Client::new(&endpoint.url, endpoint.token)?)
    }

    /// The selected sprite's name: `-s`, else `.sprite`.
    pub fn sprite_name(&self) -> Result<String> {
        sprite_file::resolve_name(self.global.sprite.as_deref(), &self.cwd)
    }

    /// A client and a handle on the selected sprite.
    pub fn sprite(&self) -> Result<SpriteHandle> {
        let name = self.sprite_name()?;
        Ok(self.client()?.sprite(name))
    }
}

/// An API error about the sprite `name`, with 404 said plainly.
pub fn sprite_error(err: sprites_client::Error, name: &str) -> anyhow::Error {
    if err.is_not_found() {
        anyhow!("no sprite named {name}")
    } else {
        err.into()
    }
}

/// A plain left-aligned table: the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                out.push_str(&format!("{cell:<pad$}  "));
            }
        }
        out.push('\n');
    }
    out
}

/// `Key:   value` lines, the values aligned.
pub fn fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["alpha".to_string(), "running".to_string(), "x".to_string()],
            vec!["b".to_string(), "cold".to_string(), "yy".to_string()],
        ];
        assert_eq!(
            table(&["NAME", "STATUS", "CREATED"], &rows),
            "NAME   STATUS   CREATED\nalpha  running  x\nb      cold     yy\n"
        );
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[("ID", "v1".into()), ("Comment", "x".into())]),
            "ID:      v1\nComment: x\n"
        );
    }

    #[test]
    fn a_404_names_the_sprite() {
        let err = sprites_client::Error::from_response(
            404,
            br#"{"error":"not_found","message":"whatever"}"#,
        );
        assert_eq!(sprite_error(err, "x").to_string(), "no sprite named x");
        let other = sprites_client::Error::from_response(500, b"boom");
        assert_eq!(sprite_error(other, "x").to_string(), "boom");
    }
}
