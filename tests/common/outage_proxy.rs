//! A TCP forwarder in front of a real store's server that can be taken down and brought
//! back on the same port: a store that is unreachable (at start, or for a while) without
//! stopping its server.

/// A TCP forwarder in front of a real store's server that can be taken down (its port then
/// refuses connections, and the connections it carried are cut) and brought back on the
/// same port.
pub struct OutageProxy {
    /// The port clients connect to.
    pub port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl OutageProxy {
    /// A forwarder to `target` (`host:port`), down until [`OutageProxy::up`].
    pub async fn closed(target: &str) -> OutageProxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OutageProxy {
            port,
            target: target.to_owned(),
            task: None,
        }
    }

    /// Opens the port (again): every connection is forwarded to the target.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the proxy's port");
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Aborted with the listener, so that no connection outlives `take_down`.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                while connections.try_join_next().is_some() {}
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and cuts every connection through it.
    pub async fn take_down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// `host:port` of an `http://host:port` endpoint.
pub fn host_port(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}
