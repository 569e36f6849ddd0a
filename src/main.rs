use std::process::ExitCode;

fn main() -> ExitCode {
    ally::cli::main()
}
