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
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes, joined with ": ", leaving out a cause whose text
/// the message already contains (many errors quote their source).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("data.jsonl: no such file");
        assert_eq!(describe(&e), "data.jsonl: no such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&e), "outer: inner");
    }
}
