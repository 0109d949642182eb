//! Probe latency is the wire round trip: tiers probed together stay close to each alone.
