//! A service's log: `<state>/logs/<name>.log`, stdout and stderr lines in
//! the order they came, with the supervisor's own notes (`[sprite] ...`).
//!
//! Rotated by size: when the file would pass [`MAX_FILE`] it becomes
//! `<name>.log.1` (replacing the previous one) and a new file starts, so a
//! service never holds more than twice that on the volume however much it
//! writes. Files are 0644: the sprite's users may read them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest size of one log file before it is rotated.
pub const MAX_FILE: u64 = 2 * 1024 * 1024;
const FILE_MODE: u32 = 0o644;
/// At most this much is read from the end of the files to answer a tail.
const TAIL_READ_MAX: u64 = 2 * MAX_FILE;

/// Path of the current log of `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

fn rotated(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log.1"))
}

/// The writing end of one service's log.
pub struct LogFile {
    path: PathBuf,
    rotated: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

impl LogFile {
    pub fn new(dir: &Path, name: &str) -> LogFile {
        LogFile::with_limit(dir, name, MAX_FILE)
    }

    fn with_limit(dir: &Path, name: &str, max: u64) -> LogFile {
        LogFile {
            path: path(dir, name),
            rotated: rotated(dir, name),
            file: None,
            size: 0,
            max,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `bytes`, rotating first when they would not fit. Errors (a
    /// full volume) are reported once per failed write and the bytes dropped:
    /// a log must never stop the service.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max {
            self.rotate()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        match f.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Reopen next time: the file may have been removed or the
                // volume may have room again.
                self.file = None;
                Err(e)
            }
        }
    }

    /// A line of the supervisor's own, marked as such.
    pub fn note(&mut self, text: &str) -> io::Result<()> {
        self.write(format!("[sprite] {text}\n").as_bytes())
    }

    fn open(&mut self) -> io::Result<()> {
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        fs::rename(&self.path, &self.rotated)?;
        self.open()
    }
}

/// Remove both files of `name`'s log.
pub fn remove(dir: &Path, name: &str) {
    let _ = fs::remove_file(path(dir, name));
    let _ = fs::remove_file(rotated(dir, name));
}

/// The last `lines` lines of `name`'s log (the rotated file first when the
/// current one holds fewer), at most about [`TAIL_READ_MAX`] bytes.
pub fn tail(dir: &Path, name: &str, lines: usize) -> io::Result<Vec<u8>> {
    if lines == 0 {
        return Ok(Vec::new());
    }
    let mut text = read_end(&path(dir, name), TAIL_READ_MAX)?;
    if count_lines(&text) < lines && (text.len() as u64) < TAIL_READ_MAX {
        let room = TAIL_READ_MAX - text.len() as u64;
        let mut older = read_end(&rotated(dir, name), room)?;
        older.extend_from_slice(&text);
        text = older;
    }
    Ok(last_lines(&text, lines).to_vec())
}

/// Up to `max` bytes from the end of `path`; nothing if it does not exist.
fn read_end(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    if start > 0 {
        // The first line was cut: drop it.
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                buf.drain(..=i);
            }
            None => buf.clear(),
        }
    }
    Ok(buf)
}

/// Lines in `text`, counting a last line without its newline.
fn count_lines(text: &[u8]) -> usize {
    let newlines = text.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(text.last().is_some_and(|&b| b != b'\n'))
}

/// The suffix of `text` holding its last `n` lines.
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &text[text.len()..];
    }
    // A trailing newline ends the last line; it does not start another.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "sprite-agent-logs-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&p).expect("dir");
        p
    }

    #[test]
    fn last_lines_of_text() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
        assert_eq!(count_lines(b"a\nb"), 2);
        assert_eq!(count_lines(b"a\nb\n"), 2);
        assert_eq!(count_lines(b""), 0);
    }

    #[test]
    fn rotation_bounds_the_files_and_tail_spans_them() {
        let dir = temp_dir("rot");
        let mut log = LogFile::with_limit(&dir, "chatty", 100);
        for i in 0..100 {
            log.write(format!("line {i:03}\n").as_bytes())
                .expect("write");
        }
        let cur = fs::metadata(path(&dir, "chatty")).expect("current").len();
        let old = fs::metadata(rotated(&dir, "chatty"))
            .expect("rotated")
            .len();
        assert!(cur <= 100 && old <= 100, "{cur} {old}");
        // Each file holds whole lines (9 bytes each, 11 per file): the
        // current one has line 99 alone, the rotated one 88 to 98.
        let t = tail(&dir, "chatty", 3).expect("tail");
        assert_eq!(t, b"line 097\nline 098\nline 099\n");
        let t = tail(&dir, "chatty", 15).expect("tail across files");
        let text = String::from_utf8(t).expect("utf-8");
        assert_eq!(text.lines().count(), 12, "{text}");
        assert!(text.ends_with("line 099\n"));
        assert!(text.starts_with("line 088\n"), "{text}");

        log.note("stopped").expect("note");
        let t = tail(&dir, "chatty", 1).expect("tail");
        assert_eq!(t, b"[sprite] stopped\n");

        remove(&dir, "chatty");
        assert_eq!(tail(&dir, "chatty", 10).expect("gone"), b"");
        let _ = fs::remove_dir_all(&dir);
    }
}
