//! Sprite URLs, the TCP proxy endpoint and the port watch, through a real
//! daemon: busybox httpd (with a CGI that echoes what it received) and nc
//! servers inside tiny sprites; traffic only on loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Daemon;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const DOMAIN: &str = "sprites.localhost";

/// A web root with a page, an echo-the-request CGI, a streaming CGI and a
/// CGI that counts the bytes of an upload; httpd on `port`.
async fn serve_web(api: &common::Api, name: &str, port: u16) {
    let script = format!(
        r#"mkdir -p /tmp/srv/cgi-bin && echo "hello from {name}" > /tmp/srv/index.html &&
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nenv | sort\n' > /tmp/srv/cgi-bin/h &&
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nfor i in 1 2 3; do echo tick$i; sleep 1; done\n' > /tmp/srv/cgi-bin/slow &&
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nwc -c | tr -d " "\n' > /tmp/srv/cgi-bin/count &&
chmod +x /tmp/srv/cgi-bin/*;
setsid busybox httpd -f -p {port} -h /tmp/srv >/dev/null 2>&1 < /dev/null & echo $! > /tmp/httpd.pid; sleep 0.3"#
    );
    api.sh(name, &script).await;
}

/// A client that resolves `*.sprites.localhost` to the daemon.
fn url_client(d: &Daemon, names: &[&str]) -> reqwest::Client {
    let addr: SocketAddr = d.addr.parse().expect("addr");
    let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    for n in names {
        b = b.resolve(&format!("{n}.{DOMAIN}"), addr);
    }
    b.build().expect("client")
}

fn url(d: &Daemon, name: &str, path: &str) -> String {
    let port = d.addr.rsplit(':').next().expect("port");
    format!("http://{name}.{DOMAIN}:{port}{path}")
}

async fn set_auth(api: &common::Api, name: &str, auth: &str) {
    let r = api
        .req(reqwest::Method::PUT, &format!("/v1/sprites/{name}"))
        .json(&serde_json::json!({"url_settings": {"auth": auth}}))
        .send()
        .await
        .expect("update");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// Send raw bytes, read until the server closes.
async fn raw(d: &Daemon, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(&d.addr)
        .await
        .expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn url_auth_modes_login_and_the_token_never_reaches_the_sprite() {
    let d = Daemon::start();
    let api = d.client();
    let sprite = api.create("web").await;
    assert_eq!(sprite["url_settings"]["auth"], "sprite");
    assert_eq!(sprite["url"], url(&d, "web", ""));
    serve_web(&api, "web", 8080).await;
    let c = url_client(&d, &["web"]);

    // No token: 401 (a login page for browsers); a wrong one: 401.
    let r = c.get(url(&d, "web", "/")).send().await.expect("get");
    assert_eq!(r.status(), 401);
    let r = c
        .get(url(&d, "web", "/"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("<form method=\"post\" action=\"/__sprite/login\""));
    let r = c
        .get(url(&d, "web", "/"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);

    // The admin token and an API token both work.
    let r = c
        .get(url(&d, "web", "/"))
        .bearer_auth(&d.token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello from web\n");
    let tok = api
        .req(reqwest::Method::POST, "/v1/tokens")
        .json(&serde_json::json!({"name": "url"}))
        .send()
        .await
        .expect("token")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let api_token = tok["token"].as_str().expect("token").to_string();
    let r = c
        .get(url(&d, "web", "/"))
        .bearer_auth(&api_token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);

    // What the sprite's server sees: no token, no session cookie, the
    // forwarding headers set by the daemon (the client's are replaced).
    let env = c
        .get(url(&d, "web", "/cgi-bin/h?q=1"))
        .bearer_auth(&d.token)
        .header("cookie", "a=1; sprite_session=zzz; b=2")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(!env.contains(&d.token), "token leaked:\n{env}");
    assert!(!env.contains("HTTP_AUTHORIZATION"), "{env}");
    assert!(!env.contains("sprite_session"), "{env}");
    assert!(env.contains("HTTP_COOKIE=a=1; b=2"), "{env}");
    assert!(env.contains("HTTP_X_FORWARDED_FOR=127.0.0.1\n"), "{env}");
    assert!(env.contains("HTTP_X_FORWARDED_PROTO=http"), "{env}");
    assert!(
        env.contains(&format!("HTTP_X_FORWARDED_HOST=web.{DOMAIN}")),
        "{env}"
    );
    assert!(env.contains(&format!("HTTP_HOST=web.{DOMAIN}")), "{env}");
    assert!(env.contains("QUERY_STRING=q=1"), "{env}");

    // Browser login: a bad token is refused; a good one becomes a signed
    // HttpOnly cookie that is not the token, and that cookie is enough.
    let r = c
        .get(url(&d, "web", "/__sprite/login?token=nope"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    let r = c
        .post(url(&d, "web", "/__sprite/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={api_token}&next=%2Fcgi-bin%2Fh"))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/cgi-bin/h");
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains(&api_token[4..]), "the cookie holds the token");
    let cookie = set.split(';').next().expect("pair").to_string();
    let env = c
        .get(url(&d, "web", "/cgi-bin/h"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(env.contains("REQUEST_METHOD=GET"), "{env}");
    assert!(!env.contains("sprite_session"), "{env}");
    // A session of another sprite's name, or a tampered one, is refused.
    let tampered = cookie.replace("v1.", "v1.9");
    let r = c
        .get(url(&d, "web", "/"))
        .header("cookie", &tampered)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    // Revoking the token ends its sessions.
    let r = api
        .req(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{}", tok["id"].as_str().expect("id")),
        )
        .send()
        .await
        .expect("revoke");
    assert!(r.status().is_success());
    let r = c
        .get(url(&d, "web", "/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    // The admin token logs in by GET too.
    let r = c
        .get(url(
            &d,
            "web",
            &format!("/__sprite/login?token={}", d.token),
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");

    // public: open to anyone; private: no URL at all.
    set_auth(&api, "web", "public").await;
    let r = c.get(url(&d, "web", "/")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    let env = c
        .get(url(&d, "web", "/cgi-bin/h"))
        .bearer_auth(&d.token)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(!env.contains(&d.token), "token leaked on a public sprite");
    set_auth(&api, "web", "private").await;
    let r = c
        .get(url(&d, "web", "/"))
        .bearer_auth(&d.token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = api
        .req(reqwest::Method::PUT, "/v1/sprites/web")
        .json(&serde_json::json!({"url_settings": {"auth": "open"}}))
        .send()
        .await
        .expect("update");
    assert_eq!(r.status(), 400);

    // Keep-alive: many requests on one client connection all answer.
    set_auth(&api, "web", "public").await;
    for _ in 0..50 {
        let r = c.get(url(&d, "web", "/")).send().await.expect("get");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    api.delete("web").await;
}

#[tokio::test]
async fn host_tricks_never_serve_another_sprites_content() {
    let d = Daemon::start();
    let api = d.client();
    for n in ["aa", "bb"] {
        api.create(n).await;
        set_auth(&api, n, "public").await;
        serve_web(&api, n, 8080).await;
    }
    let get = |target: &str, host: &[u8]| {
        let mut r = format!("GET {target} HTTP/1.1\r\nHost: ").into_bytes();
        r.extend_from_slice(host);
        r.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        r
    };
    let port = d.addr.rsplit(':').next().expect("port").to_string();
    let ok = raw(&d, &get("/", format!("aa.{DOMAIN}:{port}").as_bytes())).await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("hello from aa"),
        "{ok}"
    );
    let upper = raw(
        &d,
        &get("/", format!("AA.SPRITES.LOCALHOST:{port}").as_bytes()),
    )
    .await;
    assert!(upper.contains("hello from aa"), "{upper}");
    // Absolute form: routed by its authority, and refused when the Host
    // header names another.
    let abs = raw(
        &d,
        &get(
            &format!("http://bb.{DOMAIN}/"),
            format!("bb.{DOMAIN}").as_bytes(),
        ),
    )
    .await;
    assert!(abs.contains("hello from bb"), "{abs}");
    let mixed = raw(
        &d,
        &get(
            &format!("http://bb.{DOMAIN}/"),
            format!("aa.{DOMAIN}").as_bytes(),
        ),
    )
    .await;
    assert!(
        mixed.starts_with("HTTP/1.1 400") && !mixed.contains("hello"),
        "{mixed}"
    );
    let to_api = raw(&d, &get(&format!("http://bb.{DOMAIN}/"), b"127.0.0.1")).await;
    assert!(
        to_api.starts_with("HTTP/1.1 400") && !to_api.contains("hello"),
        "{to_api}"
    );
    for host in [
        format!("aa.{DOMAIN}.").into_bytes(),
        format!("x.aa.{DOMAIN}").into_bytes(),
        format!("xn--a-0fa.{DOMAIN}").into_bytes(),
        "\u{0430}a.sprites.localhost".as_bytes().to_vec(), // Cyrillic а
        format!("a_a.{DOMAIN}").into_bytes(),
    ] {
        let r = raw(&d, &get("/", &host)).await;
        assert!(
            r.starts_with("HTTP/1.1 400") && !r.contains("hello"),
            "{}: {r}",
            String::from_utf8_lossy(&host)
        );
    }
    let none = raw(&d, &get("/", format!("cc.{DOMAIN}").as_bytes())).await;
    assert!(none.starts_with("HTTP/1.1 404"), "{none}");
    // `..` is the sprite's business: passed as it is, never used to route.
    let dots = raw(
        &d,
        &get("/cgi-bin/../cgi-bin/h", format!("aa.{DOMAIN}").as_bytes()),
    )
    .await;
    assert!(!dots.contains("hello from bb"), "{dots}");
    let dots = raw(
        &d,
        &get("/../bb/cgi-bin/h", format!("aa.{DOMAIN}").as_bytes()),
    )
    .await;
    assert!(!dots.contains("hello from bb"), "{dots}");
    // Other hosts still reach the API.
    let api_res = raw(&d, &get("/v1/sprites", b"127.0.0.1")).await;
    assert!(api_res.starts_with("HTTP/1.1 401"), "{api_res}");
    for n in ["aa", "bb"] {
        api.delete(n).await;
    }
}

#[tokio::test]
async fn streaming_upgrades_uploads_and_502() {
    let d = Daemon::start();
    let api = d.client();
    api.create("st").await;
    set_auth(&api, "st", "public").await;
    let c = url_client(&d, &["st"]);

    // Nothing listening: a clear 502.
    let r = c.get(url(&d, "st", "/")).send().await.expect("get");
    assert_eq!(r.status(), 502);
    let body = r.text().await.expect("body");
    assert!(
        body.contains("Nothing is listening on port 8080 in sprite st"),
        "{body}"
    );

    serve_web(&api, "st", 8080).await;
    // Streaming: the first line arrives long before the last.
    let t = Instant::now();
    let mut r = c
        .get(url(&d, "st", "/cgi-bin/slow"))
        .send()
        .await
        .expect("get");
    let first = r.chunk().await.expect("chunk").expect("some");
    let first_at = t.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("tick1"));
    let mut rest = Vec::new();
    while let Some(ch) = r.chunk().await.expect("chunk") {
        rest.extend_from_slice(&ch);
    }
    assert!(String::from_utf8_lossy(&rest).contains("tick3"));
    assert!(
        first_at < Duration::from_millis(1500) && t.elapsed() >= Duration::from_secs(2),
        "{first_at:?} {:?}",
        t.elapsed()
    );

    // A 100 MiB upload streams through; the daemon's memory stays flat.
    let pid = d.pid().expect("pid");
    let before = sprites_test_support::rss_kib(pid);
    let total: usize = 100 << 20;
    let chunks = futures_util::stream::iter(
        (0..total / (1 << 20))
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 1 << 20]))),
    );
    let r = c
        .post(url(&d, "st", "/cgi-bin/count"))
        .header("content-length", total.to_string())
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body").trim(), total.to_string());
    let after = sprites_test_support::rss_kib(pid);
    assert!(
        after < before + 40 * 1024,
        "daemon RSS grew from {before} to {after} KiB"
    );

    // An upgrade: a raw server inside answers 101, then echoes.
    api.sh(
        "st",
        r#"printf '#!/bin/sh\nwhile read -r l; do l=$(echo "$l" | tr -d "\\r"); [ -z "$l" ] && break; done\nprintf "HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n"\nexec cat\n' > /tmp/srv/up.sh && chmod +x /tmp/srv/up.sh;
kill $(cat /tmp/httpd.pid); sleep 0.2;
setsid nc -ll -p 8080 -e /tmp/srv/up.sh >/dev/null 2>&1 </dev/null & sleep 0.3"#,
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(&d.addr)
        .await
        .expect("connect");
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: st.{DOMAIN}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.expect("head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"ping one\n"[..], b"ping two\n"] {
        s.write_all(msg).await.expect("write");
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(got, msg);
    }
    drop(s);
    api.delete("st").await;
}

/// A keep-alive HTTP/1.1 server in busybox sh: `nc -ll` runs the script
/// for each connection, which answers every request on it with its own pid
/// (so the answers tell which connection served them).
const KEEP_ALIVE_SERVER: &str = r#"cat > /tmp/ka.sh <<'EOF'
#!/bin/sh
while read -r line; do
  line=$(printf %s "$line" | tr -d '\r')
  [ -n "$line" ] && continue
  body="conn $$"
  printf 'HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\n%s' "${#body}" "$body"
done
EOF
chmod +x /tmp/ka.sh
setsid busybox nc -ll -p 8080 -e /tmp/ka.sh >/dev/null 2>&1 </dev/null & sleep 0.3"#;

#[tokio::test]
async fn connections_into_the_sprite_are_kept_alive_and_replaced_when_closed() {
    let d = Daemon::start();
    let api = d.client();
    api.create("ka").await;
    set_auth(&api, "ka", "public").await;
    api.sh("ka", KEEP_ALIVE_SERVER).await;
    let get = |d: &Daemon| {
        // A new client (and client connection) each time.
        let c = url_client(d, &["ka"]);
        let u = url(d, "ka", "/");
        async move {
            let r = c.get(u).send().await.expect("get");
            assert_eq!(r.status(), 200);
            r.text().await.expect("body")
        }
    };
    // One after another, requests share one connection into the sprite,
    // whichever client connection they came on.
    let first = get(&d).await;
    assert!(first.starts_with("conn "), "{first}");
    for _ in 0..5 {
        assert_eq!(get(&d).await, first);
    }
    // The sprite's server closes it: the next request gets a new one.
    let pid = first.trim_start_matches("conn ");
    api.sh("ka", &format!("kill {pid}")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = get(&d).await;
    assert!(next.starts_with("conn ") && next != first, "{next}");
    assert_eq!(get(&d).await, next);

    // A new sprite of the same name is another sprite: nothing of the old
    // one (its record, its connections) serves its URL.
    api.delete("ka").await;
    api.create("ka").await;
    set_auth(&api, "ka", "public").await;
    let r = url_client(&d, &["ka"])
        .get(url(&d, "ka", "/"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 502);
    api.delete("ka").await;
}

#[tokio::test]
async fn urls_wake_warm_and_cold_sprites() {
    let d = Daemon::start_with(&["--idle-warm", "1s", "--idle-cold", "3s"]);
    let api = d.client();
    api.create("zz").await;
    set_auth(&api, "zz", "public").await;
    serve_web(&api, "zz", 8080).await;
    let c = url_client(&d, &["zz"]);
    api.wait_status("zz", "warm", Duration::from_secs(20)).await;
    let r = c.get(url(&d, "zz", "/")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello from zz\n");
    assert_eq!(api.get_json("/v1/sprites/zz").await["status"], "running");
    api.wait_status("zz", "cold", Duration::from_secs(20)).await;
    // Cold: the request starts it and is answered (the server inside was a
    // process of the old boot, so the answer says nothing listens).
    let t = Instant::now();
    let r = c.get(url(&d, "zz", "/")).send().await.expect("get");
    assert_eq!(r.status(), 502);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("Nothing is listening on port 8080"));
    eprintln!("cold URL request answered in {:?}", t.elapsed());
    assert_eq!(api.get_json("/v1/sprites/zz").await["status"], "running");

    // A service with an http_port comes back with the sprite: the first
    // request after a cold wake waits for it to listen (here it binds a
    // second after it starts) and is served.
    api.sh(
        "zz",
        "mkdir -p /home/sprite/www && echo from-service > /home/sprite/www/index.html",
    )
    .await;
    let r = api
        .req(reqwest::Method::PUT, "/v1/sprites/zz/services/web")
        .json(&serde_json::json!({
            "cmd": "sh",
            "args": ["-c", "sleep 1; exec busybox httpd -f -p 9090 -h /home/sprite/www"],
            "http_port": 9090
        }))
        .send()
        .await
        .expect("service");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // At once: the port found for the request before (8080, a moment ago)
    // is not used once the services have changed.
    let r = c.get(url(&d, "zz", "/")).send().await.expect("get");
    let status = r.status();
    let body = r.text().await.expect("body");
    assert_eq!((status.as_u16(), body.as_str()), (200, "from-service\n"));
    api.wait_status("zz", "cold", Duration::from_secs(20)).await;
    let t = Instant::now();
    let r = c.get(url(&d, "zz", "/")).send().await.expect("get");
    let status = r.status();
    let body = r.text().await.expect("body");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "from-service\n");
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());

    // A stopped service will not listen: nothing is waited for.
    let r = api
        .req(reqwest::Method::POST, "/v1/sprites/zz/services/web/stop")
        .send()
        .await
        .expect("stop");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let t = Instant::now();
    let r = c.get(url(&d, "zz", "/")).send().await.expect("get");
    assert_eq!(r.status(), 502);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    api.delete("zz").await;
}

#[tokio::test]
async fn proxy_endpoint_and_ports_watch() {
    let d = Daemon::start();
    let api = d.client();
    api.create("px").await;

    // Watch: the list first, then a port opening and closing.
    let mut watch = api.ws("/v1/sprites/px/ports/watch").await.expect("watch");
    let first = next_text(&mut watch).await;
    assert_eq!(first["type"], "port_list", "{first}");
    assert!(first["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .all(|p| p["port"] != 7000));
    api.sh("px", "setsid nc -ll -p 7000 -e /bin/cat >/dev/null 2>&1 </dev/null & echo $! > /tmp/nc.pid; sleep 0.2").await;
    let opened = next_text(&mut watch).await;
    assert_eq!(opened["type"], "port_opened", "{opened}");
    assert_eq!(opened["port"], 7000);
    // The owner is named when the agent may read its fds (same user).
    assert!(opened.get("pid").is_some(), "{opened}");

    // The proxy endpoint: raw bytes to the echo server.
    let mut ws = api.ws("/v1/sprites/px/proxy").await.expect("proxy");
    ws.send(Message::Text(r#"{"host":"localhost","port":7000}"#.into()))
        .await
        .expect("init");
    let hello = next_text(&mut ws).await;
    assert_eq!(
        hello,
        serde_json::json!({"status":"connected","target":"localhost:7000"})
    );
    ws.send(Message::Binary(b"through the proxy\n".to_vec().into()))
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < 18 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"through the proxy\n");
    drop(ws);

    // Only the sprite itself; nothing listening closes with 1011.
    for (init, why) in [
        (r#"{"host":"10.0.0.1","port":22}"#, "not in this sprite"),
        (
            r#"{"host":"localhost","port":7999}"#,
            "nothing listens on port 7999",
        ),
    ] {
        let mut ws = api.ws("/v1/sprites/px/proxy").await.expect("proxy");
        ws.send(Message::Text(init.into())).await.expect("init");
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1011);
                assert!(f.reason.contains(why), "{}", f.reason);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    api.sh("px", "kill $(cat /tmp/nc.pid); sleep 0.1").await;
    let closed = next_text(&mut watch).await;
    assert_eq!(closed["type"], "port_closed", "{closed}");
    assert_eq!(closed["port"], 7000);
    api.delete("px").await;
}

async fn next_text<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("json"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_service_with_http_port_gets_the_url() {
    let d = Daemon::start();
    let api = d.client();
    api.create("sv").await;
    set_auth(&api, "sv", "public").await;
    api.sh(
        "sv",
        "mkdir -p /tmp/www && echo from-service > /tmp/www/index.html",
    )
    .await;
    let r = api
        .req(reqwest::Method::PUT, "/v1/sprites/sv/services/web")
        .json(&serde_json::json!({
            "cmd": "busybox", "args": ["httpd", "-f", "-p", "9090", "-h", "/tmp/www"], "http_port": 9090
        }))
        .send()
        .await
        .expect("service");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let c = url_client(&d, &["sv"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c.get(url(&d, "sv", "/")).send().await.expect("get");
        let status = r.status();
        let body = r.text().await.expect("body");
        if status == 200 {
            assert_eq!(body, "from-service\n");
            break;
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.delete("sv").await;
}

/// Issue 19: a public sprite's server never receives one of our tokens, in
/// any scheme or header; it cannot set the session cookie; and the login's
/// `next` cannot leave the host, whatever a browser strips from it.
#[tokio::test]
async fn tokens_cookies_and_redirects_stay_ours() {
    use base64::Engine as _;
    let d = Daemon::start();
    let api = d.client();
    api.create("pub").await;
    set_auth(&api, "pub", "public").await;
    serve_web(&api, "pub", 8080).await;
    api.sh(
        "pub",
        r#"printf '#!/bin/sh\necho "Content-Type: text/plain"\necho "Set-Cookie: sprite_session=tossed; Domain=sprites.localhost; Path=/"\necho "Set-Cookie: app=1; Path=/"\necho\necho set\n' > /tmp/srv/cgi-bin/c && chmod +x /tmp/srv/cgi-bin/c"#,
    )
    .await;
    let c = url_client(&d, &["pub"]);
    let token = &api.token;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    for (what, values) in [
        ("lowercase bearer", vec![format!("bearer {token}")]),
        ("BEARER", vec![format!("BEARER {token}")]),
        ("basic password", vec![basic("x", token)]),
        ("basic user", vec![basic(token, "")]),
        ("bare", vec![token.to_string()]),
        ("another scheme", vec![format!("FlyV1 {token}")]),
        (
            "a second header",
            vec!["Bearer app-own".to_string(), format!("Bearer {token}")],
        ),
    ] {
        let mut req = c.get(url(&d, "pub", "/cgi-bin/h"));
        for v in &values {
            req = req.header("authorization", v);
        }
        let r = req.send().await.expect("get");
        assert_eq!(r.status(), 200, "{what}");
        let body = r.text().await.expect("body");
        assert!(
            !body.contains(token.as_str()),
            "{what}: the sprite saw our token:\n{body}"
        );
        if what == "a second header" {
            assert!(body.contains("HTTP_AUTHORIZATION=Bearer app-own"), "{body}");
        }
    }
    // The app's own credentials pass (busybox httpd hands a CGI bearer
    // credentials, not Basic ones: those are unit-tested).
    let r = c
        .get(url(&d, "pub", "/cgi-bin/h"))
        .header("authorization", "Bearer app-own")
        .send()
        .await
        .expect("get");
    let body = r.text().await.expect("body");
    assert!(body.contains("HTTP_AUTHORIZATION=Bearer app-own"), "{body}");
    // A login link followed to a public sprite: answered here, not passed.
    let r = c
        .get(url(
            &d,
            "pub",
            &format!("/__sprite/login?token={token}&next=/cgi-bin/h"),
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/cgi-bin/h");

    // The session cookie is the daemon's: a sprite's Set-Cookie of it goes.
    let r = c
        .get(url(&d, "pub", "/cgi-bin/c"))
        .send()
        .await
        .expect("get");
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(cookies, ["app=1; Path=/"], "{cookies:?}");

    // `next` with what browsers drop (a tab, a newline) or rewrite (`\`).
    set_auth(&api, "pub", "sprite").await;
    for next in [
        "/%09/evil.example/",
        "/%0a/evil.example/",
        "/%5C/evil.example",
    ] {
        let r = c
            .get(url(
                &d,
                "pub",
                &format!("/__sprite/login?token={token}&next={next}"),
            ))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 303, "{next}");
        assert_eq!(r.headers()["location"], "/", "{next}");
    }
}
