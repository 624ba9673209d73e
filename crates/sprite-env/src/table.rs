//! Plain left-aligned text tables.

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded (no trailing blanks).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<pad$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["v10".to_string(), "a".to_string(), "x".to_string()],
            vec!["v9".to_string(), "bbb".to_string(), String::new()],
        ];
        assert_eq!(
            table(&["ID", "CREATED", "COMMENT"], &rows),
            "ID   CREATED  COMMENT\nv10  a        x\nv9   bbb\n"
        );
    }
}
