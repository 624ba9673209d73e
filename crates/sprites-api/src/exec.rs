//! Exec over WebSocket: the stream ids of the non-TTY binary framing and the
//! JSON text messages of both modes.

use serde::{Deserialize, Serialize};

/// client → server: `0x00` + data is stdin.
pub const STDIN: u8 = 0x00;
/// server → client: `0x01` + data is stdout.
pub const STDOUT: u8 = 0x01;
/// server → client: `0x02` + data is stderr.
pub const STDERR: u8 = 0x02;
/// server → client: `0x03` + one byte is the exit code.
pub const EXIT: u8 = 0x03;
/// client → server: a lone `0x04` closes stdin.
pub const STDIN_EOF: u8 = 0x04;

/// Capabilities advertised in the `X-Sprite-Capabilities` upgrade header.
pub const CAPABILITIES: &str = "signal,resize";

/// Text frames of the exec stream (both modes, both directions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextMessage {
    Resize {
        cols: u16,
        rows: u16,
    },
    Signal {
        signal: String,
    },
    Exit {
        exit_code: i32,
    },
    SessionInfo {
        /// A string, as the hosted service writes it and the Go SDK reads
        /// it (`"session_id":"1696"`); a number from an older server reads
        /// too.
        #[serde(deserialize_with = "string_or_number")]
        session_id: String,
        command: String,
        created: String,
        cols: u16,
        rows: u16,
        is_owner: bool,
        tty: bool,
    },
    PortOpened(crate::port::SessionPort),
    PortClosed(crate::port::SessionPort),
}

/// An id written as a string or, by older servers, as a number.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    })
}

/// Map an exit status to the one byte the non-TTY framing carries.
pub fn exit_byte(code: i32) -> u8 {
    (code & 0xff) as u8
}

/// Normalise a signal name as clients send it (`TERM`, `SIGTERM`, `sigterm`).
pub fn signal_name(raw: &str) -> String {
    let up = raw.trim().to_ascii_uppercase();
    if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_messages_use_the_wire_names() {
        let m: TextMessage = serde_json::from_str(r#"{"type":"resize","cols":100,"rows":40}"#)
            .expect("resize parses");
        assert_eq!(
            m,
            TextMessage::Resize {
                cols: 100,
                rows: 40
            }
        );
        let exit = serde_json::to_string(&TextMessage::Exit { exit_code: 3 }).expect("json");
        assert_eq!(exit, r#"{"type":"exit","exit_code":3}"#);
    }

    #[test]
    fn session_ids_are_strings_on_the_wire() {
        let info = TextMessage::SessionInfo {
            session_id: "47".into(),
            command: "sh".into(),
            created: "2026-01-05T10:30:00Z".into(),
            cols: 80,
            rows: 24,
            is_owner: true,
            tty: false,
        };
        let text = serde_json::to_string(&info).expect("json");
        assert!(text.contains(r#""session_id":"47""#), "{text}");
        let old = text.replace(r#""47""#, "47");
        assert_eq!(
            serde_json::from_str::<TextMessage>(&old).expect("a number reads"),
            info
        );
    }

    #[test]
    fn signal_names_are_normalised() {
        assert_eq!(signal_name("TERM"), "SIGTERM");
        assert_eq!(signal_name("sigkill"), "SIGKILL");
        assert_eq!(exit_byte(256 + 7), 7);
    }
}
