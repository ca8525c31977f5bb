//! The command line: which scenario, against which broker, with what load.
//!
//! Hand-parsed like `sol`'s own arguments: the crate has no argument parser,
//! and every option is a plain `--name value` pair.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use sol::protocol::QoS;

pub const USAGE: &str = "\
usage: sol-bench SCENARIO [options]

Scenarios:
  fanin      N publishers (--pubs), one subscriber, one topic
  fanout     one publisher, N subscribers (--subs) on one topic
  pairs      N publisher/subscriber pairs (--pairs), a topic each
  latency    one publisher at a fixed rate (--rate), one subscriber;
             p50/p99/max from a timestamp carried in each payload
  conns      open C idle clients (--conns); connect rate, broker RSS per
             connection

Target:
  --host ADDR        broker address (default 127.0.0.1)
  --port PORT        broker TCP port (default 1883)
  --unix PATH        connect over this Unix socket instead of TCP
  --pid PID          the broker's pid: its CPU time and RSS are read from
                     /proc/PID/stat and /proc/PID/status before and after
  --label NAME       a name for the broker in the report (default: broker)

Load:
  --qos 0|1|2        QoS of publishes and subscriptions (default 0)
  --size BYTES       payload size, at least 16 (default 16)
  --pubs N           fanin publishers (default 10)
  --subs N           fanout subscribers (default 100)
  --pairs N          pairs (default 100)
  --conns C          conns: idle clients (default 1000)
  --duration SECS    how long publishers publish (default 3)
  --messages N       publish exactly N messages per publisher instead
  --rate R           messages per second per publisher (default: as fast as
                     the flow control allows; latency: 1000)
  --inflight W       QoS 1/2 window per publisher (default 16)
  --outstanding M    most deliveries sent but not yet received, over the
                     run (default: 1000 per subscriber, at most 20000 or 20
                     per subscriber): keeps publishers from overrunning the
                     broker's queues (sol and mosquitto keep 1000 messages
                     per client by default), which would only measure drops
  --sources K        spread TCP clients over source addresses 127.0.0.1 to
                     127.0.0.K (default 1; conns: 4)
  --concurrency N    clients connecting at once (default 64)
  --keepalive SECS   CONNECT keep alive (default 600; the bench sends no
                     PINGREQ, so a run must end within it. 0 turns it off,
                     which rumqttd refuses with ZeroKeepAlive)
  --hold SECS        conns: keep the clients open this long after the last
                     CONNACK before RSS is read (default 1)
  --drain SECS       after publishing, wait this long at most for the last
                     deliveries (default 5)
  --quiet            no progress line on stderr
";

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fanin,
    Fanout,
    Pairs,
    Latency,
    Conns,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Pairs => "pairs",
            Scenario::Latency => "latency",
            Scenario::Conns => "conns",
        }
    }
}

/// Where the broker listens.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Every option, parsed and defaulted.
#[derive(Clone, Debug)]
pub struct Options {
    pub scenario: Scenario,
    pub target: Target,
    pub pid: Option<u32>,
    pub label: String,
    pub qos: QoS,
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    pub pairs: usize,
    pub conns: usize,
    pub duration: Duration,
    pub messages: Option<u64>,
    pub rate: Option<f64>,
    pub inflight: usize,
    pub outstanding: u64,
    pub sources: u8,
    pub concurrency: usize,
    pub keepalive: u16,
    pub hold: Duration,
    pub drain: Duration,
    pub quiet: bool,
}

/// The smallest payload: publisher id (4 bytes), sequence number (4) and
/// send time (8) are embedded in every message.
pub const MIN_SIZE: usize = 16;

impl Options {
    /// Publishers and subscribers the scenario connects.
    pub fn shape(&self) -> (usize, usize) {
        match self.scenario {
            Scenario::Fanin => (self.pubs, 1),
            Scenario::Fanout => (1, self.subs),
            Scenario::Pairs => (self.pairs, self.pairs),
            Scenario::Latency => (1, 1),
            Scenario::Conns => (0, 0),
        }
    }
}

fn value<'a>(args: &'a [String], i: &mut usize, name: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{name} needs a value"))
}

fn number<T: std::str::FromStr>(args: &[String], i: &mut usize, name: &str) -> Result<T, String> {
    let v = value(args, i, name)?;
    v.parse()
        .map_err(|_| format!("{name}: {v:?} is not a valid number"))
}

fn seconds(args: &[String], i: &mut usize, name: &str) -> Result<Duration, String> {
    let s: f64 = number(args, i, name)?;
    if !(0.0..=86_400.0).contains(&s) {
        return Err(format!("{name}: {s} is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Parses the arguments after the program name. `Ok(None)` asks for the usage.
pub fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    let scenario = match first.as_str() {
        "fanin" => Scenario::Fanin,
        "fanout" => Scenario::Fanout,
        "pairs" => Scenario::Pairs,
        "latency" => Scenario::Latency,
        "conns" => Scenario::Conns,
        "-h" | "--help" | "help" => return Ok(None),
        other => return Err(format!("unknown scenario {other:?}")),
    };
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port: u16 = 1883;
    let mut unix = None;
    let mut o = Options {
        scenario,
        target: Target::Unix(PathBuf::new()),
        pid: None,
        label: "broker".to_string(),
        qos: QoS::AtMostOnce,
        size: MIN_SIZE,
        pubs: 10,
        subs: 100,
        pairs: 100,
        conns: 1000,
        duration: Duration::from_secs(3),
        messages: None,
        rate: None,
        inflight: 16,
        outstanding: 0,
        sources: if scenario == Scenario::Conns { 4 } else { 1 },
        concurrency: 64,
        keepalive: 600,
        hold: Duration::from_secs(1),
        drain: Duration::from_secs(5),
        quiet: false,
    };
    let mut i = 1;
    while i < args.len() {
        let name = args[i].as_str();
        match name {
            "--host" => {
                let v = value(args, &mut i, name)?;
                host = v
                    .parse()
                    .map_err(|_| format!("--host: {v:?} is not an IP address"))?;
            }
            "--port" => port = number(args, &mut i, name)?,
            "--unix" => unix = Some(PathBuf::from(value(args, &mut i, name)?)),
            "--pid" => o.pid = Some(number(args, &mut i, name)?),
            "--label" => o.label = value(args, &mut i, name)?.to_string(),
            "--qos" => {
                let q: u8 = number(args, &mut i, name)?;
                o.qos = QoS::from_u8(q).ok_or("--qos must be 0, 1 or 2")?;
            }
            "--size" => o.size = number(args, &mut i, name)?,
            "--pubs" => o.pubs = number(args, &mut i, name)?,
            "--subs" => o.subs = number(args, &mut i, name)?,
            "--pairs" => o.pairs = number(args, &mut i, name)?,
            "--conns" => o.conns = number(args, &mut i, name)?,
            "--duration" => o.duration = seconds(args, &mut i, name)?,
            "--messages" => o.messages = Some(number(args, &mut i, name)?),
            "--rate" => o.rate = Some(number(args, &mut i, name)?),
            "--inflight" => o.inflight = number(args, &mut i, name)?,
            "--outstanding" => o.outstanding = number(args, &mut i, name)?,
            "--sources" => o.sources = number(args, &mut i, name)?,
            "--concurrency" => o.concurrency = number(args, &mut i, name)?,
            "--keepalive" => o.keepalive = number(args, &mut i, name)?,
            "--hold" => o.hold = seconds(args, &mut i, name)?,
            "--drain" => o.drain = seconds(args, &mut i, name)?,
            "--quiet" => o.quiet = true,
            other => return Err(format!("unknown option {other:?}")),
        }
        i += 1;
    }
    o.target = match unix {
        Some(path) => Target::Unix(path),
        None => Target::Tcp(SocketAddr::new(host, port)),
    };
    if o.outstanding == 0 {
        let subs = o.shape().1 as u64;
        // Enough for 20 publishes in flight in a fan-out: fewer, and a broker
        // writes each subscriber one message per system call, which measures
        // the flow control instead of the broker (3x at 10 000 subscribers).
        o.outstanding = (1000 * subs).min(20_000.max(20 * subs)).max(1);
    }
    if scenario == Scenario::Latency && o.rate.is_none() {
        o.rate = Some(1000.0);
    }
    check(&o)?;
    Ok(Some(o))
}

fn check(o: &Options) -> Result<(), String> {
    if o.size < MIN_SIZE {
        return Err(format!(
            "--size must be at least {MIN_SIZE}: every payload carries publisher id, sequence number and send time"
        ));
    }
    if o.size > 1 << 20 {
        return Err("--size is limited to 1 MiB".to_string());
    }
    let (pubs, subs) = o.shape();
    if o.scenario != Scenario::Conns && (pubs == 0 || subs == 0) {
        return Err("the scenario needs at least one publisher and one subscriber".to_string());
    }
    if o.scenario == Scenario::Conns && o.conns == 0 {
        return Err("--conns must be at least 1".to_string());
    }
    if !(1..=60_000).contains(&o.inflight) {
        return Err("--inflight must be between 1 and 60000".to_string());
    }
    if o.sources == 0 || o.concurrency == 0 {
        return Err("--sources and --concurrency must be at least 1".to_string());
    }
    if let Some(rate) = o.rate {
        if !(rate > 0.0 && rate <= 10_000_000.0) {
            return Err("--rate must be above 0 and at most 10 000 000".to_string());
        }
    }
    if o.messages == Some(0) {
        return Err("--messages must be at least 1".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let o = parse(&args("fanin --pubs 2 --qos 1 --port 1999 --messages 50"))
            .unwrap()
            .unwrap();
        assert_eq!(o.scenario, Scenario::Fanin);
        assert_eq!(o.shape(), (2, 1));
        assert_eq!(o.qos, QoS::AtLeastOnce);
        assert_eq!(o.messages, Some(50));
        assert!(matches!(o.target, Target::Tcp(a) if a.port() == 1999));
        assert_eq!(o.outstanding, 1000);
        let o = parse(&args("fanout --subs 10000")).unwrap().unwrap();
        assert_eq!(o.outstanding, 200_000);
        let o = parse(&args("pairs --outstanding 7")).unwrap().unwrap();
        assert_eq!(o.outstanding, 7);
        let o = parse(&args("latency")).unwrap().unwrap();
        assert_eq!(o.rate, Some(1000.0));
        let o = parse(&args("conns --unix /tmp/x")).unwrap().unwrap();
        assert_eq!(o.sources, 4);
        assert!(matches!(o.target, Target::Unix(_)));
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            "fanin --size 15",
            "fanin --qos 3",
            "fanin --pubs 0",
            "fanout --subs x",
            "pairs --bogus 1",
            "fanin --port",
            "nothing",
            "fanin --rate -1",
            "fanin --inflight 0",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad} was accepted");
        }
        assert!(parse(&[]).unwrap().is_none());
    }
}
