//! Diagnostics on the agent's stderr (the sprite's console).
//!
//! Writing never fails loudly: as PID 1 the agent's stderr may be a closed
//! pipe, and a log line is never worth a panic.

use std::io::Write;

/// Write one line, prefixed with the program name; errors are ignored.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "sprite-agent: {args}");
}

/// `log!("...", args)`: one diagnostic line on stderr.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
pub(crate) use log;
