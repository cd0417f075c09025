//! Label selectors as operators type them: `app=web,tier=front` (`lazaretctl quarantine
//! --selector`, the controller's container filters). Parsed here, with no I/O, so the parser can be
//! fuzzed (`fuzz/fuzz_targets/selector.rs`); the controller matches containers' labels against
//! the pairs.

/// `(key, value)` pairs, all of which a container's labels must hold; empty selects everything.
pub type LabelSelector = Vec<(String, String)>;

/// Parses `key=value` pairs separated by commas, each trimmed; empty pairs are skipped. A value
/// may contain `=` (`a=b=c` is key `a`, value `b=c`); a key may not be empty. The error names the
/// pair that is not `key=value`.
pub fn parse_label_selector(text: &str) -> Result<LabelSelector, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(format!(
                "selector: {pair:?} is not key=value (e.g. app=web,tier=front)"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_trimmed_empty_ones_skipped_and_a_value_may_hold_an_equals_sign() {
        assert_eq!(parse_label_selector(""), Ok(Vec::new()));
        assert_eq!(
            parse_label_selector(" app = web ,, tier=front,x=a=b"),
            Ok(vec![
                ("app".into(), "web".into()),
                ("tier".into(), "front".into()),
                ("x".into(), "a=b".into()),
            ])
        );
        assert!(parse_label_selector("app").unwrap_err().contains("\"app\""));
        assert!(parse_label_selector("=web").is_err());
    }
}
