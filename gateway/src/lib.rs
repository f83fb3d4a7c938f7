//! `cistern-gateway`: everything above the leaf crates.
//!
//! - [`origin`]: the `Origin` trait, its `fs` and `s3` clients and the layers around them.
//! - [`pipeline`]: the dialect-neutral read path (catalog, metadata, conditions, chunks,
//!   read-ahead).
//! - [`blob`]: the Azure Blob front (its router, auth, XML and its one error mapping).
//! - [`s3`]: the S3 front on `s3s` (operations, auth, hosts, and its one error mapping).
//! - [`server`]: listeners with graceful drain, the access log and request metrics;
//!   [`logfmt`]: the log line format.
//! - [`admin`]: the admin listener's warm-up jobs, stats and dashboard.
//! - [`config`], [`app`], [`metrics`]: configuration, wiring and the metrics registry, used by
//!   the `cistern` binary.

pub mod admin;
pub mod app;
pub mod blob;
pub mod config;
pub mod dates;
pub mod error;
pub mod logfmt;
pub mod metrics;
pub mod origin;
pub mod peer;
pub mod pipeline;
pub mod s3;
pub mod server;

#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cluster;
#[cfg(test)]
mod tests_dfs;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_s3_front;
#[cfg(test)]
mod tests_warm;
