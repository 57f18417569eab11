//! The event parser on any body: an envelope or an error, never a panic; the
//! stored data stays within its bound, and a token planted in the envelope
//! never survives.

#![no_main]

use invite_rotator::events::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(envelope) = parse::envelope(body) {
        let _ = parse::group_flow(&envelope.data);
        let _ = parse::instance_state(&envelope.data);
        let stored = parse::stored_data(&envelope.data);
        assert!(stored.len() <= parse::MAX_DATA_BYTES);
        // The token field is dropped wherever it is: a token-named key never
        // reaches what is stored.
        let lowered = stored.to_ascii_lowercase();
        assert!(!lowered.contains("\"token\":"), "{stored}");
    }
});
