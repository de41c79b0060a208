//! How the tool writes times, durations, tables and colours.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A duration as people read it: `850ms`, `12s`, `4m`, `3h`, `2d`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", d.as_secs_f64()),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// How long ago `at` was (or how far ahead).
pub fn ago(at: SystemTime) -> String {
    match SystemTime::now().duration_since(at) {
        Ok(past) => format!("{} ago", duration(past)),
        Err(ahead) => format!("in {}", duration(ahead.duration())),
    }
}

/// Milliseconds since the epoch, for JSON.
pub fn millis(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Terminal colours, when standard output is a terminal and `NO_COLOR` is not set.
#[derive(Clone, Copy)]
pub struct Paint(bool);

impl Paint {
    pub fn detect() -> Self {
        Paint(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
    }

    fn wrap(self, code: &str, text: &str) -> String {
        match self.0 {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text.to_owned(),
        }
    }

    pub fn good(self, text: &str) -> String {
        self.wrap("32", text)
    }

    pub fn bad(self, text: &str) -> String {
        self.wrap("31", text)
    }

    pub fn warn(self, text: &str) -> String {
        self.wrap("33", text)
    }

    pub fn undo(self, text: &str) -> String {
        self.wrap("36", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}

/// A status name, coloured by what it means.
pub fn status(paint: Paint, name: &str) -> String {
    match name {
        "completed" => paint.good(name),
        "failed" | "compensation_failed" | "parked" => paint.bad(name),
        "compensating" | "compensated" => paint.undo(name),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_300)), "12.3s");
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(duration(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(duration(Duration::from_secs(50 * 3600)), "2d");
    }

    #[test]
    fn tables_pad_their_columns() {
        let out = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(out, "A     BB\nlong  x\n");
    }
}
