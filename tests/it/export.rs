//! The Prometheus export against the real peers: node_exporter's textfile collector and a
//! Prometheus scrape.
