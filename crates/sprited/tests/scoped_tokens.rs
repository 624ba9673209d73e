//! Issue 19, item 7: tokens are scoped. Only admin tokens manage tokens;
//! a scoped token reaches a set of sprites (by name or prefix) with the
//! actions it was given (read, exec, manage), on every endpoint, the list,
//! the create, and sprite URLs; `sprite tokens list` shows the scopes.

mod common;

use std::net::SocketAddr;

use common::cli::Cli;
use common::Daemon;
use reqwest::Method;
use serde_json::{json, Value};

/// Makes a token with `scope` as the admin; its secret.
async fn token(api: &common::Api, name: &str, scope: Option<Value>) -> String {
    let mut body = json!({ "name": name });
    if let Some(s) = scope {
        body["scope"] = s;
    }
    let r = api
        .req(Method::POST, "/v1/tokens")
        .json(&body)
        .send()
        .await
        .expect("create token");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("secret").to_string()
}

/// The status of `method path` with `token` (and an optional JSON body).
async fn status(d: &Daemon, token: &str, method: Method, path: &str, body: Option<Value>) -> u16 {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", d.url))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let s = r.status().as_u16();
    if s == 403 {
        let v: Value = r.json().await.expect("error json");
        assert_eq!(v["error"], "forbidden", "{v}");
    }
    s
}

async fn listed(d: &Daemon, token: &str) -> Vec<String> {
    let v: Value = reqwest::Client::new()
        .get(format!("{}/v1/sprites", d.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let mut names: Vec<String> = v["sprites"]
        .as_array()
        .expect("sprites")
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

const EXEC_TRUE: &str = "exec?cmd=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_reach_only_what_they_were_given() {
    let d = Daemon::start();
    let api = d.client();
    for n in ["mine", "other", "team-x"] {
        api.create(n).await;
    }
    let mine = token(
        &api,
        "mine",
        Some(json!({"sprites": ["mine"], "actions": ["read", "exec"]})),
    )
    .await;
    let team = token(&api, "team", Some(json!({"prefix": "team-"}))).await;
    let reader = token(&api, "reader", Some(json!({"actions": ["read"]}))).await;
    let plain = token(&api, "plain", None).await;

    // Only the sprites it reaches are listed, or can be read at all.
    assert_eq!(listed(&d, &mine).await, ["mine"]);
    assert_eq!(listed(&d, &team).await, ["team-x"]);
    assert_eq!(listed(&d, &reader).await, ["mine", "other", "team-x"]);
    assert_eq!(
        status(&d, &mine, Method::GET, "/v1/sprites/mine", None).await,
        200
    );
    assert_eq!(
        status(&d, &mine, Method::GET, "/v1/sprites/other", None).await,
        403
    );

    // Actions: exec and the filesystem need exec; a change needs manage.
    let exec = |n: &str| format!("/v1/sprites/{n}/{EXEC_TRUE}");
    assert_eq!(
        status(&d, &mine, Method::POST, &exec("mine"), None).await,
        200
    );
    assert_eq!(
        status(&d, &mine, Method::POST, &exec("other"), None).await,
        403
    );
    assert_eq!(
        status(
            &d,
            &mine,
            Method::GET,
            "/v1/sprites/other/fs/read?path=/etc/hostname",
            None
        )
        .await,
        403
    );
    assert_eq!(
        status(&d, &mine, Method::POST, "/v1/sprites/mine/checkpoint", None).await,
        403
    );
    assert_eq!(
        status(&d, &mine, Method::DELETE, "/v1/sprites/mine", None).await,
        403
    );
    assert_eq!(
        status(
            &d,
            &reader,
            Method::GET,
            "/v1/sprites/other/checkpoints",
            None
        )
        .await,
        200
    );
    assert_eq!(
        status(&d, &reader, Method::POST, &exec("other"), None).await,
        403
    );
    assert_eq!(
        status(
            &d,
            &reader,
            Method::GET,
            "/v1/sprites/other/fs/read?path=/etc/hostname",
            None
        )
        .await,
        403
    );

    // A prefix: creates and manages under it, nothing else.
    assert_eq!(
        status(
            &d,
            &team,
            Method::POST,
            "/v1/sprites",
            Some(json!({"name": "team-y"}))
        )
        .await,
        201
    );
    assert_eq!(
        status(
            &d,
            &team,
            Method::POST,
            "/v1/sprites",
            Some(json!({"name": "solo"}))
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &d,
            &team,
            Method::POST,
            "/v1/sprites/team-x/checkpoint",
            None
        )
        .await,
        200
    );
    assert_eq!(
        status(&d, &team, Method::POST, &exec("mine"), None).await,
        403
    );
    assert_eq!(
        status(&d, &team, Method::DELETE, "/v1/sprites/team-y", None).await,
        204
    );

    // Only admins manage tokens or see what spans the host; a token made
    // without a scope reaches every sprite but is no admin.
    assert_eq!(
        status(&d, &plain, Method::POST, &exec("other"), None).await,
        200
    );
    for t in [&mine, &team, &reader, &plain] {
        assert_eq!(
            status(&d, t, Method::POST, "/v1/tokens", Some(json!({}))).await,
            403
        );
        assert_eq!(status(&d, t, Method::GET, "/v1/tokens", None).await, 403);
        assert_eq!(status(&d, t, Method::GET, "/v1/usage", None).await, 403);
        assert_eq!(status(&d, t, Method::GET, "/metrics", None).await, 403);
    }
    let admin = token(&api, "admin2", Some(json!({"admin": true}))).await;
    assert_eq!(
        status(&d, &admin, Method::GET, "/v1/tokens", None).await,
        200
    );
    assert_eq!(
        status(&d, &admin, Method::POST, "/v1/tokens", Some(json!({}))).await,
        201
    );

    // A scope that names no sprite, or no action, is refused.
    for bad in [
        json!({"sprites": []}),
        json!({"actions": []}),
        json!({"prefix": "Bad!"}),
    ] {
        let r = api
            .req(Method::POST, "/v1/tokens")
            .json(&json!({ "scope": bad }))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 400, "{bad}");
    }

    // A sprite URL (token-protected by default) opens for a token that may
    // exec in that sprite, and for no other.
    let addr: SocketAddr = d.addr.parse().expect("addr");
    let c = reqwest::Client::builder()
        .resolve("mine.sprites.localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let port = d.addr.rsplit(':').next().expect("port");
    let get = |t: String| {
        c.get(format!("http://mine.sprites.localhost:{port}/"))
            .bearer_auth(t)
            .send()
    };
    assert_ne!(get(mine.clone()).await.expect("get").status(), 401);
    assert_eq!(get(team.clone()).await.expect("get").status(), 401);
    assert_eq!(get(reader.clone()).await.expect("get").status(), 401);
    let login = c
        .get(format!(
            "http://mine.sprites.localhost:{port}/__sprite/login?token={team}"
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 401);

    // The CLI makes scoped tokens and shows every token's scope.
    let cli = Cli::new(&d);
    cli.ok(&[
        "tokens",
        "create",
        "--name",
        "ci-read",
        "--sprite",
        "mine",
        "--actions",
        "read",
    ]);
    let list = cli.ok(&["tokens", "list"]);
    assert!(list.contains("SCOPE"), "{list}");
    assert!(list.contains("mine: read,exec"), "{list}");
    assert!(list.contains("team-*: read,exec,manage"), "{list}");
    assert!(
        list.contains("all sprites: read\n") || list.contains("all sprites: read "),
        "{list}"
    );
    assert!(
        list.contains("mine: read\n") || list.contains("mine: read "),
        "{list}"
    );
    assert!(list.contains("admin"), "{list}");
}
