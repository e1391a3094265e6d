//! The endpoint's life: where it listens, across reloads. A new address is bound before a
//! reload is applied (so one that cannot be bound fails the reload and changes nothing), and
//! a move to the same port on another address (`127.0.0.1:9464` to `0.0.0.0:9464`) closes the
//! old listener first, falling back to it if the new bind fails.

use crate::{CounterFamily, Error, Exporter};
use drover_supervisor::{Processes, Supervisor};
use std::sync::{Arc, Mutex};

/// A move of the metrics endpoint, prepared by [`Endpoint::prepare`].
pub enum EndpointMove {
    /// Where it is.
    Stay,
    /// Closed.
    Close,
    /// To this listener, already bound.
    To(std::net::TcpListener),
    /// To this address on the port the endpoint holds now (`127.0.0.1:9464` to
    /// `0.0.0.0:9464`): it can only be bound once the current listener is closed.
    Rebind(std::net::SocketAddr),
}

/// The metrics endpoint: its exporter (made at the first bind) and its tasks, and the address
/// it follows across reloads.
pub struct Endpoint {
    supervisor: Supervisor,
    processes: Processes,
    exporter: Option<Arc<Exporter>>,
    /// The server and the probe-counting task.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// `settings.metrics.listen` as last applied.
    address: Option<std::net::SocketAddr>,
    /// Where the endpoint listens now.
    bound: Option<std::net::SocketAddr>,
    /// `bound`, for readers elsewhere ([`Endpoint::bound_address`]).
    shared: Arc<Mutex<Option<std::net::SocketAddr>>>,
    pinned: bool,
    /// Counters kept elsewhere, exported too.
    families: Vec<CounterFamily>,
}

impl Endpoint {
    /// An endpoint not yet serving, for `address` (`settings.metrics.listen`); `pinned` when
    /// `--metrics-listen` fixed it, and reloads then never move it.
    pub fn new(
        supervisor: Supervisor,
        processes: Processes,
        address: Option<std::net::SocketAddr>,
        pinned: bool,
    ) -> Endpoint {
        Endpoint {
            supervisor,
            processes,
            exporter: None,
            tasks: Vec::new(),
            address,
            bound: None,
            shared: Arc::default(),
            pinned,
            families: Vec::new(),
        }
    }

    /// Where the endpoint listens, whenever asked (it moves with reloads): for `drover status`.
    pub fn bound_address(
        &self,
    ) -> impl Fn() -> Option<std::net::SocketAddr> + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.lock().ok().and_then(|bound| *bound)
    }

    fn set_bound(&mut self, address: Option<std::net::SocketAddr>) {
        self.bound = address;
        if let Ok(mut shared) = self.shared.lock() {
            *shared = address;
        }
    }

    /// Exports `family` too (call it before the first [`Endpoint::serve`]).
    pub fn export(&mut self, family: CounterFamily) {
        self.families.push(family);
    }

    /// Serves on `listener` from now on (closing the previous listener, if any).
    pub fn serve(&mut self, listener: std::net::TcpListener) -> Result<(), Error> {
        let exporter = match &self.exporter {
            Some(exporter) => exporter.clone(),
            None => {
                let exporter = Exporter::with_families(
                    self.supervisor.clone(),
                    self.processes.clone(),
                    self.families.clone(),
                )?;
                self.tasks.push(exporter.record_probes());
                self.exporter.insert(exporter).clone()
            }
        };
        listener.set_nonblocking(true).map_err(Error::Listener)?;
        let address = listener.local_addr().map_err(Error::Listener)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(Error::Listener)?;
        self.close();
        self.set_bound(Some(address));
        tracing::info!(%address, "metrics on http://{address}/metrics");
        self.tasks
            .push(tokio::spawn(crate::serve(listener, exporter)));
        Ok(())
    }

    /// Stops serving (the probe counts go on); the listener closes when its task next runs.
    fn close(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.set_bound(None);
        // The first task, when there is an exporter, counts probes; the others serve.
        let keep = usize::from(self.exporter.is_some());
        let servers: Vec<_> = self.tasks.drain(keep..).collect();
        for task in &servers {
            task.abort();
        }
        servers
    }

    /// What moving the endpoint to `settings.metrics.listen` of a new manifest takes, unless
    /// `--metrics-listen` pinned it: the new address is bound now, so that one that cannot be
    /// is an error before anything changes; [`Endpoint::commit`] then moves.
    pub fn prepare(&self, wanted: Option<std::net::SocketAddr>) -> Result<EndpointMove, Error> {
        if self.pinned || wanted == self.address {
            return Ok(EndpointMove::Stay);
        }
        match wanted {
            None => Ok(EndpointMove::Close),
            Some(address) => match std::net::TcpListener::bind(address) {
                Ok(listener) => Ok(EndpointMove::To(listener)),
                Err(err)
                    if err.kind() == std::io::ErrorKind::AddrInUse
                        && self.bound.is_some_and(|b| b.port() == address.port()) =>
                {
                    Ok(EndpointMove::Rebind(address))
                }
                Err(source) => Err(Error::Listen { address, source }),
            },
        }
    }

    /// Moves the endpoint as prepared; `wanted` is the address it now follows.
    pub async fn commit(&mut self, change: EndpointMove, wanted: Option<std::net::SocketAddr>) {
        match change {
            EndpointMove::Stay => return,
            EndpointMove::Close => {
                self.close();
                tracing::info!("metrics endpoint closed (settings.metrics.listen)");
            }
            EndpointMove::To(listener) => {
                if let Err(err) = self.serve(listener) {
                    tracing::error!("{err}");
                }
            }
            EndpointMove::Rebind(address) => self.rebind(address).await,
        }
        self.address = wanted;
    }

    /// Closes the listener, then binds `address` on the same port; back to the old address if
    /// that fails.
    async fn rebind(&mut self, address: std::net::SocketAddr) {
        let old = self.bound;
        for server in self.close() {
            // Cancelled: its future, and the listener with it, is dropped once this returns.
            let _ = server.await;
        }
        let bound = std::net::TcpListener::bind(address)
            .map_err(|source| Error::Listen { address, source })
            .and_then(|listener| self.serve(listener));
        if let Err(err) = bound {
            tracing::error!("{err}");
            if let Some(old) = old {
                let back = std::net::TcpListener::bind(old)
                    .map_err(|source| Error::Listen {
                        address: old,
                        source,
                    })
                    .and_then(|listener| self.serve(listener));
                if let Err(err) = back {
                    tracing::error!("{err}; the metrics endpoint is closed");
                }
            }
        }
    }

    /// Counts a reload in `drover_manifest_reloads_total`.
    pub fn reload_recorded(&self, success: bool) {
        if let Some(exporter) = &self.exporter {
            exporter.reload_recorded(success);
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}
