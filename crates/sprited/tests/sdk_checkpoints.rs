//! The Rust SDK's checkpoint calls against the real daemon: every call of
//! `sprites-client` for checkpoints and forks, success and failure.

mod common;

use common::Daemon;
use futures_util::StreamExt;
use sprites_client::{
    checkpoint_id_in, event_text, Client, CreateSpriteRequest, Error, SpriteHandle,
};

const FILE: &str = "/home/sprite/state";

async fn write(sprite: &SpriteHandle, content: &str) {
    let out = sprite
        .command("sh")
        .arg("-c")
        .arg(format!("echo {content} > {FILE}"))
        .output()
        .await
        .expect("exec");
    assert!(out.success(), "{out:?}");
}

async fn read(sprite: &SpriteHandle) -> String {
    let out = sprite
        .command("cat")
        .arg(FILE)
        .output()
        .await
        .expect("exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_checkpoints_end_to_end() {
    let d = Daemon::start();
    let client = Client::new(&d.url, d.token.clone()).expect("client");
    client
        .create_sprite(&CreateSpriteRequest {
            name: "sdk".into(),
            ..Default::default()
        })
        .await
        .expect("create sprite");
    let sprite = client.sprite("sdk");
    assert!(sprite.checkpoints().await.expect("list").is_empty());

    // The streaming form: info lines, then complete, then the end.
    write(&sprite, "one").await;
    let mut events = sprite
        .create_checkpoint_stream(Some("first"))
        .await
        .expect("create stream");
    let mut kinds = Vec::new();
    let mut last = None;
    while let Some(event) = events.next().await {
        let event = event.expect("event");
        assert!(event.time.is_some(), "every line has a time: {event:?}");
        kinds.push(event.kind.clone());
        last = Some(event);
    }
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("complete"),
        "{kinds:?}"
    );
    assert!(
        kinds[..kinds.len() - 1].iter().all(|k| k == "info"),
        "{kinds:?}"
    );
    let message = last.and_then(|e| event_text(&e)).unwrap_or_default();
    assert_eq!(
        checkpoint_id_in(&message).as_deref(),
        Some("v0"),
        "{message}"
    );

    // The simple form.
    write(&sprite, "two").await;
    let made = sprite.create_checkpoint(None).await.expect("create");
    assert_eq!(made.id, "v1");
    assert!(made.message.contains("v1"), "{made:?}");

    let v0 = sprite.checkpoint("v0").await.expect("get v0");
    assert_eq!(v0.comment.as_deref(), Some("first"));
    assert_ne!(v0.is_current, Some(true));
    let v1 = sprite.checkpoint("v1").await.expect("get v1");
    assert_eq!(v1.comment, None);
    assert_eq!(v1.source_id.as_deref(), Some("v0"));
    let err = sprite.checkpoint("v9").await.expect_err("no v9");
    assert!(err.is_not_found(), "{err:?}");

    let list = sprite.checkpoints().await.expect("list");
    let ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["v1", "v0"], "newest first");
    assert_eq!(list[0].is_current, Some(true));

    // Restore, simple and streaming.
    write(&sprite, "three").await;
    let back = sprite.restore_checkpoint("v0").await.expect("restore v0");
    assert_eq!(back.id, "v0");
    assert_eq!(read(&sprite).await, "one");
    assert_eq!(
        sprite.checkpoint("v0").await.expect("v0").is_current,
        Some(true)
    );
    let mut seen = Vec::new();
    let done = sprite
        .restore_checkpoint_stream("v1")
        .await
        .expect("restore stream")
        .finish_with(|e| seen.push(e.kind.clone()))
        .await
        .expect("restore v1");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("complete"),
        "{seen:?}"
    );
    assert_eq!(done.info.len(), seen.len() - 1, "{done:?} {seen:?}");
    assert!(!done.message.is_empty());
    assert_eq!(read(&sprite).await, "two");
    let err = sprite.restore_checkpoint("v9").await.expect_err("no v9");
    assert!(err.is_not_found(), "{err:?}");

    // Forks, both ways of asking.
    let fork = client
        .fork_sprite("sdk-fork", "sdk", "v0")
        .await
        .expect("fork");
    assert_eq!(fork.name, "sdk-fork");
    assert_eq!(read(&client.sprite("sdk-fork")).await, "one");
    sprite.fork("sdk-fork2", "v1").await.expect("fork 2");
    assert_eq!(read(&client.sprite("sdk-fork2")).await, "two");
    let err = client
        .fork_sprite("sdk-fork3", "sdk", "v9")
        .await
        .expect_err("no v9 to fork");
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
    assert!(client.get_sprite("sdk-fork3").await.is_err());

    // Delete: not the current one (409), another one, then it is gone.
    let err = sprite.delete_checkpoint("v1").await.expect_err("in use");
    assert_eq!(err.status(), Some(409), "{err:?}");
    sprite.delete_checkpoint("v0").await.expect("delete v0");
    assert!(sprite
        .checkpoint("v0")
        .await
        .expect_err("deleted")
        .is_not_found());
    let err = sprite.delete_checkpoint("v0").await.expect_err("twice");
    assert!(err.is_not_found(), "{err:?}");
    // Ids are never reused.
    assert_eq!(
        sprite
            .create_checkpoint(Some("again"))
            .await
            .expect("v2")
            .id,
        "v2"
    );

    // A failure the server reports in the stream (a comment over the
    // limit is one today; a 400 before streaming would do as well).
    let err = sprite
        .create_checkpoint(Some(&"x".repeat(5000)))
        .await
        .expect_err("comment too long");
    assert!(
        matches!(err, Error::Operation(_) | Error::Api { status: 400, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("comment is longer than"), "{err}");
    assert_eq!(sprite.checkpoints().await.expect("list").len(), 2);

    // Calls on a sprite that does not exist.
    let ghost = client.sprite("ghost");
    assert!(ghost.checkpoints().await.expect_err("ghost").is_not_found());
    assert!(ghost
        .create_checkpoint(None)
        .await
        .expect_err("ghost")
        .is_not_found());
}
