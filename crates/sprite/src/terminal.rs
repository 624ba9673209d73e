//! The local terminal: is there one, its size, raw mode (always restored),
//! and prompts that read from it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use sprites_client::TtySize;

/// The settings raw mode replaced, for the panic hook to put back.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

pub fn stdin_is_tty() -> bool {
    io::stdin().is_terminal()
}

pub fn stdout_is_tty() -> bool {
    io::stdout().is_terminal()
}

/// The window size of the terminal on stdout (or stdin).
pub fn size() -> Option<TtySize> {
    window_size(io::stdout().as_raw_fd()).or_else(|| window_size(io::stdin().as_raw_fd()))
}

fn window_size(fd: i32) -> Option<TtySize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes one `winsize` into the struct we own; a
    // bad or non-terminal fd makes it fail with an error code, nothing more.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(TtySize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Raw mode on stdin until dropped: keys go through unprocessed (Ctrl+C is
/// a byte for the remote terminal, not a signal for us).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enable() -> io::Result<Self> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if let Ok(mut slot) = SAVED.lock() {
            *slot = Some(saved.clone());
        }
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
        if let Ok(mut slot) = SAVED.lock() {
            *slot = None;
        }
    }
}

/// Put the terminal back if raw mode is on; for the panic hook, where the
/// guard's drop may never run.
pub fn restore() {
    if let Ok(mut slot) = SAVED.try_lock() {
        if let Some(saved) = slot.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &saved);
        }
    }
}

/// Leave the terminal sane whatever happens, then report the panic as usual.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        // `println!` to a reader that went away: end quietly (see
        // `stdout_gone`).
        let printing = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("failed printing to stdout"));
        if printing && crate::stdout_gone() {
            std::process::exit(crate::STDOUT_GONE.into());
        }
        default(info);
    }));
}

/// Ask on the controlling terminal for a secret, with echo off.
pub fn read_secret(prompt: &str) -> io::Result<String> {
    let tty = open_tty()?;
    let saved = termios::tcgetattr(tty.as_fd())?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    write!(&tty, "{prompt}")?;
    termios::tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &quiet)?;
    let line = read_line(&tty);
    termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &saved)?;
    line
}

/// Ask on the controlling terminal; answers the line typed.
pub fn ask(prompt: &str) -> io::Result<String> {
    let tty = open_tty()?;
    write!(&tty, "{prompt}")?;
    read_line(&tty)
}

fn open_tty() -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open("/dev/tty")
}

fn read_line(tty: &File) -> io::Result<String> {
    let mut line = String::new();
    if BufReader::new(tty).read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The local terminal's variables a remote TTY needs to draw correctly.
pub fn forwarded_env() -> Vec<(String, String)> {
    ["TERM", "COLORTERM", "LANG", "LC_ALL"]
        .iter()
        .filter_map(|key| {
            std::env::var(key)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (key.to_string(), v))
        })
        .collect()
}
