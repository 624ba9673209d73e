//! Diagnostics on the agent's stderr (the sprite's console: on the host,
//! the sprite's `agent.log`).
//!
//! Writing never fails loudly: as PID 1 the agent's stderr may be a closed
//! pipe, and a log line is never worth a panic. What is written is
//! bounded, since processes in the sprite can make the agent log (signals
//! to PID 1, bad requests) and the file is on the host's disk: a line is cut
//! at [`MAX_LINE`] bytes, and once the file reaches [`MAX_FILE`] nothing
//! more is written until the daemon rotates it at the sprite's next start.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The longest line written; longer ones are cut, saying how much.
pub const MAX_LINE: usize = 512;
/// Past this size of the log file, lines are dropped.
pub const MAX_FILE: u64 = 4 << 20;

static FULL: AtomicBool = AtomicBool::new(false);

/// One line as written: `sprite-agent: ` and the text, cut at
/// [`MAX_LINE`] bytes (on a character boundary).
pub fn render(text: &str) -> String {
    let text = text.replace('\n', "\\n");
    if text.len() <= MAX_LINE {
        return format!("sprite-agent: {text}\n");
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "sprite-agent: {}... ({} bytes cut)\n",
        &text[..end],
        text.len() - end
    )
}

/// Write one line, prefixed with the program name; errors are ignored.
pub fn line(args: std::fmt::Arguments<'_>) {
    if FULL.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let size =
        nix::sys::stat::fstat(err.as_fd().as_raw_fd()).map_or(0, |st| st.st_size.max(0) as u64);
    if size >= MAX_FILE {
        FULL.store(true, Ordering::Relaxed);
        let _ = err.write_all(
            b"sprite-agent: the log is full; further lines are dropped until the sprite restarts\n",
        );
        return;
    }
    let _ = err.write_all(render(&args.to_string()).as_bytes());
}

/// A line that something outside the agent can make it write over and over
/// (a signal sent in a loop): written at most once per [`Repeats::EVERY`],
/// saying how many were left out.
pub struct Repeats {
    last: Option<std::time::Instant>,
    skipped: u64,
}

impl Repeats {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    pub const fn new() -> Self {
        Repeats {
            last: None,
            skipped: 0,
        }
    }

    /// `Some(skipped)` when this one is to be written.
    pub fn pass(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Self::EVERY => {
                self.skipped += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.skipped))
            }
        }
    }
}

impl Default for Repeats {
    fn default() -> Self {
        Self::new()
    }
}

/// `log!("...", args)`: one diagnostic line on stderr.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_newlines_kept_inside() {
        assert_eq!(render("short"), "sprite-agent: short\n");
        assert_eq!(render("a\nb"), "sprite-agent: a\\nb\n");
        let long = "é".repeat(100_000);
        let out = render(&long);
        assert!(out.len() < MAX_LINE + 64, "{}", out.len());
        assert!(out.ends_with(" bytes cut)\n"), "{out}");
    }

    #[test]
    fn repeats_pass_once_per_period_and_count_the_rest() {
        let mut r = Repeats::new();
        assert_eq!(r.pass(), Some(0));
        assert_eq!(r.pass(), None);
        assert_eq!(r.pass(), None);
        r.last = r.last.map(|t| t - Repeats::EVERY);
        assert_eq!(r.pass(), Some(2));
    }
}
