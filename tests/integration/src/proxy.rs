//! A loopback TCP proxy that misbehaves on demand, between agents and the hub: it passes
//! bytes, stalls them (a network that drops every packet but keeps the connection), refuses
//! new connections, or cuts every open one. It sees only TLS records, so mutual TLS is
//! untouched.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Holds every byte in both directions; connections stay open.
    Stall,
    /// Closes new connections at once; open ones stall.
    Refuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Control {
    mode: Mode,
    /// Bumped by [`FaultProxy::cut`]: connections opened before it are closed.
    cuts: u64,
}

/// The proxy; it runs until dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    control: Arc<watch::Sender<Control>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` and forwards to `upstream`. Synchronous, so that it can start
    /// where only the hub's address is known (inside a runtime: it spawns its task there).
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let (control, _) = watch::channel(Control {
            mode: Mode::Pass,
            cuts: 0,
        });
        let control = Arc::new(control);
        let ctl = control.clone();
        let task = tokio::spawn(
            async move {
                loop {
                    let Ok((client, peer)) = listener.accept().await else {
                        continue;
                    };
                    let now = *ctl.borrow();
                    if now.mode == Mode::Refuse {
                        debug!(%peer, "refused");
                        drop(client);
                        continue;
                    }
                    let rx = ctl.subscribe();
                    tokio::spawn(
                        connection(client, upstream, rx, now.cuts)
                            .instrument(info_span!("proxied", %peer)),
                    );
                }
            }
            .instrument(info_span!("fault_proxy", %addr, %upstream)),
        );
        Ok(FaultProxy {
            addr,
            control,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        self.control.send_modify(|c| c.mode = mode);
    }

    /// Closes every open connection (a reset middlebox, a NAT timeout).
    pub fn cut(&self) {
        self.control.send_modify(|c| c.cuts += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    born: u64,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (or a cut) ends both: dropping the halves closes the sockets.
    tokio::select! {
        _ = pump(cr, sw, control.clone(), born) => {}
        _ = pump(sr, cw, control, born) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Wait while stalled; leave on a cut.
        loop {
            let c = *control.borrow_and_update();
            if c.cuts != born {
                return;
            }
            if c.mode == Mode::Pass {
                break;
            }
            if control.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Bytes read before a stall are still delivered: a stall holds what
                    // comes after it, as a network holds its queue.
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = control.changed() => if changed.is_err() { return },
        }
    }
}
