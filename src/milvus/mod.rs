//! The Milvus gRPC client and the columnar row helpers every data path shares.
//!
//! # Layout
//! - `client`: connection, auth/database headers, retries (`call`).
//! - `ddl`, `dml`: one method per Milvus call (structure and lifecycle; rows).
//! - `canonical`: the shape every batch is rewritten to before it is written to a target.
//! - `data`: [`Rows`] (a batch, column by column) and [`PrimaryKeys`].
//! - `digest`: `Rows::row_digest`, a hash of a row over every field.
//! - `expr`: boolean expressions (`pk in [...]`, `pk > last`).
//! - `pager`: [`KeyPager`], a key-ordered scan that checks the server keeps key order.
//! - `error`: [`MilvusError`] with `is_retryable()` and a bounded `kind()` label.

pub mod canonical;
mod client;
mod ddl;
mod dml;
pub mod data;
mod digest;
mod error;
pub mod expr;
mod pager;
mod rbac;
pub mod shard;

pub use client::{error_chain, normalize_uri, ConnectOptions, CreateCollection, MilvusClient, Query};
pub use data::{PrimaryKeys, Rows};
pub use error::{MilvusError, Result};
pub use expr::PkValue;
pub use pager::{KeyPager, PagerError, MAX_QUERY_ROWS};
pub use rbac::Grant;
pub use shard::ShardFilter;
