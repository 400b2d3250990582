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
    without_transparent_huge_pages();
    match run(kart::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks the
/// kernel for huge pages on its arenas, and a 2 MiB page counts fully
/// against the RSS once any byte of it is touched: under load `kart up`
/// showed 424 MB of its 510 MB RSS as huge pages, against 104 MB without
/// them, at the same throughput (BENCHMARKS.md, "Memory"). Best effort: a
/// kernel without the switch keeps its default.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("warning: transparent huge pages stay on: {error}");
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
