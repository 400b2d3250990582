//! `kart`: run Kart. See `kart --help`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: with a dozen threads allocating
/// and freeing per request and per event, glibc's per-thread arenas kept
/// the freed memory, and `kart up`'s RSS grew with every order while its
/// live heap did not (BENCHMARKS.md, "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(kart::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Configuration and telemetry are set up before the async runtime starts,
/// and torn down after it stops: the trace exporter's client must not live
/// inside the runtime.
fn run(cli: kart::Cli) -> anyhow::Result<()> {
    let invocation = kart::Invocation::load(cli)?;
    let _telemetry =
        kit::telemetry::init(&invocation.settings.telemetry, &invocation.process_name())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(invocation.run());
    drop(runtime);
    result
}

/// The error and its causes on one line, joined by ": ". A cause whose text
/// its parent already quotes (many libraries do) is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
