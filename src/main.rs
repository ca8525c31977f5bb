//! The `sol` binary: reads the command line and the config, starts logging,
//! binds the listeners and runs the event loop.
//!
//! Everything here is glue: arguments ([`sol::cli`]), then the config
//! ([`sol::config`]), then logging ([`sol::logging`]), then the broker
//! ([`sol::net`]). Exit codes: 0 for success
//! (including `-h`, `--version` and a good `--test-config`), 1 for a bad
//! configuration or a failure to start or run, 2 for a bad command line.

// Nothing a client sends may panic the broker: one panic would disconnect
// every client. Outside tests, these lints turn every `unwrap`, `expect`,
// `panic!`, `unreachable!`, `todo!` and slice index into a build error;
// code uses `get`, pattern matching and checked arithmetic instead. There
// are no exceptions to justify: none of them occurs outside tests.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::todo,
        clippy::unimplemented
    )
)]

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sol::cli::{self, Args, Command, USAGE};
use sol::config::{Config, ConfigError, ListenerBind, DEFAULT_CONFIG_PATH};
use sol::net::Server;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit status for a command line that cannot be understood, as `getopt`
/// tools and BSD's sysexits use.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let command = match cli::parse_os_args(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("sol: {message}");
            eprint!("{USAGE}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("sol {VERSION}");
            ExitCode::SUCCESS
        }
        Command::Run(args) => run(&args),
    }
}

fn run(args: &Args) -> ExitCode {
    let (mut config, source) = match load_config(args) {
        Ok(loaded) => loaded,
        Err((source, errors)) => {
            report_config_errors(&source, &errors);
            return ExitCode::FAILURE;
        }
    };
    args.apply_to(&mut config);
    // The files the config names are part of it: a password file that does
    // not parse is a configuration error, reported like one. What they hold
    // is what the server starts with: each is read once.
    let files = match sol::net::check_files(&config) {
        Ok(files) => files,
        Err(errors) => {
            report_config_errors(&source, &errors);
            return ExitCode::FAILURE;
        }
    };

    if args.test_config {
        println!(
            "sol: configuration OK ({source}), listeners: {}",
            Listeners(&config)
        );
        return ExitCode::SUCCESS;
    }

    if let Err(error) = sol::logging::init(config.log_level, config.log_path.as_deref()) {
        eprintln!("sol: {error}");
        return ExitCode::FAILURE;
    }
    log::info!("sol {VERSION} starting with {source}");

    let mut server = match Server::bind_with(&config, files) {
        Ok(server) => server,
        Err(error) => {
            fail(
                &config,
                &format!("cannot listen on {}: {error}", Listeners(&config)),
            );
            return ExitCode::FAILURE;
        }
    };
    // SIGINT and SIGTERM stop cleanly (exit 0), SIGHUP reopens the log
    // file and reloads.
    if let Err(error) = server.catch_signals() {
        fail(&config, &format!("cannot install signal handlers: {error}"));
        return ExitCode::FAILURE;
    }
    // The real addresses: with port 0 the port is only known now.
    for addr in server.listener_addrs() {
        log::info!("listening on {addr}");
    }

    match server.run() {
        Ok(()) => {
            log::info!("sol stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            fail(&config, &format!("event loop failed: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// Where the configuration came from, for messages.
enum Source {
    File(PathBuf),
    /// No `-c` and no [`DEFAULT_CONFIG_PATH`].
    Defaults,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Defaults => write!(
                f,
                "built-in defaults, as {DEFAULT_CONFIG_PATH} does not exist"
            ),
        }
    }
}

/// `-c FILE` if given; otherwise the default file if it exists; otherwise
/// the defaults, as the original Sol did.
fn load_config(args: &Args) -> Result<(Config, Source), (Source, Vec<ConfigError>)> {
    let path = match &args.config_path {
        Some(path) => path.clone(),
        None => {
            let default = Path::new(DEFAULT_CONFIG_PATH);
            // Only a file that is certainly absent means "use the defaults":
            // one we may not look at (Err) is loaded, so its error is shown
            // rather than the broker starting with settings nobody chose.
            if let Ok(false) = default.try_exists() {
                return Ok((Config::default(), Source::Defaults));
            }
            default.to_path_buf()
        }
    };
    match Config::load(&path) {
        Ok(config) => Ok((config, Source::File(path))),
        Err(errors) => Err((Source::File(path), errors)),
    }
}

/// One error per line on stderr, each prefixed with the file it is in, the
/// way compilers do, so editors can jump to it.
fn report_config_errors(source: &Source, errors: &[ConfigError]) {
    for error in errors {
        match source {
            Source::File(path) if error.line > 0 => {
                eprintln!("sol: {}: {error}", path.display());
            }
            _ => eprintln!("sol: {error}"),
        }
    }
    let count = errors.len();
    let plural = if count == 1 { "" } else { "s" };
    eprintln!("sol: {count} error{plural} in the configuration");
}

/// Logs a fatal error, and also prints it when the log goes to a file, so
/// the person who started `sol` sees why it stopped.
fn fail(config: &Config, message: &str) {
    log::error!("{message}");
    if config.log_path.is_some() {
        eprintln!("sol: {message}");
    }
}

/// The listeners a config asks for, for messages: `tcp 127.0.0.1:1883 and
/// unix socket /tmp/sol.sock`; the default ones first, then the `listener`
/// blocks in file order.
struct Listeners<'a>(&'a Config);

impl fmt::Display for Listeners<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.0;
        // Through SocketAddr so an IPv6 address gets its brackets.
        let tcp = |kind: &str, port: u16| match config.ip_address.parse::<IpAddr>() {
            Ok(ip) => format!("{kind} {}", SocketAddr::new(ip, port)),
            Err(_) => format!("{kind} {}:{port}", config.ip_address),
        };
        let mut all = Vec::new();
        if config.tcp_enabled {
            all.push(tcp("tcp", config.ip_port));
        }
        if let Some(path) = &config.unix_socket {
            all.push(format!("unix socket {}", path.display()));
        }
        if let Some(port) = config.security.tls_port {
            all.push(tcp("tls", port));
        }
        for listener in &config.listeners {
            let kind = if listener.tls.is_some() { "tls" } else { "tcp" };
            all.push(match &listener.bind {
                ListenerBind::Tcp(addr) => format!("{kind} {addr}"),
                ListenerBind::Unix(path) => format!("unix socket {}", path.display()),
            });
        }
        f.write_str(&all.join(" and "))
    }
}
