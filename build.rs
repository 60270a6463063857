//! Compiles the protobuf API with tonic's prost codegen. The protoc binary comes from
//! the `protoc-bin-vendored` crate, so a machine without protoc builds as well.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the env.
    unsafe {
        env::set_var("PROTOC", protoc);
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Image bytes are shared `Bytes`, not copied into a `Vec` per response.
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("wechat_qr_descriptor.bin"))
        .compile_protos(
            &[
                PathBuf::from("proto/wechat/qr/v1/qr_service.proto"),
                PathBuf::from("proto/wechat/qr/v1/channel_stats.proto"),
                PathBuf::from("proto/wechat/qr/v1/consumer_groups.proto"),
            ],
            &[PathBuf::from("proto"), include],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
