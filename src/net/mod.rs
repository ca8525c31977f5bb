//! The event loop: listeners, connections, the clock. The only module that
//! touches `mio`.
//!
//! (Being written; the API below is the contract `main` and the tests use.)

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;

/// A bound broker, ready to run.
pub struct Server {}

/// Stops a running [`Server`] from another thread. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {}

impl ServerHandle {
    /// Asks the loop to stop; [`Server::run`] then returns `Ok(())`.
    pub fn shutdown(&self) {
        todo!()
    }
}

impl Server {
    /// Binds every listener the config asks for (TCP and/or Unix socket).
    pub fn bind(_config: &Config) -> io::Result<Server> {
        todo!()
    }
    /// The TCP listener's address (with the real port when `ip_port` was 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        todo!()
    }
    /// The Unix socket listener's path.
    pub fn unix_path(&self) -> Option<&Path> {
        todo!()
    }
    /// A handle that can stop the loop from another thread.
    pub fn handle(&self) -> ServerHandle {
        todo!()
    }
    /// Runs the event loop until shutdown.
    pub fn run(self) -> io::Result<()> {
        todo!()
    }
}
