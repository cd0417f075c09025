//! Every ```yaml example in docs/policies.md is a complete policy set that loads as written.

use crate::policy::{PolicySet, PolicySource};

const POLICY_DOCS: &str = include_str!("../../../../docs/policies.md");

/// The text of every block fenced as ```yaml, with the 1-based line its first line is on.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut open {
            None if line.trim() == "```yaml" => {
                assert_eq!(
                    line,
                    "```yaml",
                    "line {}: keep ```yaml fences unindented",
                    index + 1
                );
                open = Some((index + 2, String::new()));
            }
            Some(_) if fence => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "a ```yaml block is never closed");
    blocks
}

#[test]
fn every_yaml_example_in_the_policy_docs_loads() {
    let blocks = yaml_blocks(POLICY_DOCS);
    assert!(!blocks.is_empty(), "no ```yaml block found");
    for (line, text) in blocks {
        let source = PolicySource::new(format!("docs/policies.md (block at line {line})"), text);
        if let Err(errors) = PolicySet::load(&[source]) {
            panic!("{errors}");
        }
    }
}
