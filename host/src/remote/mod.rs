//! Prometheus remote-write and remote-read protocols: the receiver side of
//! remote write 1.0 and the server side of remote read. The sender follows
//! (issue 11).

pub mod proto;
pub mod read_handler;
pub mod write_receiver;
pub mod xor;
