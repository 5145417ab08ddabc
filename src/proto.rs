//! Generated protobuf and gRPC types. `proto/milvus/*.proto` hold the subset of Milvus's wire
//! format ferry speaks, with upstream package names and field numbers.

#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod common {
    tonic::include_proto!("milvus.proto.common");
}
pub mod schema {
    tonic::include_proto!("milvus.proto.schema");
}
pub mod msg {
    tonic::include_proto!("milvus.proto.msg");
}
pub mod milvus {
    tonic::include_proto!("milvus.proto.milvus");
}
/// ferry's own control API (`proto/ferry/control.proto`).
pub mod control {
    tonic::include_proto!("ferry.control.v1");
}
