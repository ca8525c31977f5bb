//! `cargo fuzz run session`: see sol_fuzz::session.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sol_fuzz::session(data));
