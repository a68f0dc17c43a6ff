//! termcell: a web terminal server that gives every browser session its own freshly
//! created, hardened Docker container. This crate is the edge: configuration, HTTP routes,
//! the WebSocket bridge, the wire protocol codec and the admin API. The supervision tree
//! and the Docker adapter live in `termcell-actors`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod bridge;
pub mod config;
pub mod connections;
pub mod deployment_lock;
pub mod image;
pub mod logging;
pub mod protections;
pub mod protocol;
pub mod routes;
pub mod server;
pub mod state;
pub mod verify;
pub mod web_assets;
