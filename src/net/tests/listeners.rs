//! Listeners and accepting: Unix sockets, TCP and Unix together, the
//! announcement of each connection, `max_connections`, the listener tokens.

use super::*;

#[test]
fn bind_refuses_a_config_without_listeners() {
    let config = Config {
        tcp_enabled: false,
        unix_socket: None,
        ..tcp_config()
    };
    assert!(Server::bind(&config).is_err());
}

#[test]
fn the_handle_can_be_sent_and_shared() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<ServerHandle>();
}

#[test]
fn a_unix_socket_serves_clients_and_its_file_goes_with_the_server() {
    let path = unix_path("loop");
    let config = unix_config(&path);
    let server = Server::bind(&config).unwrap();
    assert_eq!(server.tcp_addr(), None);
    assert_eq!(server.unix_path(), Some(path.as_path()));
    let handle = server.handle();
    let limits = Limits::new(config.max_request_size);
    let thread = thread::spawn(move || server.run_with(Script::default(), limits));
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&connect_bytes("u")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    handle.shutdown();
    thread.join().unwrap().unwrap();
    assert!(!path.exists());
}

#[test]
fn tcp_and_unix_listeners_run_together() {
    let path = unix_path("both");
    let config = Config {
        tcp_enabled: true,
        ..unix_config(&path)
    };
    let config = Config {
        ip_port: 0,
        ..config
    };
    let server = start(&config, Script::default());
    let mut tcp = server.client();
    let mut unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&connect_bytes("t")).unwrap();
    unix.write_all(&connect_bytes("u")).unwrap();
    assert_eq!(read_n(&mut tcp, 4), CONNACK_ACCEPTED);
    assert_eq!(read_n(&mut unix, 4), CONNACK_ACCEPTED);
    server.stop();
    assert!(!path.exists());
}

#[test]
fn every_accepted_plain_connection_is_established_once_before_its_first_packet() {
    let path = unix_path("established");
    let config = Config {
        tcp_enabled: true,
        ip_port: 0,
        ..unix_config(&path)
    };
    let script = Script {
        note_established: true,
        ..Script::default()
    };
    let server = start(&config, script);
    let mut tcp = server.client();
    tcp.write_all(&connect_bytes("t")).unwrap();
    assert_eq!(read_n(&mut tcp, 4), CONNACK_ACCEPTED);
    let mut unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    unix.write_all(&connect_bytes("u")).unwrap();
    assert_eq!(read_n(&mut unix, 4), CONNACK_ACCEPTED);
    let log = server.stop();
    let until_shutdown: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .take_while(|l| !l.starts_with("closed"))
        .collect();
    assert_eq!(
        until_shutdown,
        [
            "open",
            "established Tcp",
            "CONNECT",
            "open",
            "established Unix",
            "CONNECT"
        ]
    );
}

#[test]
fn connections_beyond_max_connections_are_closed_and_the_others_served() {
    let mut limits = Limits::new(1000);
    limits.max_connections = Some(2);
    let server = start_limited(&tcp_config(), Script::default(), limits);
    let mut first = server.client();
    first.write_all(&connect_bytes("a")).unwrap();
    assert_eq!(read_n(&mut first, 4), CONNACK_ACCEPTED);
    let mut second = server.client();
    second.write_all(&connect_bytes("b")).unwrap();
    assert_eq!(read_n(&mut second, 4), CONNACK_ACCEPTED);

    let mut third = server.client();
    assert_closed(&mut third);
    for client in [&mut first, &mut second] {
        client.write_all(&PINGREQ).unwrap();
        assert_eq!(read_n(client, 2), PINGRESP);
    }
    assert_eq!(server.log().iter().filter(|l| *l == "open").count(), 2);

    // Room again once one goes.
    first.write_all(&DISCONNECT).unwrap();
    assert_closed(&mut first);
    let mut fourth = server.client();
    fourth.write_all(&connect_bytes("d")).unwrap();
    assert_eq!(read_n(&mut fourth, 4), CONNACK_ACCEPTED);
    server.stop();
}

#[test]
fn listener_tokens_count_down_below_the_reserved_ones_and_keys_stay_under_them() {
    use crate::net::{first_reserved, listener_index, listener_token, SIGNALS, WAKER};
    let tokens: Vec<_> = (0..3).map(listener_token).collect();
    assert!(tokens.iter().all(|t| *t != WAKER && *t != SIGNALS));
    for (index, token) in tokens.iter().enumerate() {
        assert_eq!(listener_index(*token, 3), Some(index));
    }
    assert_eq!(listener_index(tokens[2], 2), None, "not one of two");
    assert_eq!(listener_index(mio::Token(0), 3), None, "a connection key");
    assert_eq!(listener_index(WAKER, 3), None);
    assert_eq!(listener_index(SIGNALS, 3), None);
    let limit = first_reserved(3);
    assert!(tokens.iter().all(|t| t.0 >= limit));
    assert_eq!(listener_index(mio::Token(limit - 1), 3), None);
}
