//! The config loader on any bytes: a config or an error, never a panic; and
//! the schedules of a config that loads can be evaluated in their zones.

#![no_main]

use chrono::DateTime;
use invite_rotator::config::{Config, Purpose};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Tokens stay unread: the fuzzer must not read files or the environment.
    match Config::parse(text, Path::new("fuzz.toml"), Purpose::Read) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            let now = DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default();
            for g in config.groups.iter() {
                for t in g.schedule.upcoming(now, g.timezone, 2) {
                    assert!(t > now);
                }
            }
        }
    }
});
