//! `tokenbroker decode`: a session token as a readable table, offline.

use std::fmt::Write;

use session_token::{PartitionToken, SessionToken};

/// Renders one row per partition key range: range, kind, version, global LSN, region LSNs.
pub fn table(token: &SessionToken) -> String {
    let mut rows = vec![[
        "RANGE".to_string(),
        "KIND".into(),
        "VERSION".into(),
        "GLOBAL_LSN".into(),
        "REGION_LSNS".into(),
    ]];
    for (range, token) in token.segments() {
        rows.push(match token {
            PartitionToken::Simple(lsn) => [
                range.to_string(),
                "simple".into(),
                "-".into(),
                lsn.to_string(),
                "-".into(),
            ],
            PartitionToken::Vector(v) => {
                let regions: Vec<String> = v
                    .regions
                    .iter()
                    .map(|(id, lsn)| format!("{id}={lsn}"))
                    .collect();
                [
                    range.to_string(),
                    "vector".into(),
                    v.version.to_string(),
                    v.global_lsn.to_string(),
                    if regions.is_empty() {
                        "-".into()
                    } else {
                        regions.join(" ")
                    },
                ]
            }
        });
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
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
    fn one_row_per_range_with_aligned_columns() {
        let t = SessionToken::parse("10:2#57#1=9#2=-1,0:500").unwrap();
        assert_eq!(
            table(&t),
            "RANGE  KIND    VERSION  GLOBAL_LSN  REGION_LSNS\n\
             0      simple  -        500         -\n\
             10     vector  2        57          1=9 2=-1\n"
        );
    }
}
