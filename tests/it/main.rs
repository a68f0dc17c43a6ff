//! Black-box tests of termcell: the real binary, the real Docker engine, real WebSockets.

mod support;

mod session;
