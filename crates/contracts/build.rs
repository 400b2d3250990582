//! Compiles the gRPC definitions with protox (a Rust protobuf compiler), so
//! building Kart needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kart/users/v1/users.proto",
        "proto/kart/catalog/v1/catalog.proto",
        "proto/kart/inventory/v1/inventory.proto",
        "proto/kart/payments/v1/payments.proto",
        "proto/kart/orders/v1/orders.proto",
        "proto/kart/notifications/v1/notifications.proto",
        "proto/kart/analytics/v1/analytics.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
