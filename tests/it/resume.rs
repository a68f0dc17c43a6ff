//! resume tests (real engine, real server, real WebSocket).
