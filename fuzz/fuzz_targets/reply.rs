//! The API reply parsers on any body: a classified result, never a panic; an
//! accepted invite code is always `[A-Za-z0-9_-]{1,64}`.

#![no_main]

use invite_rotator::ryzeapi::{CallError, parse_info, parse_reset};
use invite_rotator::whatsapp::{InviteCode, Jid};
use libfuzzer_sys::fuzz_target;

fn check(code: &InviteCode) {
    let s = code.as_str();
    assert!((1..=64).contains(&s.len()), "{s:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{s:?}"
    );
}

fuzz_target!(|body: &[u8]| {
    let jid = Jid::parse("120363406289005073@g.us").expect("a valid JID");
    match parse_reset(&jid, body) {
        Ok(reply) => check(&reply.code),
        Err(e) => assert!(matches!(e, CallError::Unknown(_)), "{e:?}"),
    }
    match parse_info(body) {
        Ok(info) => info.code.iter().for_each(check),
        Err(e) => assert!(matches!(e, CallError::Transient(_)), "{e:?}"),
    }
});
