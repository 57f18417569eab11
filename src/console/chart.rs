//! The console's chart: rotations per day by result over the last 90 days,
//! drawn on the server as plain SVG (stacked bars, a title per day for
//! hover and screen readers). No script, no outside resource.

use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::fmt::Write;

/// Days shown.
pub(crate) const DAYS: i64 = 90;

/// The results stacked, bottom up, with their colours.
const SERIES: [(&str, &str); 4] = [
    ("succeeded", "#2e7d32"),
    ("failed", "#c62828"),
    ("unknown", "#ef6c00"),
    ("pending", "#757575"),
];

/// The chart for `counts` (`(day, status, count)`) ending on `today`.
pub(crate) fn svg(counts: &[(String, String, i64)], today: DateTime<Utc>) -> String {
    let mut by_day: HashMap<(&str, &str), i64> = HashMap::new();
    for (day, status, n) in counts {
        *by_day.entry((day.as_str(), status.as_str())).or_default() += n;
    }
    let days: Vec<String> = (0..DAYS)
        .rev()
        .map(|back| {
            (today - Duration::days(back))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    let total = |day: &str| -> i64 {
        SERIES
            .iter()
            .map(|(s, _)| by_day.get(&(day, *s)).copied().unwrap_or(0))
            .sum()
    };
    let max = days.iter().map(|d| total(d)).max().unwrap_or(0).max(1);
    let (width, height, left, bottom) = (900.0_f64, 220.0_f64, 40.0_f64, 20.0_f64);
    let bar = (width - left) / DAYS as f64;
    let scale = (height - bottom - 10.0) / max as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="Rotations per day by result, last {DAYS} days" class="chart">"#
    );
    let base = height - bottom;
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#999"/><text x="{x}" y="14" font-size="11" text-anchor="end">{max}</text><text x="{x}" y="{base}" font-size="11" text-anchor="end">0</text>"##,
        x = left - 4.0
    );
    for (i, day) in days.iter().enumerate() {
        let x = left + i as f64 * bar;
        let mut y = base;
        let mut parts = Vec::new();
        for (status, colour) in SERIES {
            let n = by_day.get(&(day.as_str(), status)).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            parts.push(format!("{n} {status}"));
            let h = n as f64 * scale;
            y -= h;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}"/>"#,
                w = (bar - 1.0).max(1.0)
            );
        }
        let summary = if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        };
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="0" width="{bar:.1}" height="{base}" fill="transparent"><title>{day}: {summary}</title></rect>"#
        );
        if i % 30 == 0 || i + 1 == days.len() {
            let anchor = if i + 1 == days.len() { "end" } else { "start" };
            let _ = write!(
                out,
                r#"<text x="{tx:.1}" y="{ty}" font-size="11" text-anchor="{anchor}">{day}</text>"#,
                tx = if i + 1 == days.len() { width } else { x },
                ty = height - 4.0
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_day_has_its_bar_and_title_and_nothing_outside() {
        let today = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let counts = vec![
            ("2026-12-02".into(), "succeeded".into(), 4),
            ("2026-12-02".into(), "failed".into(), 1),
            ("2026-09-01".into(), "succeeded".into(), 9),
        ];
        let svg = svg(&counts, today);
        assert!(svg.contains("<title>2026-12-02: 4 succeeded, 1 failed</title>"));
        assert!(svg.contains("<title>2026-11-30: none</title>"));
        assert!(!svg.contains("2026-09-01"), "older than 90 days");
        assert!(!svg.contains("http://") || svg.matches("http://").count() == 1);
        assert_eq!(svg.matches("<title>").count(), DAYS as usize);
    }
}
