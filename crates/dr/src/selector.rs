//! Label selectors in kubectl's syntax: `app=db,tier!=cache,env in (a,b),!legacy`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector {input:?}: {why}")]
pub struct BadSelector {
    pub input: String,
    pub why: String,
}

/// Parses a selector. `k=v` and `k==v` become `matchLabels`; `k!=v`, `k in (..)`,
/// `k notin (..)`, `k` and `!k` become `matchExpressions`. An empty string selects
/// everything (`{}`).
pub fn parse(input: &str) -> Result<LabelSelector, BadSelector> {
    let bad = |why: &str| BadSelector {
        input: input.to_string(),
        why: why.to_string(),
    };
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    for term in split_terms(input).map_err(|w| bad(&w))? {
        let term = term.trim();
        if term.is_empty() {
            return Err(bad("empty term"));
        }
        let lower = term.to_ascii_lowercase();
        if let Some(pos) = find_word(&lower, " notin ") {
            let (key, values) = (term[..pos].trim(), &term[pos + 7..]);
            exprs.push(req(key, "NotIn", set_values(values).map_err(|w| bad(&w))?));
        } else if let Some(pos) = find_word(&lower, " in ") {
            let (key, values) = (term[..pos].trim(), &term[pos + 4..]);
            exprs.push(req(key, "In", set_values(values).map_err(|w| bad(&w))?));
        } else if let Some((k, v)) = term.split_once("!=") {
            exprs.push(req(k.trim(), "NotIn", vec![v.trim().to_string()]));
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            let (k, v) = (k.trim(), v.trim());
            if labels.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(&format!("key {k:?} given twice")));
            }
        } else if let Some(k) = term.strip_prefix('!') {
            exprs.push(req(k.trim(), "DoesNotExist", vec![]));
        } else {
            exprs.push(req(term, "Exists", vec![]));
        }
    }
    for e in &exprs {
        check_key(&e.key).map_err(|w| bad(&w))?;
    }
    for (k, v) in &labels {
        check_key(k).map_err(|w| bad(&w))?;
        check_value(v).map_err(|w| bad(&w))?;
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    })
}

fn req(key: &str, op: &str, values: Vec<String>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: op.to_string(),
        values: (!values.is_empty()).then_some(values),
    }
}

fn find_word(haystack: &str, word: &str) -> Option<usize> {
    haystack.find(word)
}

/// Splits on commas outside parentheses.
fn split_terms(input: &str) -> Result<Vec<&str>, String> {
    if input.trim().is_empty() {
        return Ok(vec![]);
    }
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses".into());
                }
            }
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    terms.push(&input[start..]);
    Ok(terms)
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or("a set must be written (a,b)")?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        return Err("empty value in a set".into());
    }
    for v in &values {
        check_value(v)?;
    }
    Ok(values)
}

fn check_key(k: &str) -> Result<(), String> {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return Err(format!("key {k:?} has an invalid prefix"));
            }
            name
        }
        None => k,
    };
    if name.is_empty() || name.len() > 63 || !is_label_chars(name) {
        return Err(format!("key {k:?} is not a valid label key"));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if v.len() > 63 || (!v.is_empty() && !is_label_chars(v)) {
        return Err(format!("value {v:?} is not a valid label value"));
    }
    Ok(())
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A selector in the syntax [`parse`] reads; `<all>` for the empty selector.
pub fn format(sel: &LabelSelector) -> String {
    let mut terms: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" if values.len() == 1 => format!("{}!={}", e.key, values[0]),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => format!("{} {op} ({})", e.key, values.join(",")),
        });
    }
    if terms.is_empty() {
        "<all>".into()
    } else {
        terms.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_terms_become_match_labels() {
        let s = parse("appname=busybox, tier==db").unwrap();
        assert_eq!(
            s.match_labels.unwrap(),
            BTreeMap::from([
                ("appname".to_string(), "busybox".to_string()),
                ("tier".to_string(), "db".to_string())
            ])
        );
        assert!(s.match_expressions.is_none());
    }

    #[test]
    fn set_and_existence_terms_become_expressions() {
        let s = parse("env in (a, b),app.kubernetes.io/name notin (x),!legacy,ready,t!=v").unwrap();
        let e = s.match_expressions.unwrap();
        let ops: Vec<_> = e
            .iter()
            .map(|r| (r.key.as_str(), r.operator.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("env", "In"),
                ("app.kubernetes.io/name", "NotIn"),
                ("legacy", "DoesNotExist"),
                ("ready", "Exists"),
                ("t", "NotIn")
            ]
        );
        assert_eq!(e[0].values.as_deref().unwrap(), ["a", "b"]);
        assert_eq!(
            format(&parse("env in (a,b),!legacy,t!=v,k=v").unwrap()),
            "k=v,env in (a,b),!legacy,t!=v"
        );
    }

    #[test]
    fn empty_selects_all() {
        assert_eq!(parse("").unwrap(), LabelSelector::default());
        assert_eq!(format(&LabelSelector::default()), "<all>");
    }

    #[test]
    fn bad_selectors_are_refused() {
        for bad in [
            "a=b,",
            "env in (a",
            "env in a,b",
            "-x=1",
            "k=v,k=w",
            "k=-v",
            "a b=c",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
