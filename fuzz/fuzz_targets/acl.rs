//! `cargo fuzz run acl`: see sol_fuzz::acl.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sol_fuzz::acl(data));
