//! Settings documents (the JSON of `PUT /settings/…`): parsing never panics, and
//! a level that is accepted reads back, through its document, as the same level.
#![no_main]

use carteiro_core::settings::{Level, SettingsDoc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<SettingsDoc>(input) else { return };
    let Ok(level) = Level::parse(&doc, None) else { return };
    // The document carries no secret (only `…_set`): the stored level keeps them.
    let again = Level::parse(&level.to_doc(), Some(&level)).expect("a level's own document is valid");
    assert_eq!(again, level);
});
