//! Reloading and stopping: what the core hears, what is flushed, and for
//! how long.

use super::*;

#[test]
fn shutdown_tells_the_core_about_every_live_connection() {
    let server = start(&tcp_config(), Script::default());
    let mut first = server.client();
    let mut second = server.client();
    first.write_all(&connect_bytes("a")).unwrap();
    assert_eq!(read_n(&mut first, 4), CONNACK_ACCEPTED);
    server.wait_for("open", 2);
    let log = server.stop();
    assert_eq!(log.iter().filter(|l| *l == "closed Shutdown").count(), 2);
    assert_closed(&mut first);
    assert_closed(&mut second);
}

#[test]
fn shutdown_before_run_returns_at_once() {
    let server = Server::bind(&tcp_config()).unwrap();
    server.handle().shutdown();
    server
        .run_with(Script::default(), Limits::new(1000))
        .unwrap();
}

#[test]
fn reload_on_the_handle_reaches_the_core_and_the_loop_goes_on() {
    let server = start(&tcp_config(), Script::default());
    server.handle.reload();
    server.wait_for("reload", 1);
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    server.handle.reload();
    server.wait_for("reload", 2);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    server.stop();
}

#[test]
fn shutdown_tells_the_core_first_and_flushes_what_it_sends() {
    let script = Script {
        farewell: 300_000,
        note_housekeeping: true,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    // More than a socket buffer takes at once: the loop must keep writing
    // while the client reads.
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        client.read_to_end(&mut all).unwrap();
        all
    });
    let log = server.stop();
    let shutdown = log.iter().position(|l| l == "shutdown").unwrap();
    let closed = log.iter().position(|l| l == "closed Shutdown").unwrap();
    assert!(shutdown < closed, "{log:?}");
    let all = reader.join().unwrap();
    // The PUBLISH: header (4 bytes of remaining length), topic, payload.
    assert_eq!(all.len(), 1 + 3 + 2 + 3 + 300_000);
    assert!(all.ends_with(b"xxxx"));
}

#[test]
fn shutdown_gives_up_on_a_client_that_does_not_read() {
    let script = Script {
        farewell: 50_000_000,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&connect_bytes("c")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    assert!(took >= crate::net::stop::SHUTDOWN_FLUSH, "{took:?}");
    assert!(
        took < crate::net::stop::SHUTDOWN_FLUSH + Duration::from_secs(2),
        "{took:?}"
    );
}
