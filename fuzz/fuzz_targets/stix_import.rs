//! Feeds arbitrary text to the indicator import (`lazaret_core::indicator::import`, what
//! `lazaretctl indicators import` runs; the CLI only reads the file and writes the result): the
//! plain list parser `from_list` and the STIX 2.1 bundle parser `from_stix` (JSON, then the
//! supported pattern subset `[object:path = 'value'] OR …`), then `to_document` on what was
//! imported and `IndicatorSet::load` on that document.
//!
//! Must hold: nothing panics; a bad entry is reported in `skipped`, never dropped; every
//! imported indicator's id is unique; and what an import accepted is always accepted again by
//! `IndicatorSet::load` with the same indicators (the module's promise: the result is a document
//! that loads, ready to sign).
#![no_main]

use lazaret_core::indicator::IndicatorSet;
use lazaret_core::indicator::import::{Imported, from_list, from_stix, to_document};
use libfuzzer_sys::fuzz_target;

fn check(source: &str, imported: &Imported) {
    let mut ids: Vec<&str> = imported
        .indicators
        .iter()
        .map(|indicator| indicator.id.as_str())
        .collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "imported ids are unique");
    for skipped in &imported.skipped {
        assert!(!skipped.why.is_empty(), "a skipped entry says why");
    }
    let document = to_document(source, &imported.indicators);
    match IndicatorSet::load([("imported.yaml", document.as_str())]) {
        Ok(set) => assert_eq!(
            set.indicators, imported.indicators,
            "the document loads back to what was imported:\n{document}"
        ),
        Err(errors) => panic!("an imported document does not load: {errors:#?}\n{document}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = "feed";
    check(source, &from_list(source, text));
    if let Ok(imported) = from_stix(source, text) {
        check(source, &imported);
    }
});
