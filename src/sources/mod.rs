//! File sources (temporary stub while building).
pub mod binlog;
pub mod store;
