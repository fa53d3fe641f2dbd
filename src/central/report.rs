//! `ctiphone report`: per-agent figures from the central log since a date, computed by
//! PostgreSQL in one aggregate query (GROUP BY agent), and printed as an aligned table, JSON
//! lines or CSV. `ctiphone supervisor` shows the same counts for today.
//!
//! What the figures mean (incoming calls are the ones an agent is offered):
//! - `offered`: incoming rows that rang since the date;
//! - `answered`: incoming rows the agent answered (`answer_at` set, whatever ended them);
//! - `missed`: incoming rows that ended without the agent answering them: missed, cancelled
//!   by the caller, rejected, busy, failed or interrupted before an answer. A call still
//!   ringing (`open`, no answer) is offered but neither answered nor missed yet;
//! - `outgoing`: outgoing rows;
//! - `avg_handle_s`: over answered incoming calls that ended, talk time (answer → end) plus
//!   wrap-up time (end → `wrapup_at`; 0 when the call had no wrap-up);
//! - `avg_wrapup_s`: over those of them that had a wrap-up, end → `wrapup_at`;
//! - `crm_failures`: rows (in or out) whose CRM search failed (`crm_error` not empty).
//!
//! Averages are null (`-` in the table, an empty CSV cell) when no call counts.

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};
use serde::Serialize;

use super::target::describe;

/// One agent's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentCounts {
    pub agent: String,
    pub offered: i64,
    pub answered: i64,
    pub missed: i64,
    pub outgoing: i64,
    pub avg_handle_s: Option<f64>,
    pub avg_wrapup_s: Option<f64>,
    pub crm_failures: i64,
}

/// The figures of every agent with a call since `$1`, by agent. Times are rounded to the
/// millisecond by PostgreSQL. (The `calls_ring_at` index serves the `ring_at` range.)
const QUERY: &str = "
SELECT agent,
    count(*) FILTER (WHERE direction = 'in'),
    count(*) FILTER (WHERE direction = 'in' AND answer_at IS NOT NULL),
    count(*) FILTER (WHERE direction = 'in' AND answer_at IS NULL AND state <> 'open'),
    count(*) FILTER (WHERE direction = 'out'),
    round(avg(extract(epoch FROM end_at - answer_at)
              + coalesce(greatest(extract(epoch FROM wrapup_at - end_at), 0), 0))
          FILTER (WHERE direction = 'in' AND answer_at IS NOT NULL AND end_at IS NOT NULL), 3)::float8,
    round(avg(greatest(extract(epoch FROM wrapup_at - end_at), 0))
          FILTER (WHERE direction = 'in' AND answer_at IS NOT NULL AND end_at IS NOT NULL
                  AND wrapup_at IS NOT NULL), 3)::float8,
    count(*) FILTER (WHERE crm_error <> '')
FROM ctiphone.calls
WHERE ring_at >= $1::text::timestamptz
GROUP BY agent
ORDER BY agent";

/// Reads the figures since `since`.
pub async fn fetch(
    client: &tokio_postgres::Client,
    since: &DateTime<FixedOffset>,
) -> Result<Vec<AgentCounts>, String> {
    let rows = client
        .query(QUERY, &[&since.to_rfc3339()])
        .await
        .map_err(|e| query_error(&e))?;
    rows.iter()
        .map(|r| {
            Ok(AgentCounts {
                agent: r.try_get(0)?,
                offered: r.try_get(1)?,
                answered: r.try_get(2)?,
                missed: r.try_get(3)?,
                outgoing: r.try_get(4)?,
                avg_handle_s: r.try_get(5)?,
                avg_wrapup_s: r.try_get(6)?,
                crm_failures: r.try_get(7)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| format!("the central log's calls: {}", describe(&e)))
}

/// A query's error; a database without the schema says so in words.
pub fn query_error(e: &tokio_postgres::Error) -> String {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME => {
            format!(
                "no central log in this database ({}): no phone with `[history] central` has written to it yet",
                describe(e)
            )
        }
        _ => describe(e),
    }
}

/// `--since`: `YYYY-MM-DD` (local midnight) or `YYYY-MM-DDTHH:MM` (local time); none =
/// today's midnight.
pub fn parse_since(since: Option<&str>, now: DateTime<Local>) -> Result<DateTime<FixedOffset>, String> {
    let naive = match since.map(str::trim) {
        None => now.date_naive().and_time(chrono::NaiveTime::MIN),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| d.and_time(chrono::NaiveTime::MIN))
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
            .map_err(|_| {
                format!(
                    "--since `{}`: expected a date YYYY-MM-DD (or YYYY-MM-DDTHH:MM)",
                    crate::ui::text::clean(s)
                )
            })?,
    };
    // A local time in a DST gap does not exist; one in the overlap is taken the first time.
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
        .ok_or_else(|| format!("--since: {naive} does not exist in the local time zone"))
}

/// Seconds as `M:SS` (`H:MM:SS` from an hour on); `-` for none.
pub fn duration(secs: Option<f64>) -> String {
    let Some(s) = secs.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".into();
    };
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The aligned table: agent ids cleaned of control characters (and cut when very long),
/// columns padded by display width.
pub fn table(rows: &[AgentCounts]) -> String {
    use unicode_width::UnicodeWidthStr;
    const HEADS: [&str; 8] = [
        "agent",
        "offered",
        "answered",
        "missed",
        "outgoing",
        "avg handle",
        "avg wrap-up",
        "CRM failures",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                crate::ui::text::clean(&r.agent),
                r.offered.to_string(),
                r.answered.to_string(),
                r.missed.to_string(),
                r.outgoing.to_string(),
                duration(r.avg_handle_s),
                duration(r.avg_wrapup_s),
                r.crm_failures.to_string(),
            ]
        })
        .collect();
    let mut widths = HEADS.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.width());
        }
    }
    let line = |row: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(c.width()));
            if i > 0 {
                out.push_str("  ");
            }
            if i == 0 {
                out.push_str(c);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(c);
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&HEADS.map(str::to_owned));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// One JSON object per agent per line.
pub fn json_lines(rows: &[AgentCounts]) -> String {
    rows.iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .map(|l| l + "\n")
        .collect()
}

/// CSV with a header; the agent cell defused (a spreadsheet runs no formula from it).
pub fn csv(rows: &[AgentCounts]) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "agent",
        "offered",
        "answered",
        "missed",
        "outgoing",
        "avg_handle_s",
        "avg_wrapup_s",
        "crm_failures",
    ])
    .map_err(|e| e.to_string())?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        w.write_record([
            crate::history::defuse(&r.agent),
            r.offered.to_string(),
            r.answered.to_string(),
            r.missed.to_string(),
            r.outgoing.to_string(),
            opt(r.avg_handle_s),
            opt(r.avg_wrapup_s),
            r.crm_failures.to_string(),
        ])
        .map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(agent: &str) -> AgentCounts {
        AgentCounts {
            agent: agent.into(),
            offered: 12,
            answered: 10,
            missed: 2,
            outgoing: 3,
            avg_handle_s: Some(125.4),
            avg_wrapup_s: None,
            crm_failures: 1,
        }
    }

    #[test]
    fn since_is_a_local_date_or_time() {
        let now = Local.with_ymd_and_hms(2026, 3, 4, 15, 16, 17).unwrap();
        let midnight = Local.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap();
        assert_eq!(parse_since(None, now).unwrap(), midnight.fixed_offset());
        let d = Local.with_ymd_and_hms(2025, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(parse_since(Some("2025-12-31"), now).unwrap(), d.fixed_offset());
        let t = Local.with_ymd_and_hms(2025, 12, 31, 9, 30, 0).unwrap();
        assert_eq!(
            parse_since(Some("2025-12-31T09:30"), now).unwrap(),
            t.fixed_offset()
        );
        for bad in ["yesterday", "2025-13-01", "2025-02-30", "", "2025-01-01\u{1b}[2J"] {
            let e = parse_since(Some(bad), now).expect_err(bad);
            assert!(e.contains("expected a date YYYY-MM-DD"), "{bad}: {e}");
            assert!(!e.contains('\u{1b}'), "{e:?}");
        }
    }

    #[test]
    fn durations_read_as_clock_times() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(f64::NAN)), "-");
        assert_eq!(duration(Some(0.4)), "0:00");
        assert_eq!(duration(Some(125.4)), "2:05");
        assert_eq!(duration(Some(3725.0)), "1:02:05");
    }

    #[test]
    fn the_table_is_aligned_and_clean() {
        let t = table(&[row("agent-1"), row("\u{1b}]0;owned\u{7}田中")]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t:?}");
        use unicode_width::UnicodeWidthStr;
        let w: Vec<usize> = lines.iter().map(|l| l.width()).collect();
        assert!(w.iter().all(|x| *x == w[0]), "{w:?}\n{t}");
        assert!(lines[1].starts_with("agent-1 "), "{t}");
        assert!(lines[1].ends_with("2:05            -             1"), "{t}");
    }

    #[test]
    fn csv_defuses_formulas() {
        let text = csv(&[row("=cmd|' /C calc'!A0")]).unwrap();
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let rec = rd.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], "'=cmd|' /C calc'!A0");
        assert_eq!(&rec[5], "125.4");
        assert_eq!(&rec[6], "");
    }
}
