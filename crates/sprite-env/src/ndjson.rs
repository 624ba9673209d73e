//! Newline-delimited JSON: whole lines out of body chunks cut anywhere.

/// Longest line kept while waiting for its newline.
pub const MAX_LINE: usize = 1 << 20;

/// Collects chunks and hands out complete, non-blank lines.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Add a chunk; calls `each` for every line it completes.
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), LineError<E>> {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(at) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + at];
            start += at + 1;
            if !is_blank(line) {
                each(line).map_err(LineError::Handler)?;
            }
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        Ok(())
    }

    /// The end of the body: a last line without a newline still counts.
    pub fn finish<E>(
        &mut self,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), LineError<E>> {
        let rest = std::mem::take(&mut self.pending);
        if !is_blank(&rest) {
            each(&rest).map_err(LineError::Handler)?;
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LineError<E> {
    TooLong,
    Handler(E),
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        let mut lines = Lines::default();
        let mut keep = |l: &[u8]| -> Result<(), ()> {
            got.push(String::from_utf8_lossy(l).into_owned());
            Ok(())
        };
        for c in chunks {
            lines.push(c, &mut keep).unwrap();
        }
        lines.finish(&mut keep).unwrap();
        got
    }

    #[test]
    fn lines_across_chunk_boundaries() {
        assert_eq!(
            collect(&[b"{\"a\":1}\n{\"b\"", b":2}\n", b"\n", b"{\"c\":3}"]),
            vec![r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]
        );
        assert_eq!(collect(&[b"x\r\n", b"  \n"]), vec!["x\r"]);
        assert!(collect(&[]).is_empty());
    }

    #[test]
    fn handler_errors_stop_and_long_lines_are_refused() {
        let mut lines = Lines::default();
        let r = lines.push(
            b"one\ntwo\n",
            |l: &[u8]| if l == b"one" { Err(7) } else { Ok(()) },
        );
        assert_eq!(r, Err(LineError::Handler(7)));
        let mut lines = Lines::default();
        let big = vec![b'x'; MAX_LINE + 1];
        assert_eq!(
            lines.push(&big, |_: &[u8]| Ok::<(), ()>(())),
            Err(LineError::TooLong)
        );
    }
}
