//! capwatch's entry point: parses the command line and runs the command it names
//! (`capwatch::commands`). The one place where an error becomes a message and an exit code
//! (`capwatch::exit_code`: 0 ok, 1 failure, 2 bad usage or config, 3–5 a server's causes).

use std::process::ExitCode;

use clap::Parser;

use capwatch::cli::Cli;

fn main() -> ExitCode {
    match capwatch::commands::run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
