//! The filesystem API: the HTTP wire types of `/v1/sprites/{name}/fs/...`
//! and the daemon ↔ agent messages that carry each call into the sprite.
//!
//! Paths are bytes. Linux file names need not be UTF-8, so a path travels
//! as [`PathBytes`]: a JSON string when it is valid UTF-8, else
//! `{"base64": "<the raw bytes>"}`. Listings always give `name` and `path`
//! as strings (invalid bytes replaced by U+FFFD, so the official SDKs can
//! show them) and add `nameBase64`/`pathBase64` with the exact bytes when a
//! name is not UTF-8. Query parameters carry raw bytes percent-encoded.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The encoding of raw path bytes in JSON (standard alphabet, padded).
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A path as raw bytes (see the module docs for its JSON forms).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathBytes(pub Vec<u8>);

impl PathBytes {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        PathBytes(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The path for display: invalid UTF-8 replaced by U+FFFD.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// The base64 of the bytes when they are not UTF-8 (the `...Base64`
    /// fields of the API), else `None`.
    pub fn base64_if_not_utf8(&self) -> Option<String> {
        match std::str::from_utf8(&self.0) {
            Ok(_) => None,
            Err(_) => Some(B64.encode(&self.0)),
        }
    }

    /// Decode a `...Base64` field.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        B64.decode(text.trim())
            .map(PathBytes)
            .map_err(|e| format!("bad base64 path: {e}"))
    }

    /// Percent-encode for a query string: unreserved bytes stay, every other
    /// byte (including `/`, spaces and invalid UTF-8) becomes `%XX`.
    pub fn percent_encoded(&self) -> String {
        percent_encode(&self.0)
    }
}

impl fmt::Debug for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.lossy())
    }
}

impl From<&str> for PathBytes {
    fn from(s: &str) -> Self {
        PathBytes(s.as_bytes().to_vec())
    }
}

impl From<String> for PathBytes {
    fn from(s: String) -> Self {
        PathBytes(s.into_bytes())
    }
}

impl From<&[u8]> for PathBytes {
    fn from(b: &[u8]) -> Self {
        PathBytes(b.to_vec())
    }
}

#[derive(Serialize, Deserialize)]
struct Base64Form {
    base64: String,
}

impl Serialize for PathBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Base64Form {
                base64: B64.encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for PathBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Raw(Base64Form),
        }
        match Form::deserialize(d)? {
            Form::Text(t) => Ok(PathBytes(t.into_bytes())),
            Form::Raw(r) => PathBytes::from_base64(&r.base64).map_err(serde::de::Error::custom),
        }
    }
}

/// Percent-encode bytes for a query value (RFC 3986 unreserved kept).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decode a form-encoded query value to raw bytes: `+` is a space, `%XX` a
/// byte; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Every value of `key` in a raw query string, decoded to bytes, in order.
pub fn query_values(raw: &str, key: &str) -> Vec<Vec<u8>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key.as_bytes()).then(|| percent_decode(v))
        })
        .collect()
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// One entry of `fs/list` (and the answer of `fs/stat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsEntry {
    /// The base name; in a recursive listing, the path relative to the
    /// listed directory. Invalid UTF-8 is replaced (see `name_base64`).
    pub name: String,
    /// The absolute path (the working directory joined, `.`/`..` folded).
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits in octal, four digits (`"0644"`).
    pub mode: String,
    /// Last modification, RFC 3339 UTC.
    pub mod_time: String,
    pub is_dir: bool,
    /// Extension: the target of a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// Extension: the exact bytes of `name`, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_base64: Option<String>,
    /// Extension: the exact bytes of `path`, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_base64: Option<String>,
}

impl FsEntry {
    /// The exact bytes of `path`.
    pub fn raw_path(&self) -> PathBytes {
        raw_or_text(self.path_base64.as_deref(), &self.path)
    }

    /// The exact bytes of `name`.
    pub fn raw_name(&self) -> PathBytes {
        raw_or_text(self.name_base64.as_deref(), &self.name)
    }

    /// The permission bits parsed from `mode`.
    pub fn mode_bits(&self) -> Option<u32> {
        parse_mode(&self.mode).ok()
    }
}

fn raw_or_text(b64: Option<&str>, text: &str) -> PathBytes {
    b64.and_then(|b| PathBytes::from_base64(b).ok())
        .unwrap_or_else(|| PathBytes::from(text))
}

/// `GET fs/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    pub path: String,
    pub entries: Vec<FsEntry>,
    pub count: usize,
}

/// `PUT fs/write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResponse {
    pub path: String,
    pub size: u64,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_base64: Option<String>,
}

/// `DELETE fs/delete`: every path removed (children before their directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub deleted: Vec<String>,
    pub count: usize,
}

/// The answer of `fs/rename`, `fs/copy`, `fs/chmod` and `fs/chown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeResponse {
    /// The path acted on (the source of a rename or copy).
    pub path: String,
    /// The source of a rename or copy again, under the name the SDKs
    /// declare (`FsRenameResponse.source`, `FsCopyResponse.source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The mode set by a chmod, four octal digits (`FsChmodResponse.mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The destination of a rename or copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// How many files and directories were changed or created.
    pub count: u64,
}

/// The error body of the filesystem calls: `error` is the sentence, `code`
/// the errno name, `path` the absolute path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsErrorBody {
    pub error: String,
    pub code: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_base64: Option<String>,
}

/// Who a call runs as: `user` (a name or uid, sprited's extension) or
/// `asRoot` (the JS SDK's flag); default the sprite's `sprite` user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_root: Option<bool>,
}

impl RunAs {
    /// The user to give the agent (`None`: its default).
    pub fn user(&self) -> Option<String> {
        if self.as_root == Some(true) {
            return Some("root".into());
        }
        self.user.clone().filter(|u| !u.trim().is_empty())
    }
}

/// `POST fs/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenameRequest {
    pub source: PathBytes,
    pub dest: PathBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBytes>,
    #[serde(flatten)]
    pub run_as: RunAs,
}

/// `POST fs/copy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyRequest {
    pub source: PathBytes,
    pub dest: PathBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_attrs: Option<bool>,
    #[serde(flatten)]
    pub run_as: RunAs,
}

/// `POST fs/chmod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChmodRequest {
    pub path: PathBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBytes>,
    /// Octal string (`"0755"`) or a number (taken as the mode's value).
    pub mode: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(flatten)]
    pub run_as: RunAs,
}

/// `POST fs/mkdir` (extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MkdirRequest {
    pub path: PathBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBytes>,
    /// Octal string or number; default 0755.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<serde_json::Value>,
    /// Make missing parents too, and accept an existing directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<bool>,
    #[serde(flatten)]
    pub run_as: RunAs,
}

/// `POST fs/chown` (the JS SDK's call): ids or names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChownRequest {
    pub path: PathBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(flatten)]
    pub run_as: RunAs,
}

/// Parse a mode: octal digits (`"0644"`, `"755"`, `"0o755"`), at most 0o7777.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "mode {text:?} is not an octal permission value (e.g. 0644)"
        )),
    }
}

/// A JSON mode: an octal string, or a number holding the mode's value.
pub fn mode_from_json(v: &serde_json::Value) -> Result<u32, String> {
    match v {
        serde_json::Value::String(s) => parse_mode(s),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(m) if m <= 0o7777 => Ok(m as u32),
            _ => Err(format!("mode {n} is out of range (0 to 0o7777)")),
        },
        other => Err(format!("mode {other} is not an octal string or a number")),
    }
}

/// A mode as the API writes it: four octal digits.
pub fn format_mode(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// An id or name of a JSON chown body as text for the agent.
pub fn owner_from_json(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        serde_json::Value::Number(n) if n.as_u64().is_some_and(|u| u <= u64::from(u32::MAX)) => {
            Ok(n.to_string())
        }
        other => Err(format!("{other} is not a user/group name or id")),
    }
}

// ---- daemon ↔ agent ----

/// `Request::Fs`: one filesystem call, run by the agent as `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRequest {
    /// User name or uid; `None`: `sprite` where it exists, else root.
    #[serde(default)]
    pub user: Option<String>,
    /// What relative paths resolve against; relative itself, against the
    /// user's home. `None`: the home (or `/` when it does not exist).
    #[serde(default)]
    pub working_dir: Option<PathBytes>,
    pub call: FsCall,
}

/// Bytes `start..end` of a file (`end` exclusive, as a slice; `None`: to
/// the end of the file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

/// `Create parent directories` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MkdirParents {
    /// Every missing directory (`mkdir -p`): the default.
    All,
    /// Only the file's own directory, when its parent exists (`mkdir`):
    /// `mkdirParents=false`, which the SDKs' `mkdir(parents=False)` sends.
    Last,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FsCall {
    /// Answer `Opened`, then the file as `STDOUT` frames, then `Done`.
    Read {
        path: PathBytes,
        /// Only these bytes of the file (the control WebSocket's byte
        /// ranges); `None`: all of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<ByteRange>,
    },
    /// Answer `Opened` (or `Error`); then the daemon sends the bytes as
    /// `STDIN` frames and `STDIN_EOF`; answer `Done` once the file is in place.
    Write {
        path: PathBytes,
        /// Permission bits; `None`: 0644 for a new file, unchanged otherwise.
        mode: Option<u32>,
        mkdir_parents: MkdirParents,
    },
    /// Answer `Entries` frames (a directory's entries, or the path itself
    /// when it is not a directory), then `Done` with the count.
    List {
        path: PathBytes,
        recursive: bool,
        /// A glob (`*`, `?`, `[...]`) entry names must match.
        pattern: Option<String>,
    },
    /// One `Entries` frame with the path itself (symlinks followed), `Done`.
    Stat {
        path: PathBytes,
    },
    /// `Deleted` frames, then `Done` with the count.
    Delete {
        path: PathBytes,
        recursive: bool,
    },
    /// Make a directory (`parents`: and missing ones above it, and an
    /// existing directory is no error, as `mkdir -p`); `Done`.
    Mkdir {
        path: PathBytes,
        /// Permission bits; `None`: 0755.
        mode: Option<u32>,
        parents: bool,
    },
    Rename {
        source: PathBytes,
        dest: PathBytes,
    },
    Copy {
        source: PathBytes,
        dest: PathBytes,
        recursive: bool,
        preserve_attrs: bool,
    },
    Chmod {
        path: PathBytes,
        mode: u32,
        recursive: bool,
    },
    Chown {
        path: PathBytes,
        uid: Option<String>,
        gid: Option<String>,
        recursive: bool,
    },
    /// Watch paths for changes (`recursive`: and every directory below):
    /// answer `Watching`, then `Changed` frames (and `Overflow` when
    /// changes were lost) until the daemon hangs up.
    Watch {
        paths: Vec<PathBytes>,
        recursive: bool,
    },
}

/// What happened to a watched path, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsOp {
    Create,
    Write,
    Remove,
    Rename,
    Chmod,
}

/// agent → daemon JSON frames of a filesystem call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FsReply {
    /// Read: the file is open; `size` is how many bytes follow (`None`: up
    /// to `Done`, for files whose size the kernel does not know, like
    /// `/proc`). Write: ready for the bytes.
    Opened {
        path: PathBytes,
        size: Option<u64>,
        mode: u32,
    },
    Entries {
        entries: Vec<FsEntry>,
    },
    Deleted {
        paths: Vec<PathBytes>,
    },
    /// The call completed. `size` is the bytes read or written; `count`
    /// the entries listed, deleted or changed.
    Done {
        path: PathBytes,
        /// The destination of a rename or copy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dest: Option<PathBytes>,
        #[serde(default)]
        size: u64,
        #[serde(default)]
        mode: u32,
        #[serde(default)]
        count: u64,
    },
    /// Watch: every path is watched (absolute and folded).
    Watching {
        paths: Vec<PathBytes>,
    },
    /// Watch: a change under a watched path.
    Changed {
        path: PathBytes,
        op: FsOp,
        is_dir: bool,
        /// The file's size after a create or write.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// Watch: changes were lost (the kernel's queue overflowed while the
    /// client was slow), or some directories are not watched.
    Overflow {
        message: String,
    },
    Error {
        /// The errno name (`ENOENT`, `EACCES`, ...), or `EINVAL` for a
        /// request the agent refuses.
        code: String,
        message: String,
        /// Absent in the agent's generic error replies.
        #[serde(default)]
        path: PathBytes,
    },
}

/// A client's message on the `fs/watch` WebSocket (the JS SDK's
/// `filesystem().watch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchRequest {
    #[serde(rename_all = "camelCase")]
    Subscribe {
        paths: Vec<PathBytes>,
        #[serde(default)]
        recursive: bool,
        #[serde(default)]
        working_dir: Option<PathBytes>,
    },
}

/// The server's messages on the `fs/watch` WebSocket. Times are RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchMessage {
    /// The paths are watched: changes from now on are told.
    Subscribed { paths: Vec<String> },
    #[serde(rename_all = "camelCase")]
    Event {
        path: String,
        event: FsOp,
        timestamp: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        is_dir: bool,
    },
    /// Something could not be watched, or changes were lost
    /// (`code: "overflow"`); a failed subscribe is followed by the close.
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_paths_are_strings_and_others_base64() {
        let p = PathBytes::from("/home/sprite/a b.txt");
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            r#""/home/sprite/a b.txt""#
        );
        let raw = PathBytes(b"/tmp/\xff\xfe".to_vec());
        let json = serde_json::to_string(&raw).expect("json");
        assert_eq!(json, r#"{"base64":"L3RtcC///g=="}"#);
        let back: PathBytes = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, raw);
        assert_eq!(raw.lossy(), "/tmp/\u{fffd}\u{fffd}");
        assert_eq!(raw.base64_if_not_utf8().as_deref(), Some("L3RtcC///g=="));
        assert_eq!(p.base64_if_not_utf8(), None);
        assert!(serde_json::from_str::<PathBytes>(r#"{"base64":"!!"}"#).is_err());
    }

    #[test]
    fn query_bytes_round_trip() {
        let raw = b"/home/sprite/x y+z%\xff/\xc3\xa9";
        let enc = percent_encode(raw);
        assert_eq!(enc, "%2Fhome%2Fsprite%2Fx%20y%2Bz%25%FF%2F%C3%A9");
        assert_eq!(percent_decode(&enc), raw.to_vec());
        assert_eq!(percent_decode("a+b%20c"), b"a b c".to_vec());
        assert_eq!(percent_decode("100%"), b"100%".to_vec());
        assert_eq!(percent_decode("%zz%4"), b"%zz%4".to_vec());
        assert_eq!(percent_decode("%41"), b"A".to_vec());
        let q = "path=%2Ftmp%2Fa&workingDir=%2F&path=%FF&flag";
        assert_eq!(
            query_values(q, "path"),
            vec![b"/tmp/a".to_vec(), vec![0xff]]
        );
        assert_eq!(query_values(q, "flag"), vec![Vec::<u8>::new()]);
        assert!(query_values(q, "none").is_empty());
    }

    #[test]
    fn modes_parse_and_format() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("0o4755"), Ok(0o4755));
        assert!(parse_mode("").is_err());
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("17777").is_err());
        assert_eq!(format_mode(0o100644), "0644");
        assert_eq!(format_mode(0o755), "0755");
        assert_eq!(mode_from_json(&serde_json::json!("0600")), Ok(0o600));
        assert_eq!(mode_from_json(&serde_json::json!(493)), Ok(0o755));
        assert!(mode_from_json(&serde_json::json!(true)).is_err());
    }

    #[test]
    fn sdk_bodies_parse() {
        let r: RenameRequest = serde_json::from_str(
            r#"{"source":"a","dest":{"base64":"/w=="},"workingDir":"/tmp","asRoot":true}"#,
        )
        .expect("rename");
        assert_eq!(r.dest, PathBytes(vec![0xff]));
        assert_eq!(r.run_as.user().as_deref(), Some("root"));
        let c: CopyRequest =
            serde_json::from_str(r#"{"source":"a","dest":"b","workingDir":"/","recursive":true}"#)
                .expect("copy");
        assert_eq!(c.recursive, Some(true));
        assert_eq!(c.run_as.user(), None);
        let m: ChmodRequest =
            serde_json::from_str(r#"{"path":"x","mode":"0755","user":"nobody"}"#).expect("chmod");
        assert_eq!(mode_from_json(&m.mode), Ok(0o755));
        assert_eq!(m.run_as.user().as_deref(), Some("nobody"));
        let o: ChownRequest =
            serde_json::from_str(r#"{"path":"x","uid":1000,"gid":"staff"}"#).expect("chown");
        assert_eq!(
            owner_from_json(o.uid.as_ref().expect("uid")),
            Ok("1000".into())
        );
        assert_eq!(
            owner_from_json(o.gid.as_ref().expect("gid")),
            Ok("staff".into())
        );
    }

    #[test]
    fn agent_messages_round_trip() {
        let req = FsRequest {
            user: None,
            working_dir: Some("/home/sprite".into()),
            call: FsCall::Write {
                path: PathBytes(b"a\xffb".to_vec()),
                mode: Some(0o600),
                mkdir_parents: MkdirParents::All,
            },
        };
        let json = serde_json::to_string(&req).expect("json");
        assert!(json.contains(r#""kind":"write""#), "{json}");
        assert_eq!(
            serde_json::from_str::<FsRequest>(&json).expect("parse"),
            req
        );
        let reply = FsReply::Done {
            path: "/x".into(),
            dest: None,
            size: 3,
            mode: 0o644,
            count: 0,
        };
        let json = serde_json::to_string(&reply).expect("json");
        assert_eq!(
            serde_json::from_str::<FsReply>(&json).expect("parse"),
            reply
        );
    }

    #[test]
    fn watch_messages_are_shaped_as_the_js_sdk_reads_them() {
        let sub: WatchRequest = serde_json::from_str(
            r#"{"type":"subscribe","paths":["a"],"recursive":true,"workingDir":"/tmp"}"#,
        )
        .expect("subscribe");
        assert_eq!(
            sub,
            WatchRequest::Subscribe {
                paths: vec!["a".into()],
                recursive: true,
                working_dir: Some("/tmp".into()),
            }
        );
        let bare: WatchRequest =
            serde_json::from_str(r#"{"type":"subscribe","paths":["/x"]}"#).expect("bare");
        assert!(matches!(
            bare,
            WatchRequest::Subscribe {
                recursive: false,
                working_dir: None,
                ..
            }
        ));
        let ev = WatchMessage::Event {
            path: "/tmp/a".into(),
            event: FsOp::Write,
            timestamp: "2026-01-01T00:00:00Z".into(),
            size: Some(3),
            is_dir: false,
        };
        assert_eq!(
            serde_json::to_value(&ev).expect("json"),
            serde_json::json!({"type": "event", "path": "/tmp/a", "event": "write",
                "timestamp": "2026-01-01T00:00:00Z", "size": 3, "isDir": false})
        );
    }
}
