//! What `zask` commands print: JSON for scripts (the default when stdout is not a terminal,
//! or with `--output json`), aligned tables and `key: value` lines for people (the default on
//! a terminal, or with `--output table`).

use serde_json::Value as Json;

/// The format chosen with `--output` (or `ZASK_OUTPUT`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// JSON, as scripts read it (one object per line for lists of workers, computations and
    /// collections).
    Json,
    /// Aligned tables, and `key: value` lines, for people.
    Table,
}

/// A command's result, printable either way.
pub(crate) enum Out {
    /// The same text either way: a computed value (JSON), a secret, a benchmark's report.
    Text(String),
    /// One JSON object of these fields; for people, `key: value` lines in this order.
    Object(Vec<(&'static str, Json)>),
    /// For scripts, one JSON object per line; for people, a table.
    Rows(Vec<Json>, Table),
    /// For scripts, one JSON document; for people, a table.
    Document(Json, Table),
}

/// A table for people: aligned columns under a header, or a line saying it is empty, and a
/// note after it.
pub(crate) struct Table {
    /// The column titles.
    pub header: Vec<&'static str>,
    /// Which columns hold numbers (aligned right).
    pub numeric: Vec<bool>,
    /// The rows, one string per column.
    pub rows: Vec<Vec<String>>,
    /// What to print when there are no rows.
    pub empty: &'static str,
    /// A line after the table (that more exists than is shown, say).
    pub note: Option<String>,
}

impl Out {
    /// The text to print on stdout.
    pub(crate) fn render(self, format: Format) -> String {
        match (self, format) {
            (Out::Text(text), _) => text,
            (Out::Object(fields), Format::Json) => {
                let map: serde_json::Map<String, Json> = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                Json::Object(map).to_string()
            }
            (Out::Document(json, _), Format::Json) => json.to_string(),
            (Out::Rows(lines, _), Format::Json) => lines
                .iter()
                .map(Json::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            (Out::Object(fields), Format::Table) => key_value_lines(&fields),
            (Out::Rows(_, table), Format::Table) | (Out::Document(_, table), Format::Table) => {
                table.render()
            }
        }
    }
}

impl Table {
    fn render(self) -> String {
        let mut out = String::new();
        if self.rows.is_empty() {
            out.push_str(self.empty);
        } else {
            let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
            for row in &self.rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
            for (i, row) in std::iter::once(&header).chain(&self.rows).enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let mut line = String::new();
                for (c, cell) in row.iter().enumerate() {
                    let width = widths.get(c).copied().unwrap_or(0);
                    let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                    if c > 0 {
                        line.push_str("  ");
                    }
                    if self.numeric.get(c).copied().unwrap_or(false) {
                        line.push_str(&pad);
                        line.push_str(cell);
                    } else {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                }
                out.push_str(line.trim_end());
            }
        }
        if let Some(note) = self.note {
            out.push('\n');
            out.push_str(&note);
        }
        out
    }
}

/// `key: value` lines, the values aligned.
fn key_value_lines(fields: &[(&str, Json)]) -> String {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {}", format!("{k}:"), plain(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value for people: strings unquoted, lists of strings joined with commas, `-` for
/// nothing.
pub(crate) fn plain(json: &Json) -> String {
    match json {
        Json::Null => "-".to_string(),
        Json::String(s) => s.clone(),
        Json::Array(items) if items.is_empty() => "-".to_string(),
        Json::Array(items) if items.iter().all(Json::is_string) => {
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// A size in bytes for people: `512 B`, `1.5 KiB`, `64.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in milliseconds for people: `350 ms`, `4.2 s`, `3 min 5 s`, `2 h 3 min`.
pub(crate) fn millis(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A progress bar of `done` out of `total`: `[#######.............]  35%`.
pub(crate) fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0);
    let percent = (done * 100).checked_div(total).unwrap_or(0);
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_aligns_its_columns_numbers_to_the_right() {
        let table = Table {
            header: vec!["NAME", "SIZE", "NOTE"],
            numeric: vec![false, true, false],
            rows: vec![
                vec!["a".into(), "1".into(), "x".into()],
                vec!["longer".into(), "1234".into(), "".into()],
            ],
            empty: "nothing",
            note: Some("that is all".into()),
        };
        assert_eq!(
            table.render(),
            "NAME    SIZE  NOTE\na          1  x\nlonger  1234\nthat is all"
        );
    }

    #[test]
    fn an_empty_table_says_so() {
        let table = Table {
            header: vec!["A"],
            numeric: vec![false],
            rows: vec![],
            empty: "no rows",
            note: None,
        };
        assert_eq!(table.render(), "no rows");
    }

    #[test]
    fn an_object_prints_as_key_value_lines() {
        let fields = || {
            vec![
                ("name", json!("x")),
                ("replaced", json!(false)),
                ("keys", json!(["a", "b"])),
            ]
        };
        let out = Out::Object(fields());
        assert_eq!(
            out.render(Format::Table),
            "name:     x\nreplaced: false\nkeys:     a, b"
        );
        // JSON as serde_json writes an object (its fields sorted by name).
        assert_eq!(
            Out::Object(fields()).render(Format::Json),
            r#"{"keys":["a","b"],"name":"x","replaced":false}"#
        );
    }

    #[test]
    fn sizes_durations_and_bars_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(millis(350), "350 ms");
        assert_eq!(millis(4_200), "4.2 s");
        assert_eq!(millis(185_000), "3 min 5 s");
        assert_eq!(millis(7_380_000), "2 h 3 min");
        assert_eq!(bar(0, 0), "[....................]   0%");
        assert_eq!(bar(5, 10), "[##########..........]  50%");
        assert_eq!(bar(12, 10), "[####################] 100%");
    }
}
