//! Goals written as text in each [`Measurement`] (`"p50 <= 1.15x raw pause, p99 <= 40 ms"`),
//! checked against what was measured, so the report says for each metric whether it was met.
//!
//! Grammar: clauses joined by `, `; each is `[p50 |p99 ]<= N UNIT` or `[p50 |p99 ]>= N UNIT`.
//! - With `p50`/`p99` the measured latency summary's percentile is compared; `ms`, `s` and `µs`
//!   (or `us`) are converted to milliseconds; a unit starting with `x` (`1.15x raw pause`) compares
//!   the p50 ratio to the floor instead.
//! - Without a percentile the measured value itself (a number) is compared, in the goal's unit
//!   (`MiB`, `%`, `M/s`, `µs`: the scenario reports it in that unit); a latency summary measured
//!   against a bare time bound (`<= 2.5 s`) is held to it at its p99 (the stricter reading).
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
    /// The bound in milliseconds, when its unit is a time.
    bound_ms: Option<f64>,
}

/// Milliseconds per `unit`, for the time units.
fn millis(unit: &str) -> Option<f64> {
    match unit {
        "ms" => Some(1.0),
        "s" => Some(1000.0),
        "µs" | "us" => Some(0.001),
        _ => None,
    }
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
    let bound_ms = millis(unit).map(|scale| number * scale);
    let (subject, bound) = match percentile {
        Some(_) if unit.starts_with('x') => (Subject::Ratio, number),
        Some(subject) => (subject, bound_ms?),
        None => (Subject::Value, number),
    };
    Some(Clause {
        subject,
        side,
        bound,
        bound_ms,
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
        let p99 = measurement.value.get("p99_ms").and_then(Value::as_f64);
        let (measured, bound) = match clause.subject {
            Subject::P50 => (
                measurement.value.get("p50_ms").and_then(Value::as_f64)?,
                clause.bound,
            ),
            Subject::P99 => (p99?, clause.bound),
            Subject::Ratio => (measurement.ratio_p50?, clause.bound),
            Subject::Value => match (measurement.value.as_f64(), p99, clause.bound_ms) {
                (Some(value), _, _) => (value, clause.bound),
                (None, Some(p99), Some(bound_ms)) => (p99, bound_ms),
                _ => return None,
            },
        };
        met &= match clause.side {
            Side::AtMost => measured <= bound,
            Side::AtLeast => measured >= bound,
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
        assert_eq!(
            met(&measured(both, latency.clone(), Some(0.91))),
            Some(true)
        );
        assert_eq!(
            met(&measured(both, latency.clone(), Some(1.2))),
            Some(false)
        );
        assert_eq!(
            met(&measured("p99 <= 20 ms", latency.clone(), None)),
            Some(false)
        );
        assert_eq!(
            met(&measured("p50 <= 1 s", latency.clone(), None)),
            Some(true)
        );
        assert_eq!(
            met(&measured("p50 <= 10 µs", latency.clone(), None)),
            Some(false)
        );
        assert_eq!(met(&measured("<= 30 MiB", json!(12.5), None)), Some(true));
        assert_eq!(met(&measured("<= 100 ms", json!(31.6), None)), Some(true));
        assert_eq!(
            met(&measured("<= 25 ms", latency.clone(), None)),
            Some(false),
            "a bare time bound holds a summary at its p99"
        );
        assert_eq!(
            met(&measured("<= 2.5 s", latency.clone(), None)),
            Some(true)
        );
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
