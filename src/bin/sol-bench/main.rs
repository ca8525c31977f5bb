//! sol-bench: a load generator that measures any MQTT 3.1.1 broker.
//!
//! It speaks MQTT itself over TCP or a Unix socket, from one thread and one
//! `mio` poll loop, and reports what a broker costs per message and per
//! connection. Every run verifies its counts (sent, received, lost,
//! duplicated, out of order) from the publisher id and sequence number that
//! each payload carries, and, given the broker's pid, reads the broker's CPU
//! time and RSS from `/proc` to report messages per broker CPU-second.
//!
//! The bench uses sol's own codec (`sol::protocol::{encode, Decoder}`) for
//! every packet but the PUBLISH it sends, which [`wire`] writes from a
//! template to keep the generator cheap; a unit test checks that template
//! byte for byte against sol's encoder. A codec bug shared by broker and
//! bench could hide from a sol-only run, which is one more reason the bench
//! is run against mosquitto and rumqttd too (`bench/compare.sh`).
//!
//! # Layout
//!
//! - [`args`]: the command line.
//! - [`engine`]: the event loop (setup, polling, reading, flushing), with
//!   the scenarios run on it (`engine/load.rs`: load, drain, conns) and
//!   what a client does with each packet (`engine/inbound.rs`).
//! - [`client`]: one client's socket, buffers and QoS window.
//! - [`wire`]: the PUBLISH template and the payload stamp.
//! - [`verify`]: per-publisher tracking of what each subscriber received.
//! - [`procstat`]: CPU time and RSS from `/proc`.
//! - [`report`]: the human table and the JSON line.
//!
//! Output: the table on stdout, then one JSON line starting with `{`; a
//! progress line on stderr once a second. Exit status 1 when the run failed
//! to complete (a refused connection, a closed socket, a decode error), 2
//! when it completed but its counts do not verify.

mod args;
mod client;
mod engine;
mod procstat;
mod report;
mod verify;
mod wire;

use std::process::ExitCode;

use engine::Engine;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let opts = match args::parse(&argv) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sol-bench: {e}\n\n{}", args::USAGE);
            return ExitCode::FAILURE;
        }
    };
    let scenario = opts.scenario;
    let engine = match Engine::new(opts) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("sol-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if report::is_load(scenario) {
        engine.run_load().map(|r| {
            let ok = r.counts.verified() && r.protocol_errors == 0;
            (r.table(), r.json(), ok)
        })
    } else {
        engine.run_conns().map(|r| (r.table(), r.json(), true))
    };
    match result {
        Ok((table, json, ok)) => {
            print!("{table}");
            println!("{json}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("sol-bench: {scenario:?} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
