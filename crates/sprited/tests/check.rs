//! `GET /v1/sprites/{name}/check`: a running sprite is healthy when its
//! agent answers; checking a cold one does not wake it.

mod common;

use common::Daemon;
use reqwest::Method;

#[tokio::test]
async fn check_answers_without_waking_a_cold_sprite() {
    let d = Daemon::start();
    let api = d.client();
    let made = api.create("chk").await;
    api.exec("chk", &["true"]).await;

    let c = api.get_json("/v1/sprites/chk/check").await;
    assert_eq!(c["status"], "healthy", "{c}");
    assert_eq!(c["sprite_id"], made["id"]);
    assert!(c.get("reason").is_none(), "{c}");
    assert!(c["elapsed"].as_f64().is_some_and(|ms| ms >= 0.0), "{c}");

    let r = api
        .req(Method::POST, "/v1/sprites/chk/evict")
        .send()
        .await
        .expect("evict");
    assert_eq!(
        r.status(),
        200,
        "evict: {}",
        r.text().await.unwrap_or_default()
    );
    let c = api.get_json("/v1/sprites/chk/check").await;
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&"healthy".into(), &"cold".into()),
        "{c}"
    );
    let s = api.get_json("/v1/sprites/chk").await;
    assert_eq!(s["status"], "cold", "the check woke the sprite: {s}");

    let r = api
        .req(Method::GET, "/v1/sprites/nope/check")
        .send()
        .await
        .expect("check");
    assert_eq!(r.status(), 404);
}
