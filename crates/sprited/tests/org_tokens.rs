//! `POST /v1/organizations/{org}/tokens`: the official SDKs' `CreateToken`,
//! sent as they send it (`Authorization: FlyV1 <token>`, a description).

mod common;

use common::Daemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_create_token_gets_a_working_token() {
    let d = Daemon::start();
    let api = d.client();
    let create = |auth: String, org: &str| {
        api.http
            .post(format!("{}/v1/organizations/{org}/tokens", d.url))
            .header("authorization", auth)
            .json(&serde_json::json!({"description": "Sprite SDK Token", "invite_code": "x"}))
            .send()
    };
    // Any organization name: the daemon is one organization.
    let r = create(format!("FlyV1 {}", d.token), "personal")
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().await.expect("json");
    let secret = made["token"].as_str().expect("a string token");
    assert!(secret.starts_with("spr_"), "{made}");
    assert_eq!(made["name"], "Sprite SDK Token");

    // The new token works, and is one of ours (listed, revocable).
    let r = api
        .http
        .get(format!("{}/v1/sprites", d.url))
        .bearer_auth(secret)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    let listed = api.get_json("/v1/tokens").await;
    assert_eq!(listed["tokens"][0]["name"], "Sprite SDK Token", "{listed}");

    // A token made this way is no admin: it may not make the next one
    // (issue 19: a leaked token must not mint its replacements); the
    // admin token may, with Bearer too.
    let r = create(format!("Bearer {secret}"), "my-org")
        .await
        .expect("create");
    assert_eq!(r.status(), 403);
    let r = create(format!("Bearer {}", d.token), "my-org")
        .await
        .expect("create");
    assert_eq!(r.status(), 201);

    // Without a valid token: 401 in the error format.
    let r = create("FlyV1 not-a-token".into(), "personal")
        .await
        .expect("create");
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("error json");
    assert!(body["error"].is_string(), "{body}");
}
