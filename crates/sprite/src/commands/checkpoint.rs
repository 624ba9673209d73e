//! `sprite checkpoint create|list|info|delete` and `sprite restore`.
//!
//! Create and restore print the server's progress lines on stderr as they
//! arrive; stdout gets the result (the new id, the restore message), so that
//! `id=$(sprite checkpoint create)` works.

use anyhow::{anyhow, bail, Result};
use sprites_client::{
    event_text, Checkpoint, Error, EventStream, Snapshot, SpriteHandle, StreamEvent,
};

use super::{fields, sprite_error, table, Context};
use crate::cli::{CheckpointCommand, RestoreArgs};

/// Longest comment shown in the list; `info` shows all of it.
const LIST_COMMENT_CHARS: usize = 60;

pub async fn run(ctx: &Context, command: CheckpointCommand) -> Result<i32> {
    let sprite = ctx.sprite()?;
    match command {
        CheckpointCommand::Create { comment } => create(&sprite, comment.as_deref()).await,
        CheckpointCommand::List => list(&sprite).await,
        CheckpointCommand::Info { id } => info(&sprite, &id).await,
        CheckpointCommand::Delete { id } => delete(&sprite, &id).await,
    }
}

pub async fn restore(ctx: &Context, args: RestoreArgs) -> Result<i32> {
    let sprite = ctx.sprite()?;
    let (events, what) = match (args.id, args.at) {
        (Some(id), _) => match sprite.restore_checkpoint_stream(&id).await {
            Ok(events) => (events, id),
            Err(e) => return Err(checkpoint_error(&sprite, e, &id).await),
        },
        (None, Some(at)) => {
            let snapshots = sprite
                .snapshots()
                .await
                .map_err(|e| sprite_error(e, sprite.name()))?;
            if at == "list" {
                return list_snapshots(&sprite, &snapshots);
            }
            let snap = snapshot_at(&sprite, &snapshots, &at)?;
            let events = sprite
                .restore_snapshot_stream(&snap.id)
                .await
                .map_err(|e| sprite_error(e, sprite.name()))?;
            (events, format!("its snapshot of {}", snap.create_time))
        }
        (None, None) => bail!("name a checkpoint, or a time with --at"),
    };
    let done = follow(events).await?;
    if done.message.is_empty() {
        println!("Restored {} to {what}", sprite.name());
    } else {
        println!("{}", done.message);
    }
    Ok(0)
}

/// The newest of `snapshots` (newest first) taken at or before `at`.
pub(super) fn snapshot_at<'a>(
    sprite: &SpriteHandle,
    snapshots: &'a [Snapshot],
    at: &str,
) -> Result<&'a Snapshot> {
    let target = snapshot_time(at)?;
    snapshots
        .iter()
        .find(|s| s.id.parse::<u64>().is_ok_and(|ms| ms <= target))
        .ok_or_else(|| {
            anyhow!(
                "sprite {} has no replicated snapshot taken at or before {at} (see `sprite restore --at list`)",
                sprite.name()
            )
        })
}

fn list_snapshots(sprite: &SpriteHandle, snapshots: &[Snapshot]) -> Result<i32> {
    if snapshots.is_empty() {
        eprintln!("no replicated snapshots of sprite {}", sprite.name());
        return Ok(0);
    }
    println!("{:<22} {:>12}", "TAKEN", "DATA");
    for s in snapshots {
        println!(
            "{:<22} {:>12}",
            s.create_time,
            format!("{:.1} MiB", s.data_bytes as f64 / 1048576.0)
        );
    }
    Ok(0)
}

/// `--at TIME` as unix milliseconds: RFC 3339, or a duration before now.
fn snapshot_time(at: &str) -> Result<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if let Some(ago) = sprites_api::duration::parse_duration(at) {
        return Ok(now.saturating_sub(ago.as_millis() as u64));
    }
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| anyhow::anyhow!("{at:?} is neither a time (RFC 3339, e.g. 2026-12-03T10:00:00Z) nor a duration ago (e.g. 10m)"))?;
    let ms = u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    // A time to the second means all of that second.
    let whole_second = !at.contains('.');
    Ok(if whole_second { ms + 999 } else { ms })
}

async fn create(sprite: &SpriteHandle, comment: Option<&str>) -> Result<i32> {
    let events = sprite
        .create_checkpoint_stream(comment)
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    let done = follow(events).await?;
    if !done.message.is_empty() {
        eprintln!("{}", done.message);
    }
    println!("{}", sprite.created_checkpoint_id(&done).await?);
    Ok(0)
}

async fn list(sprite: &SpriteHandle) -> Result<i32> {
    let checkpoints = sprite
        .checkpoints()
        .await
        .map_err(|e| sprite_error(e, sprite.name()))?;
    if checkpoints.is_empty() {
        eprintln!("no checkpoints of sprite {}", sprite.name());
    } else {
        print!("{}", checkpoint_table(&checkpoints));
    }
    Ok(0)
}

async fn info(sprite: &SpriteHandle, id: &str) -> Result<i32> {
    match sprite.checkpoint(id).await {
        Ok(checkpoint) => {
            print!("{}", describe(&checkpoint));
            Ok(0)
        }
        Err(e) => Err(checkpoint_error(sprite, e, id).await),
    }
}

async fn delete(sprite: &SpriteHandle, id: &str) -> Result<i32> {
    match sprite.delete_checkpoint(id).await {
        Ok(()) => {
            println!("Deleted checkpoint {id} of sprite {}", sprite.name());
            Ok(0)
        }
        Err(e) if e.status() == Some(409) => Err(anyhow!(
            "cannot delete checkpoint {id} of sprite {}: {e}",
            sprite.name()
        )),
        Err(e) => Err(checkpoint_error(sprite, e, id).await),
    }
}

/// Print each progress line on stderr as it comes; an `error` line fails.
async fn follow(events: EventStream) -> Result<sprites_client::Completion> {
    Ok(events.finish_with(show_progress).await?)
}

fn show_progress(event: &StreamEvent) {
    if event.kind == "info" {
        if let Some(text) = event_text(event) {
            eprintln!("{text}");
        }
    }
}

/// An API error about checkpoint `id` of `sprite`, with a 404 said plainly.
/// The server's 404 does not say whether the sprite or the checkpoint is
/// missing, so the sprite is looked up to tell.
pub async fn checkpoint_error(sprite: &SpriteHandle, err: Error, id: &str) -> anyhow::Error {
    if !err.is_not_found() {
        return err.into();
    }
    match sprite.get().await {
        Err(e) if e.is_not_found() => anyhow!("no sprite named {}", sprite.name()),
        _ => anyhow!("no checkpoint {id} on sprite {}", sprite.name()),
    }
}

fn checkpoint_table(checkpoints: &[Checkpoint]) -> String {
    let rows: Vec<Vec<String>> = checkpoints
        .iter()
        .map(|c| {
            let id = if c.is_current == Some(true) {
                format!("{} (current)", c.id)
            } else {
                c.id.clone()
            };
            vec![id, c.create_time.clone(), list_comment(c)]
        })
        .collect();
    table(&["ID", "CREATED", "COMMENT"], &rows)
}

/// The comment on one line, shortened; automatic checkpoints say so.
fn list_comment(c: &Checkpoint) -> String {
    let one_line: String = c
        .comment
        .as_deref()
        .unwrap_or("")
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    let mut text = one_line.trim().to_string();
    if text.chars().count() > LIST_COMMENT_CHARS {
        text = text.chars().take(LIST_COMMENT_CHARS - 1).collect();
        text.push('…');
    }
    match (c.is_auto == Some(true), text.is_empty()) {
        (true, true) => "(auto)".into(),
        (true, false) => format!("(auto) {text}"),
        (false, _) => text,
    }
}

fn describe(c: &Checkpoint) -> String {
    let mut lines = vec![("ID", c.id.clone()), ("Created", c.create_time.clone())];
    if let Some(comment) = &c.comment {
        lines.push(("Comment", comment.clone()));
    }
    if let Some(source) = &c.source_id {
        lines.push(("Source", source.clone()));
    }
    if let Some(auto) = c.is_auto {
        lines.push(("Automatic", yes_no(auto)));
    }
    if let Some(current) = c.is_current {
        lines.push(("Current", yes_no(current)));
    }
    fields(&lines)
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(json: serde_json::Value) -> Checkpoint {
        serde_json::from_value(json).expect("checkpoint")
    }

    #[test]
    fn the_list_marks_the_current_checkpoint() {
        let list = [
            checkpoint(serde_json::json!({
                "id": "v1", "create_time": "2026-01-05T10:30:00Z",
                "source_id": "v0", "is_current": true
            })),
            checkpoint(serde_json::json!({
                "id": "v0", "create_time": "2026-01-05T10:00:00Z",
                "comment": "clean\nstart", "is_current": false
            })),
        ];
        assert_eq!(
            checkpoint_table(&list),
            "ID            CREATED               COMMENT\n\
             v1 (current)  2026-01-05T10:30:00Z  \n\
             v0            2026-01-05T10:00:00Z  clean start\n"
        );
    }

    #[test]
    fn list_comments_are_short_and_flag_automatic_ones() {
        let long = checkpoint(serde_json::json!({
            "id": "v0", "create_time": "t", "comment": "é".repeat(100)
        }));
        let text = list_comment(&long);
        assert_eq!(text.chars().count(), LIST_COMMENT_CHARS);
        assert!(text.ends_with('…'));
        let auto = checkpoint(serde_json::json!({"id": "v0", "create_time": "t", "is_auto": true}));
        assert_eq!(list_comment(&auto), "(auto)");
    }

    #[test]
    fn info_shows_what_the_server_sent() {
        let c = checkpoint(serde_json::json!({
            "id": "v2", "create_time": "2026-01-05T10:30:00Z",
            "comment": "before upgrade", "source_id": "v1", "is_current": true
        }));
        assert_eq!(
            describe(&c),
            "ID:      v2\n\
             Created: 2026-01-05T10:30:00Z\n\
             Comment: before upgrade\n\
             Source:  v1\n\
             Current: yes\n"
        );
    }
}
