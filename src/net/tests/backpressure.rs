//! Read budgets, the input pause when output backs up, `Core::drained`,
//! and the traffic counts.

use super::*;

#[test]
fn a_burst_larger_than_the_read_budget_is_served_in_full() {
    let server = start(&tcp_config(), Script::default());
    let mut client = server.client();
    client.write_all(&connect_bytes("burst")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    let messages: Vec<Vec<u8>> = (0..12u8)
        .map(|i| publish_bytes(&vec![i; 100_000]))
        .collect();
    let expected = messages.concat();
    let mut writer = client.try_clone().unwrap();
    let sent = expected.clone();
    let writing = thread::spawn(move || writer.write_all(&sent).unwrap());
    let echoed = read_n(&mut client, expected.len());
    writing.join().unwrap();
    assert!(echoed == expected, "echo differs from what was sent");
    server.stop();
}

#[test]
fn input_left_in_the_socket_when_the_budget_runs_out_is_read_next_turn() {
    // With a budget of 64 bytes the first turn cannot read all of this, and
    // no new event will come for the rest: only the ready list brings the
    // loop back to it.
    let limits = Limits {
        read_budget: 64,
        ..Limits::new(1000)
    };
    let server = start_limited(&tcp_config(), Script::default(), limits);
    let mut client = server.client();
    let mut burst = connect_bytes("budget");
    for _ in 0..100 {
        burst.extend_from_slice(&PINGREQ);
    }
    client.write_all(&burst).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    assert_eq!(read_n(&mut client, 200), PINGRESP.repeat(100));
    server.stop();
}

#[test]
fn a_small_high_water_mark_pauses_and_resumes_input() {
    // Each PINGRESP is 2 bytes: with the mark at 2, input pauses after every
    // packet until the flush at the end of the turn, and must resume.
    let limits = Limits {
        pause_input_at: 2,
        ..Limits::new(1000)
    };
    let server = start_limited(&tcp_config(), Script::default(), limits);
    let mut client = server.client();
    let mut burst = connect_bytes("mark");
    for _ in 0..50 {
        burst.extend_from_slice(&PINGREQ);
    }
    client.write_all(&burst).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    assert_eq!(read_n(&mut client, 100), PINGRESP.repeat(50));
    server.stop();
}

#[test]
fn input_pauses_while_output_is_above_the_high_water_mark() {
    // A Unix socket: its kernel buffers are small and fixed, where TCP on
    // loopback would soak up megabytes before the broker's buffer grew.
    let path = unix_path("throttle");
    let server = start(&unix_config(&path), Script::default());
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&connect_bytes("slow-reader")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);

    const COUNT: usize = 200;
    let message = publish_bytes(&[7u8; 64 * 1024]);
    let mut writer = client.try_clone().unwrap();
    let sent = message.clone();
    let writing = thread::spawn(move || {
        for _ in 0..COUNT {
            writer.write_all(&sent).unwrap();
        }
    });

    // Let the broker take what it will while the client reads nothing.
    server.wait_for("PUBLISH", 1);
    let published = || server.log().iter().filter(|l| *l == "PUBLISH").count();
    let mut last = usize::MAX;
    while published() != last {
        last = published();
        thread::sleep(Duration::from_millis(300));
    }
    assert!(last > 0, "nothing was processed");
    assert!(
        last < COUNT / 2,
        "{last} of {COUNT} processed without reading"
    );

    // Reading drains the output, which lifts the pause, until all is echoed.
    for _ in 0..COUNT {
        assert!(read_n(&mut client, message.len()) == message);
    }
    writing.join().unwrap();
    server.wait_for("PUBLISH", COUNT);
    server.stop();
}

#[test]
fn bytes_read_and_written_are_counted_for_the_core() {
    let script = Script {
        note_housekeeping: true,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    let connect = connect_bytes("c");
    client.write_all(&connect).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    // At the PINGREQ: CONNECT and PINGREQ read, the CONNACK written,
    // nothing left buffered.
    let expected = format!("traffic {} 4 0", connect.len() + 2);
    server.wait_for(&expected, 1);
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    server.wait_for(&format!("traffic {} 6 0", connect.len() + 4), 1);
    server.stop();
}

#[test]
fn the_core_hears_of_a_drained_output_and_what_it_sends_then_flows_in_order() {
    // 12 x 300 KB: the core stops at the 1 MiB mark after 4, and sends
    // the rest from `drained` as the client reads.
    let script = Script {
        stream_count: 12,
        stream_size: 300_000,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&connect_bytes("stream")).unwrap();
    assert_eq!(read_n(&mut client, 4), CONNACK_ACCEPTED);
    for n in 0..12u8 {
        let expected = publish_bytes(&vec![n; 300_000]);
        let got = read_n(&mut client, expected.len());
        assert!(got == expected, "PUBLISH {n} differs");
    }
    client.write_all(&PINGREQ).unwrap();
    assert_eq!(read_n(&mut client, 2), PINGRESP);
    let log = server.stop();
    let drained: Vec<&String> = log.iter().filter(|l| l.starts_with("drained")).collect();
    assert!(!drained.is_empty(), "{log:?}");
    assert!(
        drained.iter().all(|l| l.as_str() != "drained after 12"),
        "no call once nothing was asked: {log:?}"
    );
}

#[test]
fn a_client_that_reads_nothing_brings_no_drained_call() {
    let script = Script {
        stream_count: 40,
        stream_size: 300_000,
        ..Script::default()
    };
    let server = start(&tcp_config(), script);
    let mut client = server.client();
    client.write_all(&connect_bytes("stuck")).unwrap();
    thread::sleep(Duration::from_millis(300));
    let log = server.stop();
    let drained = log.iter().filter(|l| l.starts_with("drained")).count();
    // The kernel takes a few MB before the socket is full; after that,
    // nothing drains, and the core is not asked for more.
    assert!(drained < 20, "{drained} calls: {log:?}");
    drop(client);
}
