//! `cargo fuzz run decode`: see sol_fuzz::decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sol_fuzz::decode(data));
