mod cli;
mod eval_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}
