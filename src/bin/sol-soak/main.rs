//! `sol-soak`: drives a real `sol` process with hostile and heavy clients
//! and prints the figures recorded in docs/reliability.md.
//!
//! By default it starts the broker itself (`--sol`, default
//! `target/release/sol`) on a free 127.0.0.1 port with a generated config,
//! reads its memory from `/proc/<pid>/status`, and stops it at the end.
//! `--attach HOST:PORT --pid PID` uses a broker that is already running.
//! Every client connects to 127.0.0.1 from 127.0.0.1 to 127.0.0.8; nothing
//! leaves the machine. Exit status 0 when the scenario met its bound.

#![forbid(unsafe_code)]

mod broker;
mod client;
mod scenarios;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use broker::{Broker, Launch};

const USAGE: &str = "\
Usage: sol-soak SCENARIO [options]

Scenarios (the bound each must meet):
  preauth        14 kinds of non-CONNECT first packet announcing 100 MB, from
                 --per-kind sockets per kind at once: all closed, RSS grows < 20 MiB
  no-connect     --clients sockets that never send CONNECT: each closed within
                 connect_timeout + 1 s, a bystander served throughout
  scale          up to --clients idle clients pinging every keepalive / 3, held
                 for --duration; then --extra more: none dropped, all answered
  slow-consumer  a QoS 1 subscriber that never reads, --rate msg/s of --payload
                 bytes for --duration: RSS plateaus, a bystander served
  keepalive      --clients silent clients with --keepalive and a will: closed in
                 [1.5 x keepalive, 1.5 x keepalive + 1 s], each will once

Options:
  --sol PATH             the broker binary (default target/release/sol)
  --nofile N             run the broker under prlimit --nofile=N:N
  --attach ADDR --pid P  use a running broker instead
  --clients N            (no-connect 10000, scale 20000, keepalive 100)
  --duration SECS        (scale 120, slow-consumer 120)
  --keepalive SECS       (scale 60, keepalive 2)
  --connect-timeout SECS the broker's connect_timeout (default 10)
  --backlog N            the broker's tcp_backlog (default 4096: a storm of
                         connects overflows 128 whenever the broker is
                         descheduled for a few ms, and each overflow costs
                         the client a 1 s SYN retransmit)
  --rate N               messages a second (default 1000)
  --payload BYTES        message size (default 1024)
  --extra N              connections tried past the limit (default 20)
  --per-kind N           sockets per packet kind (default 100)
";

/// The command line, with each scenario's defaults filled in.
pub struct Options {
    scenario: String,
    sol: PathBuf,
    nofile: Option<u64>,
    attach: Option<(SocketAddr, u32)>,
    pub clients: usize,
    pub duration: Duration,
    pub keepalive: Duration,
    pub connect_timeout: Duration,
    backlog: u64,
    pub rate: u64,
    pub payload: usize,
    pub extra: usize,
    pub per_kind: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let scenario = args.first().ok_or("no scenario")?.clone();
    let (clients, duration, keepalive) = match scenario.as_str() {
        "preauth" => (0, 0, 60),
        "no-connect" => (10_000, 0, 60),
        "scale" => (20_000, 120, 60),
        "slow-consumer" => (0, 120, 60),
        "keepalive" => (100, 0, 2),
        other => return Err(format!("unknown scenario {other}")),
    };
    let mut o = Options {
        scenario,
        sol: PathBuf::from("target/release/sol"),
        nofile: None,
        attach: None,
        clients,
        duration: Duration::from_secs(duration),
        keepalive: Duration::from_secs(keepalive),
        connect_timeout: Duration::from_secs(10),
        backlog: 4096,
        rate: 1000,
        payload: 1024,
        extra: 20,
        per_kind: 100,
    };
    let mut pid = None;
    let mut addr = None;
    let mut rest = args.iter().skip(1);
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--sol" => o.sol = PathBuf::from(value),
            "--nofile" => o.nofile = Some(number()?),
            "--attach" => {
                addr = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("--attach: {e}"))?,
                )
            }
            "--pid" => pid = Some(u32::try_from(number()?).map_err(|e| e.to_string())?),
            "--clients" => o.clients = usize::try_from(number()?).map_err(|e| e.to_string())?,
            "--duration" => o.duration = Duration::from_secs(number()?),
            "--keepalive" => o.keepalive = Duration::from_secs(number()?),
            "--connect-timeout" => o.connect_timeout = Duration::from_secs(number()?),
            "--backlog" => o.backlog = number()?,
            "--rate" => o.rate = number()?,
            "--payload" => o.payload = usize::try_from(number()?).map_err(|e| e.to_string())?,
            "--extra" => o.extra = usize::try_from(number()?).map_err(|e| e.to_string())?,
            "--per-kind" => o.per_kind = usize::try_from(number()?).map_err(|e| e.to_string())?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    match (addr, pid) {
        (Some(a), Some(p)) => o.attach = Some((a, p)),
        (None, None) => {}
        _ => return Err("--attach and --pid go together".to_string()),
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sol-soak: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = [
        format!("connect_timeout {}s", options.connect_timeout.as_secs()),
        format!("tcp_backlog {}", options.backlog),
    ];
    let started = match options.attach {
        Some((addr, pid)) => Ok(Broker::attach(addr, pid)),
        None => Broker::start(&Launch {
            sol: &options.sol,
            extra_config: &config,
            nofile: options.nofile,
        }),
    };
    let mut broker = match started {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sol-soak: cannot start {}: {e}", options.sol.display());
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sol-soak {} against {} (pid {}, RSS {})",
        options.scenario,
        broker.addr,
        broker.pid,
        broker::mib(broker.rss())
    );
    let result = match options.scenario.as_str() {
        "preauth" => scenarios::preauth(&mut broker, &options),
        "no-connect" => scenarios::no_connect(&mut broker, &options),
        "scale" => scenarios::scale(&mut broker, &options),
        "slow-consumer" => scenarios::slow_consumer(&mut broker, &options),
        _ => scenarios::keepalive(&mut broker, &options),
    };
    let alive = broker.alive();
    match result {
        Ok(true) if alive => {
            println!("PASS");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("FAIL{}", if alive { "" } else { " (the broker died)" });
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}
