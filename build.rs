//! Compiles the Milvus wire protos (a subset written for ferry, upstream field numbers) and
//! ferry's own control API. protoc comes from the `protoc-bin-vendored` crate so a fresh
//! machine needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let protos = [
        "proto/milvus/common.proto",
        "proto/milvus/schema.proto",
        "proto/milvus/msg.proto",
        "proto/milvus/milvus.proto",
    ];
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&protos, &["proto"])?;
    // The control API: client and server, and serde so `--json` output is the message.
    let control = ["proto/ferry/control.proto"];
    tonic_prost_build::configure()
        .type_attribute(".ferry", "#[derive(serde::Serialize, serde::Deserialize)]")
        .type_attribute(".ferry", "#[serde(default)]")
        .compile_protos(&control, &["proto"])?;
    for p in protos.iter().chain(&control) {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
