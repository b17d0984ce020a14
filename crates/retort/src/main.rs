//! The `retort` command line: one binary that drives every stage of the
//! pipeline (data, distill, train, eval, bench, serve, call).

use clap::{Parser, Subcommand};

mod cmd;

/// Distill a big model's tool calling into a ~26M-parameter student that runs
/// on your CPU.
#[derive(Parser, Debug)]
#[command(name = "retort", version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `retort=debug` (also RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build, import and inspect teacher data.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Ask a live teacher (Gemini or an OpenAI-compatible API) for examples.
    Distill(cmd::distill::DistillArgs),
    /// Train the student by distillation.
    Train(Box<cmd::train::TrainArgs>),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(cmd::eval::EvalCommand),
    /// Measure latency, throughput and memory.
    Bench(cmd::bench::BenchArgs),
    /// Serve the model over HTTP (`/tool-call`, OpenAI-compatible endpoints).
    Serve(cmd::serve::ServeArgs),
    /// Answer one prompt with tool calls, printed as JSON.
    Call(cmd::call::CallArgs),
    /// Describe a model: configuration and parameter count by part.
    Info(cmd::info::InfoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Data(c) => cmd::data::run(c),
        Command::Distill(a) => cmd::distill::run(a),
        Command::Train(a) => cmd::train::run(*a),
        Command::Eval(c) => cmd::eval::run(c),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Call(a) => cmd::call::run(a),
        Command::Info(a) => cmd::info::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
