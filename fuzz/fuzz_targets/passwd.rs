//! `cargo fuzz run passwd`: see sol_fuzz::passwd.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sol_fuzz::passwd(data));
