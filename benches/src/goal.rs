//! Goals written as text in each [`Measurement`] (`"p50 <= 1.15x raw pause, p99 <= 40 ms"`),
//! checked against what was measured, so the report says for each metric whether it was met.
//!
//! Grammar: clauses joined by `, `; each is `[p50 |p99 ]<= N UNIT` or `[p50 |p99 ]>= N UNIT`.
//! - With `p50`/`p99` the measured latency summary's percentile is compared; `ms`, `s` and `µs`
//!   (or `us`) are converted to milliseconds; a unit starting with `x` (`1.15x raw pause`) compares
//!   the p50 ratio to the floor instead.
//! - Without a percentile the measured value itself (a number) is compared, in the goal's unit
//!   (`MiB`, `%`, `M/s`, `µs`: the scenario reports it in that unit).
//! - Anything in parentheses, or any clause that does not parse, is not a goal: `None`.

use serde_json::Value;

use crate::Measurement;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    AtMost,
    AtLeast,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Subject {
    P50,
    P99,
    Ratio,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Clause {
    subject: Subject,
    side: Side,
    bound: f64,
}

fn clause(text: &str) -> Option<Clause> {
    let text = text.trim();
    let (percentile, rest) = match text.split_once(' ') {
        Some(("p50", rest)) => (Some(Subject::P50), rest),
        Some(("p99", rest)) => (Some(Subject::P99), rest),
        _ => (None, text),
    };
    let (side, rest) = if let Some(rest) = rest.strip_prefix("<=") {
        (Side::AtMost, rest)
    } else if let Some(rest) = rest.strip_prefix(">=") {
        (Side::AtLeast, rest)
    } else {
        return None;
    };
    let rest = rest.trim();
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let number: f64 = rest[..number_end].parse().ok()?;
    let unit = rest[number_end..].trim();
    let (subject, bound) = match percentile {
        Some(_) if unit.starts_with('x') => (Subject::Ratio, number),
        Some(subject) => {
            let scale = match unit {
                "ms" => 1.0,
                "s" => 1000.0,
                "µs" | "us" => 0.001,
                _ => return None,
            };
            (subject, number * scale)
        }
        None => (Subject::Value, number),
    };
    Some(Clause {
        subject,
        side,
        bound,
    })
}

/// The clauses of `goal`; `None` when it states no checkable goal.
fn clauses(goal: &str) -> Option<Vec<Clause>> {
    if goal.trim_start().starts_with('(') {
        return None;
    }
    goal.split(", ").map(clause).collect()
}

/// Whether `measurement` meets its goal; `None` when it has none (or it cannot be checked).
pub fn met(measurement: &Measurement) -> Option<bool> {
    let clauses = clauses(&measurement.goal)?;
    let mut met = true;
    for clause in clauses {
        let measured = match clause.subject {
            Subject::P50 => measurement.value.get("p50_ms").and_then(Value::as_f64),
            Subject::P99 => measurement.value.get("p99_ms").and_then(Value::as_f64),
            Subject::Ratio => measurement.ratio_p50,
            Subject::Value => measurement.value.as_f64(),
        }?;
        met &= match clause.side {
            Side::AtMost => measured <= clause.bound,
            Side::AtLeast => measured >= clause.bound,
        };
    }
    Some(met)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn measured(goal: &str, value: Value, ratio: Option<f64>) -> Measurement {
        Measurement {
            metric: "m".into(),
            goal: goal.into(),
            value,
            floor: None,
            ratio_p50: ratio,
        }
    }

    #[test]
    fn goals_are_checked_clause_by_clause() {
        let latency = json!({"p50_ms": 15.5, "p99_ms": 26.8, "max_ms": 30.0, "samples": 80});
        let both = "p50 <= 1.15x raw pause, p99 <= 40 ms";
        assert_eq!(met(&measured(both, latency.clone(), Some(0.91))), Some(true));
        assert_eq!(met(&measured(both, latency.clone(), Some(1.2))), Some(false));
        assert_eq!(met(&measured("p99 <= 20 ms", latency.clone(), None)), Some(false));
        assert_eq!(met(&measured("p50 <= 1 s", latency.clone(), None)), Some(true));
        assert_eq!(met(&measured("p50 <= 10 µs", latency.clone(), None)), Some(false));
        assert_eq!(met(&measured("<= 30 MiB", json!(12.5), None)), Some(true));
        assert_eq!(met(&measured(">= 10 M/s", json!(9.5), None)), Some(false));
        assert_eq!(met(&measured("(reported)", latency.clone(), None)), None);
        assert_eq!(met(&measured("fast enough", latency.clone(), None)), None);
        assert_eq!(
            met(&measured("p50 <= 1.15x raw pause", latency, None)),
            None,
            "no floor measured: not checkable"
        );
    }
}
