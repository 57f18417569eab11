//! Aligned text tables for people, and text made safe to print.

use std::borrow::Cow;

/// `text` with every control character (escape sequences, carriage returns,
/// C1 controls) shown as U+FFFD: stored text is printed, never obeyed by a
/// terminal.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// Renders `rows` under `headers`, columns padded to their widest cell, the last
/// column unpadded, no line ending in spaces.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let t = super::render(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        let t = super::render(&["A", "B"], &[vec!["x".into(), String::new()]]);
        assert_eq!(t, "A  B\nx\n", "no trailing spaces");
        let t = super::render(&["A"], &[vec!["\u{1b}[2Jx\r".into()]]);
        assert_eq!(
            t, "A\n\u{FFFD}[2Jx\u{FFFD}\n",
            "no control character reaches the terminal"
        );
    }
}
