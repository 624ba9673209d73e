//! The NDJSON events of long operations (`info`…, then `complete` or
//! `error`), as lines for a person, printed as they arrive.

use std::io::Write;

use sprites_api::sprite::StreamEvent;

use crate::client::Client;
use crate::error::Error;

/// What one event means for the operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Still going; the text to show, if any.
    Progress(Option<String>),
    /// Finished well; a closing text, if any.
    Done(Option<String>),
    /// Failed despite the 200.
    Failed(String),
}

pub fn step(event: &StreamEvent) -> Step {
    let text = event
        .message
        .clone()
        .or_else(|| event.data.as_ref().and_then(value_text));
    match event.kind.as_str() {
        "complete" => Step::Done(text),
        "error" => Step::Failed(
            event
                .error
                .clone()
                .filter(|e| !e.is_empty())
                .or(text)
                .unwrap_or_else(|| "the operation failed".to_string()),
        ),
        _ => Step::Progress(text),
    }
}

/// A value as one line: strings bare, anything else as compact JSON.
fn value_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// POST `path` and print each event's line to `out` as it arrives (flushed:
/// a restore may kill this process at any moment). `what` names the
/// operation for the message when the stream ends without an outcome.
pub async fn follow<B: serde::Serialize>(
    client: &Client,
    path: &str,
    body: &B,
    what: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut outcome: Option<Result<(), Error>> = None;
    client
        .post_ndjson(path, body, |event: StreamEvent| {
            if outcome.is_some() {
                return Ok(());
            }
            let line = match step(&event) {
                Step::Progress(text) => text,
                Step::Done(text) => {
                    outcome = Some(Ok(()));
                    text
                }
                Step::Failed(message) => {
                    outcome = Some(Err(Error::Failed(message)));
                    None
                }
            };
            if let Some(line) = line {
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Ok(())
        })
        .await?;
    outcome.unwrap_or_else(|| {
        Err(Error::Failed(format!(
            "the API ended the stream before the {what} completed"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> StreamEvent {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn steps() {
        assert_eq!(
            step(&event(r#"{"type":"info","data":"copying","time":"t"}"#)),
            Step::Progress(Some("copying".into()))
        );
        assert_eq!(
            step(&event(r#"{"type":"info","data":{"files":3}}"#)),
            Step::Progress(Some(r#"{"files":3}"#.into()))
        );
        assert_eq!(step(&event(r#"{"type":"info"}"#)), Step::Progress(None));
        assert_eq!(
            step(&event(
                r#"{"type":"complete","data":"checkpoint v3 created"}"#
            )),
            Step::Done(Some("checkpoint v3 created".into()))
        );
        assert_eq!(step(&event(r#"{"type":"complete"}"#)), Step::Done(None));
        assert_eq!(
            step(&event(r#"{"type":"error","error":"disk full","data":"x"}"#)),
            Step::Failed("disk full".into())
        );
        assert_eq!(
            step(&event(r#"{"type":"error","message":"no space"}"#)),
            Step::Failed("no space".into())
        );
        assert_eq!(
            step(&event(r#"{"type":"error"}"#)),
            Step::Failed("the operation failed".into())
        );
    }
}
