use std::net::SocketAddr;

use super::super::Config;
use super::*;

/// The config of a text that must read without an error, bridges included.
fn read(text: &str) -> Config {
    let (config, errors) = Config::read(text);
    assert_eq!(errors, Vec::new(), "{text:?}");
    config
}

/// The errors of a text, as `line N: message`, in line order, bridges
/// refused as `Config::parse` refuses them.
fn errors(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Ok(config) => panic!("{text:?} parsed: {config:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The errors of a text read without refusing bridges.
fn read_errors(text: &str) -> Vec<String> {
    let (_, mut errors) = Config::read(text);
    errors.sort_by_key(|error| error.line);
    errors.iter().map(ToString::to_string).collect()
}

fn tcp(addr: &str) -> ListenerBind {
    ListenerBind::Tcp(addr.parse::<SocketAddr>().unwrap())
}

fn at(path: &str, line: usize) -> Option<ConfigPath> {
    Some(ConfigPath {
        path: PathBuf::from(path),
        line,
    })
}

/// One bridge block that reads, with the keys in `keys`.
fn bridge(keys: &str) -> ConnectionConfig {
    let config = read(&format!("connection far\naddress broker.example\n{keys}"));
    assert_eq!(config.connections.len(), 1);
    config.connections.into_iter().next().unwrap()
}

/// The single error of a bridge block's third line (the first two are
/// `connection far` and its address).
fn bridge_error(key_line: &str) -> String {
    let found = read_errors(&format!(
        "connection far\naddress broker.example\n{key_line}"
    ));
    assert_eq!(found.len(), 1, "{key_line}: {found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn flat_keys_before_the_first_block_configure_the_defaults() {
    let config = read("ip_port 1999\nmax_memory 1GB\nlistener 1884\n");
    assert_eq!(config.ip_port, 1999);
    assert_eq!(config.max_memory, 1_000_000_000);
    assert!(config.tcp_enabled);
    assert_eq!(
        config.listeners,
        vec![ListenerConfig {
            line: 3,
            bind: tcp("127.0.0.1:1884"),
            protocol: ListenerProtocol::Mqtt,
            max_connections: None,
            tls: None,
        }]
    );
    assert_eq!(Config::default().listeners, Vec::new());
    assert_eq!(Config::default().connections, Vec::new());
}

#[test]
fn a_listener_binds_an_ip_address_or_a_unix_socket() {
    let config = read(
        "listener 1884 0.0.0.0\nlistener 1885 ::1\nlistener 0\n\
         listener 0 ./sol.sock\nlistener 0 /run/my sol.sock\n",
    );
    let binds: Vec<ListenerBind> = config.listeners.into_iter().map(|l| l.bind).collect();
    assert_eq!(
        binds,
        vec![
            tcp("0.0.0.0:1884"),
            tcp("[::1]:1885"),
            tcp("127.0.0.1:0"),
            ListenerBind::Unix(PathBuf::from("./sol.sock")),
            ListenerBind::Unix(PathBuf::from("/run/my sol.sock")),
        ]
    );
}

#[test]
fn bad_listener_lines_are_errors_on_their_line() {
    assert_eq!(errors("listener"), vec!["line 1: `listener` needs a value"]);
    let found = errors("listener 70000");
    assert!(
        found[0].starts_with("line 1: listener: `70000` is not a port number"),
        "{found:?}"
    );
    let found = errors("listener 1884 localhost");
    assert!(found[0].contains("neither an IP address"), "{found:?}");
    assert_eq!(
        errors("listener 1884 /tmp/sol.sock"),
        vec!["line 1: listener: a Unix socket is `listener 0 PATH`: the port must be 0, not 1884"]
    );
}

#[test]
fn a_broken_listener_line_still_opens_its_block() {
    // The keys after it are not blamed on the section before.
    assert_eq!(
        errors("listener x\ncertfile c.pem\nkeyfile k.pem\n").len(),
        1
    );
}

#[test]
fn a_broker_setting_inside_a_block_names_its_line() {
    assert_eq!(
        errors("listener 1884\nmax_memory 1GB\n"),
        vec![
            "line 2: `max_memory` is a broker setting and cannot be set inside a `listener` block"
        ]
    );
    assert_eq!(
        read_errors("connection far\naddress h\nip_port 1\n"),
        vec!["line 3: `ip_port` is a broker setting and cannot be set inside a `connection` block"]
    );
}

#[test]
fn a_block_setting_outside_its_block_is_an_error() {
    assert_eq!(
        errors("protocol mqtt\ntopic a/# out\nremote_clientid x\n"),
        vec![
            "line 1: `protocol` can only be set inside a `listener` block",
            "line 2: `topic` can only be set inside a `connection` block",
            "line 3: `remote_clientid` can only be set inside a `connection` block",
        ]
    );
    assert_eq!(
        errors("listener 1884\ntopic a/#\n"),
        vec!["line 2: `topic` is a bridge setting and cannot be set inside a `listener` block"]
    );
    assert_eq!(
        read_errors("connection far\naddress h\ncertfile c.pem\nprotocol mqtt\n"),
        vec![
            "line 3: `certfile` is a listener setting and cannot be set inside a `connection` block",
            "line 4: `protocol` is a listener setting and cannot be set inside a `connection` block",
        ]
    );
    // An unknown key stays an unknown key, wherever it is.
    assert_eq!(
        errors("listener 1884\nbogus 1\n"),
        vec!["line 2: unknown key `bogus`"]
    );
}

#[test]
fn each_block_is_a_section_of_its_own() {
    let text = "max_connections 10\nlistener 1884\nmax_connections 5\n\
                listener 1885\nmax_connections 7\n";
    let config = read(text);
    assert_eq!(config.max_connections, Some(10));
    let limits: Vec<Option<usize>> = config.listeners.iter().map(|l| l.max_connections).collect();
    assert_eq!(limits, vec![Some(5), Some(7)]);
    assert_eq!(
        errors("listener 1884\nprotocol mqtt\nprotocol mqtt\n"),
        vec!["line 3: duplicate key `protocol`: already set on line 2"]
    );
}

#[test]
fn certfile_and_keyfile_make_a_tls_listener() {
    let config = read(
        "listener 8884 ::\ncertfile c.pem\nkeyfile k.pem\ncafile ca.pem\n\
                       tls_protocols tlsv1_3\nrequire_certificate true\n\
                       use_identity_as_username true\n",
    );
    let listener = &config.listeners[0];
    assert_eq!(
        listener.tls,
        Some(TlsConfig {
            certfile: at("c.pem", 2),
            keyfile: at("k.pem", 3),
            cafile: at("ca.pem", 4),
            tls_protocols: super::super::TlsProtocols {
                tls12: false,
                tls13: true
            },
            require_certificate: true,
            use_identity_as_username: true,
        })
    );
    // The flat TLS settings are untouched, and need no tls_port for this.
    assert_eq!(config.security, super::super::SecurityConfig::default());
    assert_eq!(config.security.tls(), None);
}

#[test]
fn the_flat_tls_listener_gives_the_same_struct() {
    let config = read("tls_port 8883\ncertfile c.pem\nkeyfile k.pem\n");
    assert_eq!(
        config.security.tls(),
        Some(TlsConfig {
            certfile: at("c.pem", 2),
            keyfile: at("k.pem", 3),
            ..TlsConfig::default()
        })
    );
}

#[test]
fn a_tls_listener_keeps_the_flat_rules() {
    assert_eq!(
        errors("listener 8884\ncertfile c.pem\n"),
        vec!["line 2: certfile needs keyfile"]
    );
    assert_eq!(
        errors("listener 8884\nkeyfile k.pem\n"),
        vec!["line 2: keyfile needs certfile"]
    );
    assert_eq!(
        errors("listener 8884\ncafile ca.pem\nrequire_certificate false\n"),
        vec![
            "line 2: cafile needs certfile and keyfile",
            "line 3: require_certificate needs certfile and keyfile",
        ]
    );
    let found = errors("listener 8884\ncertfile c\nkeyfile k\nuse_identity_as_username true\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("line 4: use_identity_as_username needs cafile"));
}

#[test]
fn protocol_is_mqtt_for_now() {
    assert_eq!(
        read("listener 1884\nprotocol mqtt\n").listeners[0].protocol,
        ListenerProtocol::Mqtt
    );
    assert_eq!(
        errors("listener 1884\nprotocol websockets\n"),
        vec!["line 2: protocol: `websockets` is not supported yet"]
    );
    assert_eq!(
        errors("listener 1884\nprotocol http\n"),
        vec!["line 2: protocol: `http` is not a listener protocol (mqtt)"]
    );
}

#[test]
fn two_listeners_cannot_share_a_port_or_a_path() {
    assert_eq!(
        errors("ip_address 127.0.0.1\nlistener 1883\n"),
        vec!["line 2: listener 127.0.0.1:1883 is also ip_port: each listener needs a port (or path) of its own"]
    );
    let found = errors("ip_port 1999\nlistener 1999 0.0.0.0\n");
    assert!(found[0].contains("is also ip_port"), "{found:?}");
    let found = errors("tls_port 8883\ncertfile c\nkeyfile k\nlistener 8883\n");
    assert!(found[0].starts_with("line 4: "), "{found:?}");
    assert!(found[0].contains("is also tls_port"), "{found:?}");
    let found = errors("listener 1884\nlistener 1884 ::1\nlistener 1884 0.0.0.0\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("line 3: listener 0.0.0.0:1884 is also the listener on line 1"),
        "{found:?}"
    );
    let found = errors("unix_socket /tmp/s.sock\nip_port 1\nlistener 0 /tmp/s.sock\n");
    assert!(
        found[0].starts_with("line 3: listener unix socket /tmp/s.sock is also unix_socket"),
        "{found:?}"
    );
    // Port 0 picks a free port each time; a Unix-only file has no TCP
    // listener to clash with.
    read("listener 0\nlistener 0\nlistener 0 ::\n");
    read("unix_socket /tmp/s.sock\nlistener 1883\n");
}

#[test]
fn listener_blocks_turn_the_default_tcp_listener_off_unless_it_is_named() {
    let tcp = |text: &str| read(text).tcp_enabled;
    assert!(!tcp("listener 1883 0.0.0.0\n"));
    assert!(!tcp("log_level INFO\nlistener 0 ./sol.sock\n"));
    assert!(tcp("ip_port 1999\nlistener 1883\n"));
    assert!(tcp("ip_address ::1\nlistener 1883\n"));
    // Bridges are no listeners.
    assert!(tcp("connection far\naddress h\n"));
    // The command line names it too.
    let mut config = read("listener 1884\n");
    crate::cli::Args {
        port: Some(1999),
        ..crate::cli::Args::default()
    }
    .apply_to(&mut config);
    assert!(config.tcp_enabled);
}

#[test]
fn a_connection_block_reads_every_bridge_key() {
    let text = "\
connection far-away
address broker.example:8883 10.0.0.2 [::1]:1884 ::2
topic sensors/# out 1
topic cmd/+ in
topic # both 2 local/ remote/
remote_clientid sol-edge
remote_username edge
remote_password two words
cleansession true
keepalive_interval 30
restart_timeout 10 120
try_private false
notifications false
bridge_protocol_version mqttv31
bridge_cafile ca.pem
bridge_certfile c.pem
bridge_keyfile k.pem
bridge_insecure true
tree true
tree_id north
tree_priority 100
";
    let config = read(text);
    let host = |host: &str, port| BridgeAddress {
        host: host.to_string(),
        port,
    };
    let topic = |pattern: &str, direction, qos, prefixes: Option<(&str, &str)>| BridgeTopic {
        pattern: TopicFilter::new(pattern).unwrap(),
        direction,
        qos,
        prefixes: prefixes.map(|(local, remote)| TopicPrefixes {
            local: local.to_string(),
            remote: remote.to_string(),
        }),
    };
    assert_eq!(
        config.connections,
        vec![ConnectionConfig {
            line: 1,
            name: "far-away".to_string(),
            addresses: vec![
                host("broker.example", 8883),
                host("10.0.0.2", 1883),
                host("::1", 1884),
                host("::2", 1883),
            ],
            topics: vec![
                topic("sensors/#", BridgeDirection::Out, QoS::AtLeastOnce, None),
                topic("cmd/+", BridgeDirection::In, QoS::AtMostOnce, None),
                topic(
                    "#",
                    BridgeDirection::Both,
                    QoS::ExactlyOnce,
                    Some(("local/", "remote/"))
                ),
            ],
            remote_clientid: Some("sol-edge".to_string()),
            remote_username: Some("edge".to_string()),
            remote_password: Some("two words".to_string()),
            cleansession: true,
            keepalive_interval: 30,
            restart_timeout: RestartTimeout::Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(120),
            },
            try_private: false,
            notifications: false,
            bridge_protocol_version: BridgeProtocol::Mqtt31,
            bridge_cafile: at("ca.pem", 15),
            bridge_certfile: at("c.pem", 16),
            bridge_keyfile: at("k.pem", 17),
            bridge_insecure: true,
            tree: true,
            tree_id: Some("north".to_string()),
            tree_priority: 100,
        }]
    );
}

#[test]
fn a_bridge_has_mosquittos_defaults() {
    let defaults = bridge("");
    assert_eq!(
        defaults,
        ConnectionConfig {
            addresses: vec![BridgeAddress {
                host: "broker.example".to_string(),
                port: 1883
            }],
            ..ConnectionConfig::new("far".to_string(), 1)
        }
    );
    assert_eq!(defaults.topics, Vec::new());
    assert!(!defaults.cleansession);
    assert_eq!(defaults.keepalive_interval, 60);
    assert_eq!(
        defaults.restart_timeout,
        RestartTimeout::Backoff {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(30)
        }
    );
    assert!(defaults.try_private && defaults.notifications);
    assert_eq!(defaults.bridge_protocol_version, BridgeProtocol::Mqtt311);
    assert!(!defaults.bridge_insecure && !defaults.tree);
    assert_eq!(defaults.tree_priority, 32768);
    assert_eq!(defaults.remote_clientid, None);
}

#[test]
fn bridges_are_refused_until_they_are_built() {
    let text = "log_level INFO\n\nconnection a\naddress h\nconnection b\naddress h\n";
    assert_eq!(read(text).connections.len(), 2);
    assert_eq!(
        errors(text),
        vec![
            "line 3: bridges (`connection` blocks) are not supported yet",
            "line 5: bridges (`connection` blocks) are not supported yet",
        ]
    );
}

#[test]
fn topic_lines_take_mosquittos_forms() {
    let topic = |keys: &str| bridge(keys).topics;
    let one = topic("topic a/b")[0].clone();
    assert_eq!(
        (one.direction, one.qos, one.prefixes),
        (BridgeDirection::Out, QoS::AtMostOnce, None)
    );
    assert_eq!(topic("topic a 2")[0].qos, QoS::ExactlyOnce);
    let prefixed = topic("topic + in here/ there/")[0].clone();
    assert_eq!(prefixed.direction, BridgeDirection::In);
    assert_eq!(prefixed.qos, QoS::AtMostOnce);
    assert_eq!(
        prefixed.prefixes.map(|p| (p.local, p.remote)),
        Some(("here/".to_string(), "there/".to_string()))
    );
    assert_eq!(topic("topic a\ntopic b\ntopic c").len(), 3);
    for (line, why) in [
        ("topic a/#/b", "not a topic filter"),
        ("topic a out 3", "not a QoS"),
        ("topic a out 1 here/", "both prefixes"),
        ("topic a both 1 x/ y/ z/", "is not PATTERN"),
        ("topic a in 0 he+re/ there/", "has a wildcard"),
        ("topic a in 0 here/# there/", "has a wildcard"),
    ] {
        let found = bridge_error(line);
        assert!(found.starts_with("line 3: topic: "), "{found}");
        assert!(found.contains(why), "{line}: {found}");
    }
}

#[test]
fn addresses_are_hosts_with_optional_ports() {
    for (line, why) in [
        ("address h:0", "not a port number"),
        ("address h:70000", "not a port number"),
        ("address a_b", "not a host name"),
        ("address [::1", "without its `]`"),
        ("address [h]:1", "only an IPv6 address"),
        ("address [::1]x", "only `:PORT`"),
        ("address :1883", "not a host name"),
    ] {
        let found = read_errors(&format!("connection far\n{line}\n"));
        assert_eq!(found.len(), 1, "{line}: {found:?}");
        assert!(found[0].starts_with("line 2: address: "), "{found:?}");
        assert!(found[0].contains(why), "{line}: {found:?}");
    }
}

#[test]
fn restart_timeout_is_a_wait_or_a_base_and_a_cap() {
    let timeout = |value: &str| bridge(&format!("restart_timeout {value}")).restart_timeout;
    assert_eq!(
        timeout("10"),
        RestartTimeout::Constant(Duration::from_secs(10))
    );
    assert_eq!(
        timeout("500ms 1m"),
        RestartTimeout::Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60)
        }
    );
    for (value, why) in [
        ("0", "above zero"),
        ("25h", "at most a day"),
        ("soon", "not a wait"),
        ("30 5", "shorter than the base"),
        ("1 2 3", "not BASE [CAP]"),
    ] {
        let found = bridge_error(&format!("restart_timeout {value}"));
        assert!(found.contains(why), "{value}: {found}");
    }
}

#[test]
fn bridge_values_are_checked() {
    assert_eq!(
        bridge_error("bridge_protocol_version mqttv50"),
        "line 3: bridge_protocol_version: `mqttv50` is not supported yet: sol speaks MQTT 3.1.1"
    );
    assert!(bridge_error("bridge_protocol_version 3").contains("mqttv311 or mqttv31"));
    assert!(bridge_error("cleansession yes").contains("not true or false"));
    assert!(bridge_error("keepalive_interval 65536").contains("0 to 65535"));
    assert!(bridge_error("tree true\ntree_priority -1").starts_with("line 4: tree_priority: "));
    assert!(bridge_error("tree true\ntree_id a/b").contains("one topic level"));
    assert!(bridge_error("tree true\ntree_id a b").contains("one word"));
    let long = "x".repeat(65_536);
    assert!(bridge_error(&format!("remote_clientid {long}")).contains("65535 bytes"));
}

#[test]
fn connection_names_are_unique_topic_levels() {
    for bad in ["a/b", "+", "#", "two words"] {
        let found = read_errors(&format!("connection {bad}\naddress h\n"));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert!(found[0].starts_with("line 1: connection: "), "{found:?}");
    }
    assert_eq!(
        read_errors("connection\naddress h\n"),
        vec!["line 1: `connection` needs a value"]
    );
    assert_eq!(
        read_errors("connection a\naddress h\nconnection a\naddress h\n"),
        vec!["line 3: duplicate connection name `a`: already used on line 1"]
    );
}

#[test]
fn bridge_keys_that_need_another_say_so() {
    assert_eq!(
        read_errors("connection far\n"),
        vec!["line 1: connection `far` needs an address"]
    );
    assert_eq!(
        bridge_error("remote_password secret"),
        "line 3: remote_password needs remote_username"
    );
    assert_eq!(
        read_errors(
            "connection far\naddress h\nbridge_cafile ca\nbridge_certfile c\nbridge_insecure true\n"
        ),
        vec!["line 4: bridge_certfile needs bridge_keyfile"]
    );
    assert_eq!(
        read_errors("connection far\naddress h\nbridge_keyfile k\nbridge_certfile c\n"),
        vec!["line 4: bridge_certfile needs bridge_cafile",]
    );
    assert_eq!(
        bridge_error("bridge_insecure false"),
        "line 3: bridge_insecure needs bridge_cafile"
    );
    assert_eq!(
        read_errors("connection far\naddress h\ntree_id north\ntree_priority 1\n"),
        vec![
            "line 3: tree_id needs tree true",
            "line 4: tree_priority needs tree true",
        ]
    );
    // Each block checks its own keys.
    assert_eq!(
        read_errors("connection a\naddress h\nremote_username u\nconnection b\naddress h\n"),
        Vec::<String>::new()
    );
}
