//! `cargo fuzz run config`: see sol_fuzz::config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sol_fuzz::config(data));
