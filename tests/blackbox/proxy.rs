//! A TCP proxy the tests can take down and bring back, to show the host a
//! server that goes away mid-run and returns with its state intact, or
//! stall, to show it a server that accepts connections and never answers.

use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    pub url: String,
    upstream: String,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// Connections accepted while stalled, not yet answered.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a loopback port to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (up2, stalled2, open2, held2) = (up.clone(), stalled.clone(), open.clone(), held.clone());
        let upstream2 = upstream.clone();
        std::thread::spawn(move || {
            let upstream = upstream2;
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    // Down: the connection is closed at once.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if stalled2.load(Ordering::SeqCst) {
                    // Stalled: the connection is kept open, unanswered.
                    held2.lock().unwrap().push(client);
                    continue;
                }
                forward(client, &upstream, &open2);
            }
        });
        Proxy {
            url,
            upstream,
            up,
            stalled,
            open,
            held,
        }
    }

    /// How many connections wait, unanswered, on the stalled proxy.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Ends a stall: the connections held are forwarded, what they sent
    /// first included, and new ones are again.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        for client in self.held.lock().unwrap().drain(..) {
            forward(client, &self.upstream, &self.open);
        }
    }

    /// Cuts the open connections; new ones are accepted and never answered.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Connects `client` to `upstream`, both ways.
fn forward(client: TcpStream, upstream: &str, open: &Mutex<Vec<TcpStream>>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let mut tracked = open.lock().unwrap();
    tracked.push(client.try_clone().unwrap());
    tracked.push(server.try_clone().unwrap());
    drop(tracked);
    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
    pipe(server, client);
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
