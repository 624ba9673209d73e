//! `pip install` in the standard image, with egress limited to the default
//! hosts (`include: defaults`, `*` denied). The one test that talks to a
//! real registry (PyPI).

mod common;

use common::Daemon;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_install_works_under_the_default_allow_list() {
    let d = Daemon::start();
    let api = d.client();
    let r = api
        .req(Method::POST, "/v1/sprites")
        .json(&json!({"name": "pip", "image": "standard"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = api
        .req(Method::POST, "/v1/sprites/pip/policy/network")
        .json(&json!({"rules": [{"include": "defaults"}, {"domain": "*", "action": "deny"}]}))
        .send()
        .await
        .expect("policy");
    assert_eq!(r.status(), 204);

    // Where the host itself trusts an extra CA for its registry traffic
    // (a TLS-inspecting egress proxy), the sprite is given the same bundle.
    let host_ca = ["PIP_CERT", "SSL_CERT_FILE"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .and_then(|path| std::fs::read(path).ok())
        .unwrap_or_default();
    let cert = if host_ca.is_empty() {
        ""
    } else {
        "--cert /tmp/host-ca.pem"
    };
    let script = format!(
        "cat > /tmp/host-ca.pem && python3 -m venv /tmp/v \
         && /tmp/v/bin/pip install --no-cache-dir -q {cert} six==1.16.0 \
         && /tmp/v/bin/python -c 'import six; print(six.__version__)'"
    );
    let o = api
        .exec_with("pip", &["bash", "-c", &script], "", &host_ca)
        .await;
    assert_eq!(
        o.out(),
        "1.16.0\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A name outside the list does not resolve.
    let o = api
        .exec(
            "pip",
            &["bash", "-c", "getent hosts example.com || echo NONE"],
        )
        .await;
    assert_eq!(o.out(), "NONE\n");
    api.delete("pip").await;
}
