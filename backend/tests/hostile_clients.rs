//! Hostile clients against a real `tributary serve` over raw TCP: 100 MiB bodies (announced and
//! chunked), slowloris bodies and headers, deeply nested JSON, invalid UTF-8, huge headers. Each gets a
//! clear `4xx`, the server's peak memory (`VmHWM`) stays bounded, and other clients are served
//! meanwhile. Each test prints one `hostile:` line with its counts (docs/RELIABILITY.md).

mod common;

use std::time::Duration;

use common::{Server, WRITE_KEY, batch, config_with, post, sample_rules};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above serve's own footprint, far below what buffering any hostile body would take.
const PEAK_MEMORY_BOUND_KIB: u64 = 128 * 1024;

/// A server whose request heads and bodies must each arrive within 3 s (long enough for the
/// other clients of a test to be served first, even on a loaded machine).
fn server() -> Server {
    let config = config_with("").replace(
        "write_keys = [\"test-key\"]",
        "write_keys = [\"test-key\"]\nbody_timeout = \"3s\"\nheader_timeout = \"3s\"",
    );
    Server::start(&config, &sample_rules())
}

/// A response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: String,
}

impl RawResponse {
    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Reads one response (head, then `Content-Length` bytes of body); `None` when the connection
/// closes or fails first.
async fn read_response(reader: &mut (impl AsyncReadExt + Unpin)) -> Option<RawResponse> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = reader.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while received.len() < head_end + length {
        let read = reader.read(&mut buffer).await.ok()?;
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    let body = String::from_utf8_lossy(&received[head_end..]).to_string();
    Some(RawResponse { status, body })
}

fn request_head(path: &str, extra_headers: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {WRITE_KEY}\r\nContent-Type: application/json\r\n{extra_headers}\r\n"
    )
}

/// Sends `head` then up to `total` bytes of `a` in 64 KiB writes until the server answers;
/// returns the answer and how many body bytes went out.
async fn flood(
    address: String,
    head: String,
    total: usize,
    chunked: bool,
) -> (Option<RawResponse>, usize) {
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let answer = tokio::spawn(async move { read_response(&mut reader).await });
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    if writer.write_all(head.as_bytes()).await.is_ok() {
        while sent < total && !answer.is_finished() {
            let written = if chunked {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                writer.write_all(&framed).await
            } else {
                writer.write_all(&chunk).await
            };
            if written.is_err() {
                break;
            }
            sent += chunk.len();
        }
    }
    let response = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    (response, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_of_100_mib_get_413_and_memory_stays_bounded() {
    let server = server();
    let before = server.peak_memory_kib();
    const HUNDRED_MIB: usize = 100 * 1024 * 1024;
    let mut floods = Vec::new();
    for index in 0..4 {
        let chunked = index % 2 == 1;
        let extra = if chunked {
            "Transfer-Encoding: chunked\r\n".to_owned()
        } else {
            format!("Content-Length: {HUNDRED_MIB}\r\n")
        };
        floods.push(tokio::spawn(flood(
            server.address.clone(),
            request_head("/v1/batch", &extra),
            HUNDRED_MIB,
            chunked,
        )));
    }
    // Other clients are served while the floods run.
    let mut served = 0;
    for round in 0..20 {
        let events = [json!({"id": format!("beside-flood-{round}"), "name": "login", "data": {}})];
        let response = post(&server.url("/v1/batch"), batch(&events)).await;
        assert_eq!(response.status(), 200);
        served += 1;
    }
    let mut answered_413 = 0;
    let mut most_sent = 0;
    for flood in floods {
        let (response, sent) = flood.await.unwrap();
        most_sent = most_sent.max(sent);
        let response = response.expect("an answer before the connection closed");
        assert_eq!(response.status, 413, "{response:?}");
        assert_eq!(response.code(), "payload_too_large", "{response:?}");
        answered_413 += 1;
    }
    let after = server.peak_memory_kib();
    println!(
        "hostile: 4 bodies of 100 MiB (2 announced, 2 chunked): {answered_413} answered 413 after at most {} KiB sent; {served} other requests served meanwhile; serve VmHWM {before} KiB before, {after} KiB after",
        most_sent / 1024
    );
    assert!(
        most_sent < HUNDRED_MIB,
        "the server stopped reading long before 100 MiB"
    );
    assert!(
        after < PEAK_MEMORY_BOUND_KIB,
        "peak memory {after} KiB over {PEAK_MEMORY_BOUND_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_bodies_get_408_while_others_are_served() {
    let server = server();
    const SLOW_CLIENTS: usize = 50;
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        let address = server.address.clone();
        slow.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&address).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            let answer = tokio::spawn(async move { read_response(&mut reader).await });
            let head = request_head("/v1/batch", "Content-Length: 100000\r\n");
            writer.write_all(head.as_bytes()).await.unwrap();
            // One byte every 100 ms: 100,000 bytes would take almost three hours.
            let mut trickled = 0;
            while !answer.is_finished() && trickled < 600 {
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
                trickled += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // No answer soon after a minute of trickling: none (the test fails, not hangs).
            tokio::time::timeout(Duration::from_secs(5), answer)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut served = 0;
    for round in 0..20 {
        let events = [json!({"id": format!("beside-slow-{round}"), "name": "login", "data": {}})];
        let response = post(&server.url("/v1/batch"), batch(&events)).await;
        assert_eq!(response.status(), 200);
        served += 1;
    }
    let still_waiting = slow.iter().filter(|client| !client.is_finished()).count();
    let mut answered_408 = 0;
    for client in slow {
        let response = client.await.unwrap().expect("an answer");
        assert_eq!(response.status, 408, "{response:?}");
        assert_eq!(response.code(), "body_timeout", "{response:?}");
        answered_408 += 1;
    }
    let peak = server.peak_memory_kib();
    println!(
        "hostile: {SLOW_CLIENTS} slowloris bodies (1 byte / 100 ms): {answered_408} answered 408 after body_timeout = 3s; {served} other requests served while {still_waiting} were still trickling; serve VmHWM {peak} KiB"
    );
    assert_eq!(
        still_waiting, SLOW_CLIENTS,
        "the others were served while every slow client still held its connection"
    );
    assert!(peak < PEAK_MEMORY_BOUND_KIB, "{peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_headers_are_disconnected_while_others_are_served() {
    let server = server();
    const SLOW_CLIENTS: usize = 50;
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        let address = server.address.clone();
        slow.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&address).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            let closed = tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                // The server says nothing and closes (0 bytes or a reset).
                matches!(reader.read(&mut buffer).await, Ok(0) | Err(_))
            });
            writer
                .write_all(b"POST /v1/batch HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .unwrap();
            // A new header line every 100 ms, never the blank line that ends the head: a
            // minute of this without a timeout.
            let mut lines = 0;
            while !closed.is_finished() && lines < 600 {
                if writer
                    .write_all(format!("X-Slow-{lines}: a\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                lines += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Still open after a minute of header lines: not closed (the test fails, not hangs).
            let closed = tokio::time::timeout(Duration::from_secs(5), closed)
                .await
                .is_ok_and(|closed| closed.unwrap());
            (closed, lines)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut served = 0;
    for round in 0..20 {
        let events =
            [json!({"id": format!("beside-slow-head-{round}"), "name": "login", "data": {}})];
        let response = post(&server.url("/v1/batch"), batch(&events)).await;
        assert_eq!(response.status(), 200);
        served += 1;
    }
    let still_waiting = slow.iter().filter(|client| !client.is_finished()).count();
    let mut disconnected = 0;
    let mut most_lines = 0;
    for client in slow {
        let (closed, lines) = client.await.unwrap();
        assert!(closed, "the server closed the connection");
        assert!(
            lines < 600,
            "disconnected long before a minute of header lines"
        );
        most_lines = most_lines.max(lines);
        disconnected += 1;
    }
    let peak = server.peak_memory_kib();
    println!(
        "hostile: {SLOW_CLIENTS} slowloris heads (a header line / 100 ms): {disconnected} disconnected after header_timeout = 3s (at most {most_lines} lines sent); {served} other requests served while {still_waiting} were still trickling; serve VmHWM {peak} KiB"
    );
    assert_eq!(still_waiting, SLOW_CLIENTS);
    assert!(peak < PEAK_MEMORY_BOUND_KIB, "{peak} KiB");
}

/// Sends `body` as is on a fresh connection. A write may fail once the server has answered and
/// closed (it refuses a huge head before reading all of it): the answer is read all the same.
async fn send_raw(address: &str, head: &str, body: &[u8]) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    if stream.write_all(head.as_bytes()).await.is_ok() {
        let _ = stream.write_all(body).await;
    }
    tokio::time::timeout(Duration::from_secs(30), read_response(&mut stream))
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_invalid_utf8_and_huge_headers_are_clear_4xx() {
    let server = server();
    let mut outcomes = Vec::new();
    let mut expect = |label: &str, response: Option<RawResponse>, status: u16, code: &str| {
        let response = response.unwrap_or_else(|| panic!("{label}: no answer"));
        assert_eq!(response.status, status, "{label}: {response:?}");
        if !code.is_empty() {
            assert_eq!(response.code(), code, "{label}: {response:?}");
        }
        outcomes.push(format!("{label} {status}"));
        response
    };

    // Nesting beside a valid event: 100 levels is an ordinary event; 10,000 levels (20 KB,
    // under the 32 KiB event limit) passes serde_json's recursion limit of 128; 100,000 levels
    // is over 32 KiB. The deep ones are rejected by index; their neighbour is accepted.
    let nested = |depth: usize| {
        format!(
            r#"{{"id": "nested-{depth}", "name": "login", "data": {{"x": {}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let deep = format!(
        r#"{{"batch": [{}, {}, {}]}}"#,
        nested(100),
        nested(10_000),
        nested(100_000)
    );
    let head = |length: usize| request_head("/v1/batch", &format!("Content-Length: {length}\r\n"));
    let response = expect(
        "nesting of 100, 10,000 and 100,000 levels",
        send_raw(&server.address, &head(deep.len()), deep.as_bytes()).await,
        200,
        "",
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["accepted"], 1, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{body}");
    assert_eq!(rejected[0]["index"], 1, "{body}");
    assert!(
        rejected[0]["error"].as_str().unwrap().contains("recursion"),
        "the message says why: {body}"
    );
    assert_eq!(rejected[1]["index"], 2, "{body}");
    assert!(
        rejected[1]["error"]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{body}"
    );

    // Invalid UTF-8 inside a string: the body is not JSON; the answer says where.
    let mut invalid = br#"{"batch": [{"name": "login", "data": {"s": ""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid.extend_from_slice(br#""}}]}"#);
    let response = expect(
        "invalid UTF-8",
        send_raw(&server.address, &head(invalid.len()), &invalid).await,
        400,
        "invalid_json",
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"]["line"], 1, "{body}");
    assert!(body["error"]["column"].as_u64().unwrap() > 40, "{body}");
    // The same bytes as a text/plain beacon.
    let beacon_head = head(invalid.len()).replace("application/json", "text/plain");
    expect(
        "invalid UTF-8 beacon",
        send_raw(&server.address, &beacon_head, &invalid).await,
        400,
        "invalid_json",
    );

    // One header of 1 MiB, and 10,000 small headers: refused before any handler runs.
    let big = format!(
        "X-Big: {}\r\nContent-Length: 2\r\n",
        "b".repeat(1024 * 1024)
    );
    expect(
        "1 MiB header",
        send_raw(&server.address, &request_head("/v1/batch", &big), b"{}").await,
        431,
        "",
    );
    let many: String = (0..10_000).map(|n| format!("X-H{n}: v\r\n")).collect();
    expect(
        "10,000 headers",
        send_raw(
            &server.address,
            &request_head("/v1/batch", &format!("{many}Content-Length: 2\r\n")),
            b"{}",
        )
        .await,
        431,
        "",
    );

    // The server is unharmed: the next ordinary request is accepted.
    let events = [json!({"id": "after-hostile", "name": "login", "data": {}})];
    assert_eq!(
        post(&server.url("/v1/batch"), batch(&events))
            .await
            .status(),
        200
    );
    let peak = server.peak_memory_kib();
    println!(
        "hostile: {}; then an ordinary batch 200; serve VmHWM {peak} KiB",
        outcomes.join(", ")
    );
    assert!(peak < PEAK_MEMORY_BOUND_KIB, "{peak} KiB");
}

/// One request on an open connection, answered.
async fn exchange_on(stream: &mut TcpStream, id: &str) -> Option<RawResponse> {
    let body = batch(&[json!({"id": id, "name": "page_view"})]);
    let head = request_head("/v1/batch", &format!("Content-Length: {}\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body.as_bytes()).await.ok()?;
    read_response(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_until_one_ends() {
    let config = config_with("").replace(
        "write_keys = [\"test-key\"]",
        "write_keys = [\"test-key\"]\nmax_connections = 2",
    );
    let server = Server::start(&config, &sample_rules());
    let mut first = TcpStream::connect(&server.address).await.unwrap();
    let mut second = TcpStream::connect(&server.address).await.unwrap();
    for (stream, id) in [(&mut first, "cap-1"), (&mut second, "cap-2")] {
        let answer = exchange_on(stream, id).await.expect("served under the cap");
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    // Both connections stay open: a third is left in the listen queue, its request unanswered.
    let mut third = TcpStream::connect(&server.address).await.unwrap();
    let waiting = tokio::spawn(async move {
        let answer = exchange_on(&mut third, "cap-3").await;
        (answer, third)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two were open with max_connections = 2"
    );

    // One ends: the third is accepted and served.
    drop(first);
    let (answer, _third) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the third connection was not served after one ended")
        .unwrap();
    let answer = answer.expect("an answer on the third connection");
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The second is still served too.
    let answer = exchange_on(&mut second, "cap-4").await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    println!(
        "hostile: max_connections = 2: third connection waited while 2 were open, served after one closed; 4 requests answered 200"
    );
}
