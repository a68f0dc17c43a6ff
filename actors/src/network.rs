//! The restricted network: which names a session may reach (`allow`), the resolver that
//! answers only those (`resolver`), the host firewall that enforces what it answered
//! (`nft`), and the NetworkGuard that owns both (`guard`).

pub mod allow;
pub mod resolver;
