//! `sprite-env checkpoints create|list|info|restore`.

use sprites_api::checkpoint::{Checkpoint, CreateCheckpointRequest};

use crate::cli::{CheckpointCommand, CreateArgs, InfoArgs, ListArgs, RestoreArgs};
use crate::client::Client;
use crate::error::Error;
use crate::progress;
use crate::table::table;
use crate::Streams;

pub async fn run(
    client: &Client,
    command: CheckpointCommand,
    io: &mut Streams<'_>,
) -> Result<(), Error> {
    match command {
        CheckpointCommand::Create(args) => create(client, args, io).await,
        CheckpointCommand::List(args) => list(client, args, io).await,
        CheckpointCommand::Info(args) => info(client, args, io).await,
        CheckpointCommand::Restore(args) => restore(client, args, io).await,
    }
}

async fn create(client: &Client, args: CreateArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let request = CreateCheckpointRequest {
        comment: args.comment,
    };
    progress::follow(client, "/v1/checkpoint", &request, "checkpoint", io.out).await
}

async fn list(client: &Client, args: ListArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let checkpoints: Vec<Checkpoint> = client.get_json("/v1/checkpoints").await?;
    if args.json {
        writeln!(io.out, "{}", pretty(&checkpoints)?)?;
    } else if checkpoints.is_empty() {
        writeln!(io.err, "no checkpoints")?;
    } else {
        write!(io.out, "{}", list_table(&checkpoints))?;
    }
    Ok(())
}

async fn info(client: &Client, args: InfoArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    let checkpoint: Checkpoint = client
        .get_json(&format!("/v1/checkpoints/{}", args.id))
        .await
        .map_err(|e| no_checkpoint(e, &args.id))?;
    if args.json {
        writeln!(io.out, "{}", pretty(&checkpoint)?)?;
    } else {
        write!(io.out, "{}", info_text(&checkpoint))?;
    }
    Ok(())
}

async fn restore(client: &Client, args: RestoreArgs, io: &mut Streams<'_>) -> Result<(), Error> {
    // The sprite restarts during the restore, this process included: say
    // so first, since the shell may vanish before the last line arrives.
    writeln!(
        io.err,
        "restoring {}: every process of this sprite restarts, this one too",
        args.id
    )?;
    io.err.flush()?;
    progress::follow(
        client,
        &format!("/v1/checkpoints/{}/restore", args.id),
        &serde_json::json!({}),
        "restore",
        io.out,
    )
    .await
    .map_err(|e| no_checkpoint(e, &args.id))
}

/// A 404 about a checkpoint id, said plainly.
fn no_checkpoint(err: Error, id: &str) -> Error {
    if err.is_not_found() {
        Error::Failed(format!("no checkpoint {id}"))
    } else {
        err
    }
}

fn pretty<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|e| Error::BadAnswer(e.to_string()))
}

/// `ID` (with `*` before the current one), `CREATED`, `COMMENT`.
pub fn list_table(checkpoints: &[Checkpoint]) -> String {
    let rows: Vec<Vec<String>> = checkpoints
        .iter()
        .map(|c| {
            let mark = if c.is_current == Some(true) { '*' } else { ' ' };
            vec![
                format!("{mark} {}", c.id),
                c.create_time.clone(),
                comment_cell(c),
            ]
        })
        .collect();
    table(&["  ID", "CREATED", "COMMENT"], &rows)
}

/// The comment on one line; `(auto)` for an automatic one without.
fn comment_cell(c: &Checkpoint) -> String {
    match c.comment.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => text.replace(char::is_control, " "),
        None if c.is_auto == Some(true) => "(auto)".to_string(),
        None => String::new(),
    }
}

/// `key: value` lines, the keys padded to one width.
pub fn info_text(c: &Checkpoint) -> String {
    let current = if c.is_current == Some(true) {
        " (current)"
    } else {
        ""
    };
    let mut fields = vec![
        ("id", format!("{}{current}", c.id)),
        ("created", c.create_time.clone()),
    ];
    if let Some(source) = &c.source_id {
        fields.push(("source", source.clone()));
    }
    if let Some(comment) = c.comment.as_deref().filter(|s| !s.is_empty()) {
        fields.push(("comment", comment.replace(char::is_control, " ")));
    }
    if c.is_auto == Some(true) {
        fields.push(("auto", "yes".to_string()));
    }
    let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(id: &str, comment: Option<&str>) -> Checkpoint {
        Checkpoint {
            id: id.into(),
            create_time: "2026-01-05T10:30:00Z".into(),
            source_id: None,
            history: Vec::new(),
            comment: comment.map(str::to_string),
            is_auto: None,
            is_current: None,
        }
    }

    #[test]
    fn table_marks_the_current_checkpoint() {
        let mut v11 = checkpoint("v11", Some("before\nupgrade"));
        v11.is_current = Some(true);
        let mut v2 = checkpoint("v2", None);
        v2.is_auto = Some(true);
        v2.is_current = Some(false);
        let v1 = checkpoint("v1", None);
        assert_eq!(
            list_table(&[v11, v2, v1]),
            "  ID   CREATED               COMMENT\n\
             * v11  2026-01-05T10:30:00Z  before upgrade\n  \
               v2   2026-01-05T10:30:00Z  (auto)\n  \
               v1   2026-01-05T10:30:00Z\n"
        );
    }

    #[test]
    fn info_lists_what_is_known() {
        let mut c = checkpoint("v3", Some("x"));
        c.source_id = Some("v2".into());
        c.is_current = Some(true);
        assert_eq!(
            info_text(&c),
            "id:      v3 (current)\n\
             created: 2026-01-05T10:30:00Z\n\
             source:  v2\n\
             comment: x\n"
        );
        assert_eq!(
            info_text(&checkpoint("v0", None)),
            "id:      v0\ncreated: 2026-01-05T10:30:00Z\n"
        );
    }

    #[test]
    fn a_404_names_the_checkpoint() {
        let e = Error::from_answer(404, br#"{"error":"not_found","message":"whatever"}"#);
        assert_eq!(no_checkpoint(e, "v9").to_string(), "no checkpoint v9");
        let e = Error::from_answer(409, br#"{"error":"conflict","message":"busy"}"#);
        assert_eq!(no_checkpoint(e, "v9").to_string(), "busy");
    }
}
