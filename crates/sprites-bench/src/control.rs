//! The control WebSocket against one WebSocket per command: 100 short
//! commands (`true`) through one `/control` connection, as the SDKs'
//! control mode sends them, and 100 through `/exec`, each on its own
//! connection, in the same run on the same sprite.

use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::{exec_true, ms, Daemon, Row};

const COMMANDS: usize = 100;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(d: &Daemon, name: &str) -> anyhow::Result<Ws> {
    let url = format!(
        "{}/v1/sprites/{name}/control",
        d.url.replacen("http", "ws", 1)
    );
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", d.token).parse()?);
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

/// One `true` on a control connection, to its `op.complete`.
async fn control_true(ws: &mut Ws) -> anyhow::Result<()> {
    let start =
        r#"control:{"type":"op.start","op":"exec","args":{"cmd":["true"],"stdin":"false"}}"#;
    ws.send(Message::Text(start.into())).await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m? {
            if let Some(body) = t.strip_prefix("control:") {
                let v: serde_json::Value = serde_json::from_str(body)?;
                if v["type"] == "op.complete" && v["args"]["exitCode"] == 0 {
                    return Ok(());
                }
                bail!("control: {v}");
            }
        }
    }
    bail!("the control connection closed")
}

pub async fn cases(d: &Daemon, rows: &mut Vec<Row>, notes: &mut Vec<String>) -> anyhow::Result<()> {
    let name = "warmup";
    let mut ws = connect(d, name).await.context("control connection")?;
    control_true(&mut ws).await?;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let all = Instant::now();
    for _ in 0..COMMANDS {
        let t = Instant::now();
        control_true(&mut ws).await?;
        ours.push(ms(t.elapsed()));
    }
    let control_total = ms(all.elapsed());
    let _ = ws.close(None).await;
    let all = Instant::now();
    for _ in 0..COMMANDS {
        let t = Instant::now();
        exec_true(d, name).await?;
        base.push(ms(t.elapsed()));
    }
    let plain_total = ms(all.elapsed());
    rows.push(Row {
        case: "short exec (`true`): one control WebSocket vs a WebSocket each",
        ours,
        base,
        target: "faster than a WebSocket each",
    });
    notes.push(format!(
        "{COMMANDS} commands: {control_total:.0} ms through one control WebSocket, \
         {plain_total:.0} ms with a WebSocket each ({:.2}×)",
        control_total / plain_total
    ));
    Ok(())
}
