//! `retort call "PROMPT" --tools TOOLS.json`: answer one prompt, print
//! `{"calls": [...], "confidence": x}`.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use retort_core::{Tool, ToolFormat};
use retort_server::{MAX_TOOLS, ToolChoice, check_calls, check_confidence, check_tool};
use serde_json::json;

/// Answer one prompt with tool calls, printed as JSON.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// The user's request.
    pub prompt: String,
    /// JSON file with the tools: a list of OpenAI, Gemini, MCP or bare
    /// function definitions (or a Gemini `{"functionDeclarations": [..]}`).
    #[arg(long, value_name = "TOOLS.json")]
    pub tools: PathBuf,
    /// Model directory; the embedded default model when absent.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// `auto`, `none`, `required`, or the name of a function to call.
    #[arg(long, default_value = "auto", value_name = "CHOICE")]
    pub tool_choice: String,
    /// Allow at most one call.
    #[arg(long)]
    pub no_parallel: bool,
    #[command(flatten)]
    pub decode: super::decode::DecodeArgs,
}

/// Read and check a tools file; errors name the file and the problem.
pub fn read_tools(path: &Path) -> anyhow::Result<Vec<Tool>> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read tools file {shown}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("tools file {shown} is not valid JSON: {e}"))?;
    let tools = Tool::parse_many(&value, ToolFormat::Auto)
        .map_err(|e| anyhow!("tools file {shown}: {e}"))?;
    if tools.len() > MAX_TOOLS {
        bail!(
            "tools file {shown}: {} tools, more than the limit of {MAX_TOOLS}",
            tools.len()
        );
    }
    for t in &tools {
        check_tool(t).map_err(|e| anyhow!("tools file {shown}: {e}"))?;
    }
    Ok(tools)
}

pub fn run(args: CallArgs) -> anyhow::Result<()> {
    if args.prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    let tools = read_tools(&args.tools)?;
    let choice = ToolChoice::from_cli(&args.tool_choice, &tools)
        .map_err(|e| anyhow!("--tool-choice: {e}"))?;
    let out = if choice == ToolChoice::None || tools.is_empty() {
        // No call is possible: the model is not run.
        json!({"calls": [], "confidence": 1.0})
    } else {
        let caller = super::serve::load_caller(args.model.as_deref(), &args.decode)?;
        let opts = choice.options(!args.no_parallel, None);
        let p = caller
            .call(&args.prompt, &tools, &opts)
            .map_err(|e| anyhow!("{e}"))?;
        check_confidence(p.confidence)
            .and_then(|()| check_calls(&p.calls, &tools, &opts))
            .map_err(|e| {
                anyhow!("the model produced an output that fails validation ({e}); this is a bug")
            })?;
        json!({"calls": p.calls, "confidence": p.confidence})
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
