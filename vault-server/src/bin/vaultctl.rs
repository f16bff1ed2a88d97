//! `vaultctl`: the vault's command line. Everything but `main` is in the library's `cli`
//! module (the clap tree, the commands, the typed failure and its exit status), over the
//! client library in `client` (docs/cli.md gives each command's output).

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    vault_server::cli::main()
}
