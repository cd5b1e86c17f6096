//! How `drbridge dr` prints: objects as kubectl does, JSON or YAML documents, and progress
//! lines where they do not mix with a document.

use std::io::Write;

use drbridge_dr::explain::Problem;
use serde::Serialize;
use serde_json::{Value, json};

use super::args::Output;

/// An object as kubectl prints it: without `metadata.managedFields`.
pub(super) fn object_value<T: Serialize>(obj: &T) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(obj)?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Ok(v)
}

pub(super) fn list_value<T: Serialize>(items: &[T]) -> anyhow::Result<Value> {
    let items: Vec<Value> = items.iter().map(object_value).collect::<Result<_, _>>()?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

pub(super) fn emit(out: Output, v: &Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match out {
        Output::Json | Output::Table => writeln!(stdout, "{}", serde_json::to_string_pretty(v)?)?,
        Output::Yaml => write!(stdout, "{}", serde_saphyr::to_string(v)?)?,
    }
    stdout.flush()?;
    Ok(())
}

/// Progress and notes: on stdout for tables, on stderr when stdout carries JSON or YAML.
pub(super) fn say(out: Output, line: &str) {
    if out == Output::Table {
        println!("{line}");
        let _ = std::io::stdout().flush();
    } else {
        eprintln!("{line}");
    }
}

pub(super) fn print_problems(out: Output, problems: &[Problem]) {
    if problems.is_empty() {
        return;
    }
    say(out, "Problems:");
    for p in problems {
        say(out, &format!("  - {p}"));
    }
}

/// What `cluster add` and `policy create` print: on a table, `sentence`, the notes and the
/// problems; otherwise the notes on stderr and the object as stored.
pub(super) fn print_applied<T: Serialize>(
    out: Output,
    stored: &T,
    sentence: &str,
    notes: &[String],
    problems: &[Problem],
) -> anyhow::Result<()> {
    match out {
        Output::Table => {
            say(out, sentence);
            for n in notes {
                say(out, n);
            }
            print_problems(out, problems);
            Ok(())
        }
        out => {
            for n in notes {
                eprintln!("{n}");
            }
            emit(out, &object_value(stored)?)
        }
    }
}

pub(super) fn clock(now: k8s_openapi::jiff::Timestamp) -> String {
    let s = now.as_second().rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
