//! `checker explore` serves stateright's web explorer on 127.0.0.1: its status endpoint and a
//! state answer over HTTP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path`, returning (status line, body), or `None` if nothing listens yet.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[test]
fn explorer_serves_status_and_states() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_checker"))
        .args([
            "explore",
            "--port",
            &port.to_string(),
            "--servers",
            "2",
            "--clerks",
            "1",
            "--max-term",
            "1",
            "--max-log",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the checker");
    let _server = Server(child);

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(reply) = get(port, "/.status") {
            break reply;
        }
        assert!(Instant::now() < deadline, "the explorer did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.0.contains("200"), "{status:?}");
    assert!(status.1.contains("\"properties\""), "{}", status.1);
    assert!(status.1.contains("linearizable"), "{}", status.1);

    let (line, body) = get(port, "/.states").expect("initial states");
    assert!(line.contains("200"), "{line}");
    assert!(body.contains("fingerprint"), "{body}");
    let (line, body) = get(port, "/.states/0").expect("successors of the initial state");
    assert!(line.contains("200"), "{line}");
    assert!(body.contains("election timeout"), "the actions are described in words: {body}");
}
