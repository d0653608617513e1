//! Prometheus remote-write and remote-read protocols. Today: the receiver
//! side of remote write 1.0; the sender and remote read follow (issues 6, 11).

pub mod proto;
pub mod write_receiver;
