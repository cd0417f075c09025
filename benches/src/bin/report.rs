//! `lazaret-report`: one benchmark report from one run. Reads the scenario harness's JSON and
//! criterion's estimates, checks every goal ([`lazaret_benches::goal`]), and writes
//! `BENCHMARKS.md` (metric, goal, p50, p99, floor, ratio to the floor, met; the machine and the
//! date) and the same as JSON. `scripts/bench.sh` runs everything and then this.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use lazaret_benches::{Measurement, goal};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// The scenario harness's report (`lazaret-scenarios --out DIR` writes DIR/scenarios.json).
    #[arg(long, default_value = "bench-results/scenarios.json")]
    scenarios: PathBuf,
    /// Criterion's output directory.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// The Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// The same report as JSON.
    #[arg(long, default_value = "BENCHMARKS.json")]
    json: PathBuf,
}

/// Goals of the criterion benches, by criterion id: (metric, goal, unit the value is given in).
fn criterion_goal(id: &str) -> (String, &'static str, Unit) {
    match id {
        "judge/one_container_50_policies" => (
            "judge one violating container against 50 policies (µs)".into(),
            "<= 20 µs",
            Unit::Micros,
        ),
        "lookups at 100k/process names (half hits)" => (
            "indicator lookups at 100k entries: process names (M lookups/s, one core)".into(),
            ">= 10 M/s",
            Unit::MillionsPerSecond,
        ),
        "lookups at 100k/addresses (addresses and CIDRs)" => (
            "indicator lookups at 100k entries: addresses and CIDRs (M lookups/s, one core)".into(),
            ">= 10 M/s",
            Unit::MillionsPerSecond,
        ),
        "build an index of 100k indicators" => (
            "build an indicator index of 100k entries (ms)".into(),
            "<= 100 ms",
            Unit::Millis,
        ),
        other => (format!("{other} (µs)"), "(reported)", Unit::Micros),
    }
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Micros,
    Millis,
    MillionsPerSecond,
}

/// Every criterion benchmark under `dir`: its id, median (ns) and throughput elements.
fn criterion_results(dir: &Path) -> Vec<(String, f64, Option<u64>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name == "new") {
                    if let Some(result) = criterion_result(&path) {
                        found.push(result);
                    }
                } else if path.file_name().is_some_and(|name| name != "report") {
                    pending.push(path);
                }
            }
        }
    }
    found.sort_by(|left, right| left.0.cmp(&right.0));
    found
}

fn criterion_result(new: &Path) -> Option<(String, f64, Option<u64>)> {
    let read = |name: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(name)).ok()?).ok()
    };
    let benchmark = read("benchmark.json")?;
    let estimates = read("estimates.json")?;
    let id = benchmark["full_id"].as_str()?.to_string();
    let median_ns = estimates["median"]["point_estimate"].as_f64()?;
    let elements = benchmark["throughput"]["Elements"].as_u64();
    Some((id, median_ns, elements))
}

fn criterion_measurements(dir: &Path) -> Vec<Measurement> {
    criterion_results(dir)
        .into_iter()
        .map(|(id, median_ns, elements)| {
            let (metric, goal, unit) = criterion_goal(&id);
            let value = match unit {
                Unit::Micros => median_ns / 1e3,
                Unit::Millis => median_ns / 1e6,
                Unit::MillionsPerSecond => elements.unwrap_or(1) as f64 / median_ns * 1e3,
            };
            Measurement {
                metric,
                goal: goal.into(),
                value: json!((value * 1000.0).round() / 1000.0),
                floor: None,
                ratio_p50: None,
            }
        })
        .collect()
}

/// One row of the report.
#[derive(Debug, Serialize)]
struct Row {
    #[serde(flatten)]
    measurement: Measurement,
    met: Option<bool>,
}

/// What the machine is, for the report's header.
fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_default();
    let memory_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_default();
    let output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        "memory_gib": (memory_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": output("uname", &["-r"]),
        "docker": output("docker", &["version", "--format", "{{.Server.Version}}"]),
        "commit": output("git", &["rev-parse", "--short", "HEAD"]),
    })
}

/// A latency summary's percentile, or the plain value, for a table cell.
fn cell(value: &Value, percentile: &str) -> String {
    match value.get(percentile).and_then(Value::as_f64) {
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) => format!("{ms:.2} ms"),
        None if percentile == "p50_ms" => match value {
            Value::Number(number) => number.to_string(),
            Value::Object(object) => object
                .iter()
                .map(|(key, value)| format!("{key} {value}"))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        },
        None => "—".into(),
    }
}

fn markdown(rows: &[Row], machine: &Value, date: &str) -> String {
    let goals = rows.iter().filter(|row| row.met.is_some()).count();
    let met = rows.iter().filter(|row| row.met == Some(true)).count();
    let mut text = format!(
        "# Benchmarks\n\nProduced by `./scripts/bench.sh` (criterion micro-benches and the scenario \
         harness against the real Docker engine and real agent processes) on {date}, commit `{}`.\n\n\
         Machine: {} × {} cores, {} GiB, Linux {}, Docker {}.\n\n\
         **{met} of {goals} goals met.** Latencies are measured side by side with their floor (the \
         raw runtime call they wrap, in the same run); the ratio is p50 / floor p50. \
         `benches/README.md` explains every scenario; the goal grammar is in `benches/src/goal.rs`.\n\n\
         | metric | goal | p50 (or value) | p99 | floor p50 | ratio | met |\n|---|---|---|---|---|---|---|\n",
        machine["commit"].as_str().unwrap_or_default(),
        machine["cpu"].as_str().unwrap_or_default(),
        machine["cores"],
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or_default(),
        machine["docker"].as_str().unwrap_or_default(),
    );
    for row in rows {
        let measurement = &row.measurement;
        let floor = measurement
            .floor
            .as_ref()
            .map_or("—".to_string(), |floor| format!("{:.2} ms", floor.p50_ms));
        let ratio = measurement
            .ratio_p50
            .map_or("—".to_string(), |ratio| format!("{ratio:.2}×"));
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {floor} | {ratio} | {met} |\n",
            measurement.metric.replace('|', "\\|"),
            measurement.goal,
            cell(&measurement.value, "p50_ms").replace('|', "\\|"),
            cell(&measurement.value, "p99_ms"),
        ));
    }
    text
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut measurements: Vec<Measurement> = match std::fs::read_to_string(&args.scenarios) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not the harness's report", args.scenarios.display()))?,
        Err(error) => {
            eprintln!(
                "no scenarios ({}: {error}); criterion only",
                args.scenarios.display()
            );
            Vec::new()
        }
    };
    measurements.extend(criterion_measurements(&args.criterion));
    anyhow::ensure!(
        !measurements.is_empty(),
        "nothing measured: run the benches first"
    );
    let rows: Vec<Row> = measurements
        .into_iter()
        .map(|measurement| Row {
            met: goal::met(&measurement),
            measurement,
        })
        .collect();
    let machine = machine();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    std::fs::write(&args.out, markdown(&rows, &machine, &date))
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let report = json!({"date": date, "machine": machine, "measurements": rows});
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    let missed: Vec<&str> = rows
        .iter()
        .filter(|row| row.met == Some(false))
        .map(|row| row.measurement.metric.as_str())
        .collect();
    println!(
        "wrote {} and {}; goals missed: {}",
        args.out.display(),
        args.json.display(),
        if missed.is_empty() {
            "none".to_string()
        } else {
            missed.join("; ")
        }
    );
    Ok(())
}
