//! Prometheus remote-write and remote-read protocols: the receiver side of
//! remote write 1.0, the remote-write sender (fed from the WAL), and the
//! server side of remote read.

pub mod proto;
pub mod read_handler;
pub mod write_receiver;
pub mod write_sender;
pub mod xor;
