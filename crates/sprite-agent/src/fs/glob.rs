//! Shell-style name patterns for `fs/list?pattern=`: `*`, `?`, and
//! `[...]` classes (ranges, `!` or `^` to negate), matched on bytes.

/// Whether `name` matches `pattern` as a whole.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((hit, next)) = class(pattern, p, name[n]) {
                    if hit {
                        p = next;
                        n += 1;
                        continue;
                    }
                } else if name[n] == b'[' {
                    // An unclosed `[` is a literal.
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Match `c` against the class starting at `pattern[start] == '['`:
/// `(matched, index after the class)`, or `None` when it is not closed.
fn class(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_questions_and_classes() {
        let m = |p: &str, n: &str| matches(p.as_bytes(), n.as_bytes());
        assert!(m("*.txt", "a.txt"));
        assert!(m("*.txt", ".txt"));
        assert!(!m("*.txt", "a.txt.bak"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("?.rs", "x.rs"));
        assert!(!m("?.rs", "xy.rs"));
        assert!(m("[abc]1", "b1"));
        assert!(!m("[!abc]1", "b1"));
        assert!(m("[^abc]1", "d1"));
        assert!(m("file[0-9]", "file7"));
        assert!(!m("file[0-9]", "filex"));
        assert!(m("[]]", "]"));
        assert!(m("a[", "a["));
        assert!(m("*", ""));
        assert!(m("**", "anything"));
        assert!(!m("", "x"));
        assert!(matches(b"*\xff", b"name\xff"));
    }
}
