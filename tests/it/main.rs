//! Black-box tests of termcell: the real binary, the real Docker engine, real WebSockets.

mod support;
mod testnet;

mod abuse;
mod deploy;
mod egress;
mod faults;
mod gvisor;
mod image;
mod limits;
mod ops;
mod page;
mod protocol;
mod redraw;
mod resume;
mod rsh;
mod security;
mod session;
mod soak;
