//! Acceptance tests: real terraform, the real plugin binary, moto.

mod worker_configuration;
