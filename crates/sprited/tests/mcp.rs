//! `/mcp` and `/.sprite/llm.txt` against a real daemon. The official
//! Python MCP client drives `/mcp` in `tests/compat/test_mcp.py`; this
//! file speaks its JSON-RPC by hand, so a broken token check or tool shows
//! here without Python.

mod common;

use common::{Api, Daemon};
use reqwest::Method;
use serde_json::{json, Value};

/// One JSON-RPC message to `/mcp` with `token`, as a Streamable HTTP client
/// sends it.
async fn post(api: &Api, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = api
        .http
        .request(Method::POST, format!("{}/mcp", api.url))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("POST /mcp")
}

/// A request's `result`, failing the test on a JSON-RPC error.
async fn call(api: &Api, method: &str, params: Value) -> Value {
    let res = post(
        api,
        Some(&api.token),
        &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
    .await;
    assert_eq!(res.status(), 200, "{method}");
    let body: Value = res.json().await.expect("a JSON-RPC answer");
    assert!(body.get("error").is_none(), "{method}: {body}");
    body["result"].clone()
}

async fn tool(api: &Api, name: &str, arguments: Value) -> Value {
    call(
        api,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
    .await
}

#[tokio::test]
async fn mcp_refuses_a_missing_or_wrong_token_in_the_api_error_format() {
    let d = Daemon::start();
    let api = d.client();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}});
    for token in [None, Some("wrong-token")] {
        let res = post(&api, token, &init).await;
        assert_eq!(res.status(), 401, "{token:?}");
        let body: Value = res.json().await.expect("error JSON");
        assert_eq!(body["error"], "unauthorized", "{body}");
    }
    let res = post(&api, Some(&api.token), &init).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("initialize result");
    assert_eq!(body["result"]["serverInfo"]["name"], "sprited", "{body}");
    assert!(
        body["result"]["capabilities"]["tools"].is_object(),
        "{body}"
    );
    // A stateless server has no stream to GET or session to DELETE.
    let get = api.req(Method::GET, "/mcp").send().await.expect("GET");
    assert_eq!(get.status(), 405);
}

#[tokio::test]
async fn mcp_tools_act_as_the_api_does() {
    let d = Daemon::start();
    let api = d.client();
    let tools = call(&api, "tools/list", json!({})).await;
    let mut names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "create_checkpoint",
            "create_sprite",
            "destroy_sprite",
            "list_checkpoints",
            "list_sprites",
            "read_file",
            "restore_checkpoint",
            "run_command",
            "service_logs",
            "write_file"
        ]
    );

    let made = tool(&api, "create_sprite", json!({"name": "m1"})).await;
    assert_eq!(made["isError"], false, "{made}");
    assert_eq!(made["structuredContent"]["sprite"]["name"], "m1");

    let ran = tool(
        &api,
        "run_command",
        json!({"sprite": "m1", "command": ["echo", "hello"]}),
    )
    .await;
    let out = &ran["structuredContent"];
    assert_eq!(out["stdout"], "hello\n", "{ran}");
    assert_eq!(out["exit_code"], 0);
    let shell = tool(
        &api,
        "run_command",
        json!({"sprite": "m1", "shell": "echo err >&2; exit 3"}),
    )
    .await;
    assert_eq!(shell["structuredContent"]["stderr"], "err\n", "{shell}");
    assert_eq!(shell["structuredContent"]["exit_code"], 3);
    let slow = tool(
        &api,
        "run_command",
        json!({"sprite": "m1", "shell": "echo started; sleep 30", "timeout_seconds": 1}),
    )
    .await;
    assert_eq!(slow["structuredContent"]["timed_out"], true, "{slow}");
    assert_eq!(slow["structuredContent"]["stdout"], "started\n");

    let wrote = tool(
        &api,
        "write_file",
        json!({"sprite": "m1", "path": "notes/a.txt", "content": "hi there"}),
    )
    .await;
    assert_eq!(wrote["structuredContent"]["size"], 8, "{wrote}");
    let read = tool(
        &api,
        "read_file",
        json!({"sprite": "m1", "path": "notes/a.txt"}),
    )
    .await;
    assert_eq!(read["structuredContent"]["content"], "hi there", "{read}");
    let cut = tool(
        &api,
        "read_file",
        json!({"sprite": "m1", "path": "notes/a.txt", "max_bytes": 2}),
    )
    .await;
    assert_eq!(cut["structuredContent"]["content"], "hi", "{cut}");
    assert_eq!(cut["structuredContent"]["truncated"], true);

    // Checkpoint, change, restore: the file is back as it was.
    let ck = tool(
        &api,
        "create_checkpoint",
        json!({"sprite": "m1", "comment": "clean"}),
    )
    .await;
    let id = ck["structuredContent"]["checkpoint"]["id"]
        .as_str()
        .expect("checkpoint id")
        .to_string();
    tool(
        &api,
        "write_file",
        json!({"sprite": "m1", "path": "notes/a.txt", "content": "changed"}),
    )
    .await;
    let listed = tool(&api, "list_checkpoints", json!({"sprite": "m1"})).await;
    assert!(listed["structuredContent"]["checkpoints"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["id"] == id.as_str())));
    let restored = tool(
        &api,
        "restore_checkpoint",
        json!({"sprite": "m1", "checkpoint": id}),
    )
    .await;
    assert_eq!(restored["isError"], false, "{restored}");
    assert_eq!(api.sh("m1", "cat notes/a.txt").await, "hi there");

    // Errors are tool errors carrying the API's error body.
    let missing = tool(&api, "read_file", json!({"sprite": "nope", "path": "x"})).await;
    assert_eq!(missing["isError"], true);
    assert_eq!(
        missing["structuredContent"],
        json!({"error": "not_found", "message": "no sprite named nope"})
    );
    let no_file = tool(&api, "read_file", json!({"sprite": "m1", "path": "/nope"})).await;
    assert_eq!(no_file["structuredContent"]["error"], "ENOENT", "{no_file}");
    let no_service = tool(
        &api,
        "service_logs",
        json!({"sprite": "m1", "service": "web"}),
    )
    .await;
    assert_eq!(no_service["isError"], true, "{no_service}");

    let gone = tool(&api, "destroy_sprite", json!({"sprite": "m1"})).await;
    assert_eq!(gone["isError"], false, "{gone}");
    let res = api
        .req(Method::GET, "/v1/sprites/m1")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn llm_txt_is_in_every_sprite_and_the_sprite_cannot_change_it() {
    let d = Daemon::start();
    let api = d.client();
    api.create("guide").await;
    let text = api.sh("guide", "cat /.sprite/llm.txt").await;
    assert!(text.contains("sprite-env"), "{text}");
    assert!(text.contains("sprite named guide"), "{text}");
    assert!(text.contains("http://guide."), "{text}");
    // Readable, not writable, by the sprite user; root inside cannot
    // write it either (a read-only bind).
    assert_eq!(
        api.sh(
            "guide",
            "id -un; test -r /.sprite/llm.txt && echo readable; \
             test -w /.sprite/llm.txt || echo not-writable; \
             (echo x >> /.sprite/llm.txt) 2>/dev/null || echo refused"
        )
        .await,
        "sprite\nreadable\nnot-writable\nrefused\n"
    );
    let root = api
        .exec_with(
            "guide",
            &["sh", "-c", "echo x >> /.sprite/llm.txt"],
            "user=root",
            &[],
        )
        .await;
    assert_ne!(root.code, Some(0), "root wrote the guide");
    // Still there after the sprite starts again.
    let res = api
        .req(Method::POST, "/v1/sprites/guide/restart")
        .send()
        .await
        .expect("restart");
    assert_eq!(res.status(), 200);
    assert_eq!(api.sh("guide", "cat /.sprite/llm.txt").await, text);
    api.delete("guide").await;
}
