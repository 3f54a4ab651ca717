//! The Terraform side of a provider, free of any cloud: the plugin server
//! ([`server`]: go-plugin's handshake, auto-mTLS, the tfplugin6 service and
//! its msgpack/JSON codec) and the framework a provider is written against
//! ([`framework`]: values, schemas, diagnostics with attribute paths,
//! validators, plan logic, the `Provider`/`Resource`/`DataSource` traits).
//!
//! Data walks one way: an RPC is decoded by `server`, handed to the
//! provider's `framework` implementation, and its answer (checked by the
//! server: a create must return a state) encoded back.

pub mod framework;
pub mod server;
