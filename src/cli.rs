//! The command line: `sol [-c FILE] [-v] [-a ADDR] [-p PORT] [--test-config]`.
//!
//! This module owns turning `argv` into a [`Command`], the usage text, and
//! the few settings the command line may override in a [`Config`]. It must
//! not know how a config file is found or read (that is `main.rs`), nor how
//! the settings are used.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::{parse_whole, Config, LogLevel};

/// The help text, printed for `-h` and after a usage error.
pub const USAGE: &str = "\
Usage: sol [-c FILE] [-v] [-a ADDR] [-p PORT] [--test-config]
       sol -h | --help | --version

A single-threaded MQTT 3.1.1 broker.

Options:
  -c FILE          read the configuration from FILE
                   (default: /etc/sol/sol.conf if it exists, else built-in defaults)
  -v               log at DEBUG level, whatever the configuration says
  -a ADDR          listen for TCP on the IP address ADDR (overrides ip_address)
  -p PORT          listen for TCP on PORT (overrides ip_port)
  --test-config    check the configuration, report any errors and exit
  -h, --help       print this help and exit
  --version        print the version and exit
";

/// What the command line asks for when it asks to run the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-c FILE`: the config file. Without it,
    /// [`DEFAULT_CONFIG_PATH`](crate::config::DEFAULT_CONFIG_PATH) if it
    /// exists, else the defaults.
    pub config_path: Option<PathBuf>,
    /// `-v`: log at DEBUG whatever the file says.
    pub verbose: bool,
    /// `-a ADDR`: the TCP listener's address, checked to be an IP address.
    pub address: Option<String>,
    /// `-p PORT`: the TCP listener's port.
    pub port: Option<u16>,
    /// `--test-config`: check the configuration, report, and exit.
    pub test_config: bool,
}

/// What the command line asks `sol` to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Args),
    /// `-h` or `--help`.
    Help,
    /// `--version`.
    Version,
}

impl Args {
    /// Lets the command line override the file: `-a` and `-p` set the TCP
    /// listener (and turn it on even when the file named only a Unix
    /// socket), `-v` sets the log level to DEBUG.
    pub fn apply_to(&self, config: &mut Config) {
        if let Some(address) = &self.address {
            config.ip_address = address.clone();
            config.tcp_enabled = true;
        }
        if let Some(port) = self.port {
            config.ip_port = port;
            config.tcp_enabled = true;
        }
        if self.verbose {
            config.log_level = LogLevel::Debug;
        }
    }
}

/// Parses the arguments after the program name as the operating system
/// gave them. `std::env::args` would panic on one that is not UTF-8; that
/// is a usage error instead.
pub fn parse_os_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let args = args
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
        })
        .collect::<Result<Vec<String>, String>>()?;
    parse_args(args)
}

/// Parses the arguments after the program name.
///
/// Options are read left to right: `-h` and `--version` answer at once
/// (later arguments are not looked at), an option given twice keeps its last
/// value (so a wrapper script can append overrides), and an option's value is
/// the next argument whatever it looks like, as with `getopt` (`-cFILE` is not
/// accepted). The error is one line, without the usage text.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            "-v" => parsed.verbose = true,
            "--test-config" => parsed.test_config = true,
            "-c" => parsed.config_path = Some(PathBuf::from(option_value(&mut args, "-c")?)),
            "-a" => {
                let address = option_value(&mut args, "-a")?;
                if address.parse::<IpAddr>().is_err() {
                    return Err(format!(
                        "-a: `{}` is not an IP address",
                        address.escape_debug()
                    ));
                }
                parsed.address = Some(address);
            }
            "-p" => {
                let port = option_value(&mut args, "-p")?;
                let number = parse_whole(&port, 0, u16::MAX.into(), "a port number")
                    .map_err(|message| format!("-p: {message}"))?;
                parsed.port = Some(number);
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option `{}`", other.escape_debug()))
            }
            other => return Err(format!("unexpected argument `{}`", other.escape_debug())),
        }
    }
    Ok(Command::Run(parsed))
}

fn option_value(args: &mut impl Iterator<Item = String>, option: &str) -> Result<String, String> {
    args.next()
        .ok_or_else(|| format!("option {option} needs a value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse_args(list.iter().map(|arg| arg.to_string()))
    }

    fn run_args(list: &[&str]) -> Args {
        match args(list) {
            Ok(Command::Run(args)) => args,
            other => panic!("{list:?} gave {other:?}"),
        }
    }
    #[test]
    fn no_arguments_runs_with_nothing_overridden() {
        assert_eq!(args(&[]), Ok(Command::Run(Args::default())));
    }

    #[test]
    fn every_flag_is_parsed() {
        let parsed = run_args(&[
            "-c",
            "/etc/x.conf",
            "-v",
            "-a",
            "::",
            "-p",
            "8883",
            "--test-config",
        ]);
        assert_eq!(
            parsed,
            Args {
                config_path: Some(PathBuf::from("/etc/x.conf")),
                verbose: true,
                address: Some("::".to_string()),
                port: Some(8883),
                test_config: true,
            }
        );
    }

    #[test]
    fn help_and_version_answer_at_once() {
        assert_eq!(args(&["-h"]), Ok(Command::Help));
        assert_eq!(args(&["--help"]), Ok(Command::Help));
        assert_eq!(args(&["--version"]), Ok(Command::Version));
        assert_eq!(args(&["-v", "--help", "--bogus"]), Ok(Command::Help));
        assert_eq!(args(&["--version", "-h"]), Ok(Command::Version));
    }

    #[test]
    fn a_repeated_option_keeps_its_last_value() {
        assert_eq!(run_args(&["-p", "1", "-p", "2"]).port, Some(2));
    }

    #[test]
    fn option_values_are_taken_verbatim() {
        // As with getopt: the word after -c is the file, even if it looks like a flag.
        assert_eq!(
            run_args(&["-c", "-v"]).config_path,
            Some(PathBuf::from("-v"))
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        let cases = [
            (&["-x"][..], "unknown option `-x`"),
            (&["--verbose"][..], "unknown option `--verbose`"),
            (&["-cfile.conf"][..], "unknown option `-cfile.conf`"),
            (&["-"][..], "unknown option `-`"),
            (&["sol.conf"][..], "unexpected argument `sol.conf`"),
            (&["-c"][..], "option -c needs a value"),
            (&["-v", "-a"][..], "option -a needs a value"),
            (&["-p"][..], "option -p needs a value"),
            (
                &["-a", "localhost"][..],
                "-a: `localhost` is not an IP address",
            ),
        ];
        for (list, expected) in cases {
            assert_eq!(args(list), Err(expected.to_string()), "{list:?}");
        }
        for port in ["65536", "-1", "http", ""] {
            let error = args(&["-p", port]).unwrap_err();
            assert!(error.starts_with("-p: "), "{error}");
            assert!(error.contains("0 to 65535"), "{error}");
        }
    }

    #[test]
    fn args_override_the_file() {
        let mut config = Config::parse("unix_socket /tmp/s\nlog_level ERROR").unwrap();
        assert!(!config.tcp_enabled);
        Args::default().apply_to(&mut config);
        assert!(!config.tcp_enabled);
        assert_eq!(config.log_level, LogLevel::Error);

        let mut with_port = config.clone();
        run_args(&["-p", "0"]).apply_to(&mut with_port);
        assert!(with_port.tcp_enabled);
        assert_eq!(with_port.ip_port, 0);
        assert_eq!(with_port.ip_address, "127.0.0.1");

        let mut with_address = config.clone();
        run_args(&["-a", "0.0.0.0", "-v"]).apply_to(&mut with_address);
        assert!(with_address.tcp_enabled);
        assert_eq!(with_address.ip_address, "0.0.0.0");
        assert_eq!(with_address.ip_port, 1883);
        assert_eq!(with_address.log_level, LogLevel::Debug);
        assert_eq!(with_address.unix_socket, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn an_argument_that_is_not_utf8_is_an_error() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', 0xff]);
        let error = parse_os_args([bad]).unwrap_err();
        assert!(error.contains("not valid UTF-8"), "{error}");
        assert_eq!(
            parse_os_args([OsString::from("--version")]),
            Ok(Command::Version)
        );
    }
}
