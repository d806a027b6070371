//! An HTTP proxy that answers `503 SlowDown` to every request whose
//! request line names a given text (one widget's object key) and forwards
//! the rest, counting those that write: S3 throttles per prefix, so one hot key is throttled while the
//! bucket serves every other. Or, [`SlowDown::first`], to the first few
//! requests whose head (request line and headers: an SQS call's
//! `X-Amz-Target`) names it. Each request is forwarded on a connection of
//! its own, so that one client connection can carry both kinds.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct SlowDown {
    pub url: String,
    /// Requests answered with SlowDown.
    pub refused: Arc<AtomicU64>,
    /// Requests forwarded that write: PUT, POST, DELETE.
    pub writes: Arc<AtomicU64>,
}

impl SlowDown {
    /// Forwards a loopback port to `upstream` (`http://127.0.0.1:PORT`),
    /// refusing requests whose request line contains `hot`.
    pub fn start(upstream: &str, hot: &str) -> SlowDown {
        SlowDown::with(
            upstream,
            Rule {
                hot: hot.to_owned(),
                in_head: false,
                times: u64::MAX,
                delay: Duration::ZERO,
                hold: false,
            },
        )
    }

    /// Forwards a loopback port to `upstream`, holding every request whose
    /// request line contains `hot` unanswered until its client goes away
    /// (counted in `refused`): a call that is under way for as long as the
    /// test likes.
    pub fn holding(upstream: &str, hot: &str) -> SlowDown {
        SlowDown::with(
            upstream,
            Rule {
                hot: hot.to_owned(),
                in_head: false,
                times: u64::MAX,
                delay: Duration::ZERO,
                hold: true,
            },
        )
    }

    /// Forwards a loopback port to `upstream`, every request `delay` later,
    /// as a server in an AWS region answers a host outside it.
    pub fn delaying(upstream: &str, delay: Duration) -> SlowDown {
        SlowDown::with(
            upstream,
            Rule {
                hot: String::new(),
                in_head: false,
                times: 0,
                delay,
                hold: false,
            },
        )
    }

    /// Forwards a loopback port to `upstream`, refusing the first `times`
    /// requests whose head contains `hot`.
    pub fn first(upstream: &str, hot: &str, times: u64) -> SlowDown {
        SlowDown::with(
            upstream,
            Rule {
                hot: hot.to_owned(),
                in_head: true,
                times,
                delay: Duration::ZERO,
                hold: false,
            },
        )
    }

    fn with(upstream: &str, rule: Rule) -> SlowDown {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (refused, writes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (rule, counts) = (Arc::new(rule), (refused.clone(), writes.clone()));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, rule, counts) = (upstream.clone(), rule.clone(), counts.clone());
                std::thread::spawn(move || serve(client, &upstream, &rule, &counts.0, &counts.1));
            }
        });
        SlowDown { url, refused, writes }
    }
}

/// Which requests are refused.
struct Rule {
    hot: String,
    /// Look for `hot` in the headers too, not only the request line.
    in_head: bool,
    /// Refuse this many at most, then forward them all.
    times: u64,
    /// Forward each request this much later.
    delay: Duration,
    /// Hold the requests named, unanswered, instead of refusing them.
    hold: bool,
}

/// One HTTP message: its head (up to the blank line) and its body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Reads one message; `None` at the end of the stream. `no_body`: the
/// answer to a HEAD request, which has a length but no body.
fn read_message(reader: &mut impl BufRead, no_body: bool) -> Option<Message> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
    };
    let status_without_body = text.starts_with("http/1.1 204") || text.starts_with("http/1.1 304");
    let mut body = Vec::new();
    if no_body || status_without_body {
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line).ok()?;
            body.extend_from_slice(&size_line);
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&size_line).trim().split(';').next()?, 16)
                    .ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Message { head, body })
}

fn serve(client: TcpStream, upstream: &str, rule: &Rule, refused: &AtomicU64, writes: &AtomicU64) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    while let Some(request) = read_message(&mut reader, false) {
        let line = String::from_utf8_lossy(&request.head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let head = String::from_utf8_lossy(&request.head).to_ascii_lowercase();
        let named = match rule.in_head {
            true => head.contains(&rule.hot.to_ascii_lowercase()),
            false => line.contains(&rule.hot),
        };
        let refuse = named
            && refused
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < rule.times).then_some(n + 1)
                })
                .is_ok();
        if refuse && rule.hold {
            // Until the client closes its end (it was killed, say).
            let _ = std::io::Read::read(&mut reader, &mut [0u8; 1]);
            return;
        }
        let answer = if refuse {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let mut answer = format!(
                "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nx-amz-request-id: SLOWDOWN\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(body.as_bytes());
            answer
        } else {
            if ["PUT ", "POST ", "DELETE "]
                .iter()
                .any(|method| line.starts_with(method))
            {
                writes.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(rule.delay);
            let Ok(mut server) = TcpStream::connect(upstream) else {
                return;
            };
            if server
                .write_all(&request.head)
                .and_then(|()| server.write_all(&request.body))
                .is_err()
            {
                return;
            }
            let mut from_server = BufReader::new(server);
            let Some(response) = read_message(&mut from_server, line.starts_with("HEAD ")) else {
                return;
            };
            [response.head, response.body].concat()
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}
