//! Black-box tests of termcell: the real binary, the real Docker engine, real WebSockets.

mod support;
mod testnet;

mod abuse;
mod deploy;
mod egress;
mod entry;
mod faults;
mod gvisor;
mod image;
mod limits;
mod monitor;
mod ops;
mod page;
mod pool;
mod protocol;
mod record;
mod redraw;
mod resume;
mod rsh;
mod security;
mod session;
mod soak;
