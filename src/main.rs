use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use hubforge::Error;
use hubforge::cli::{self, Cli};

// Parsing thousands of models allocates a lot; mimalloc is markedly faster
// than the system allocator at that (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match cli::run(&cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`hubforge ls | head`) is not an error.
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(err) => {
            match &err {
                Error::Input(diagnostics) | Error::BadData(diagnostics) if cli.wants_json() => {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&diagnostics.to_json()).unwrap_or_default()
                    );
                }
                Error::Input(diagnostics) | Error::BadData(diagnostics) => {
                    eprint!("{}", diagnostics.render())
                }
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(err.exit_code())
        }
    }
}
