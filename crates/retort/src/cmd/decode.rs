//! `--decode KEY=VALUE`: a model's decoding rules set on the command line
//! (the `decode` object of its `config.json`; see retort-model's
//! `DecodeConfig`).

use retort_model::DecodeConfig;

/// The repeatable `--decode KEY=VALUE` of the commands that load a model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DecodeArgs {
    // The help text is built from the rules' names (`help()`).
    #[arg(
        long = "decode",
        value_name = "KEY=VALUE",
        value_parser = parse,
        help = help()
    )]
    pub decode: Vec<(String, String)>,
}

impl DecodeArgs {
    /// Set the given rules on `cfg`, in order (a later one wins).
    pub fn apply(&self, cfg: &mut DecodeConfig) -> Result<(), retort_model::ModelError> {
        for (key, value) in &self.decode {
            cfg.set(key, value)?;
        }
        Ok(())
    }
}

/// One `KEY=VALUE`, checked against the rules' names and kinds.
fn parse(s: &str) -> Result<(String, String), String> {
    let (key, value) =
        retort_model::decode_config::split_assignment(s).map_err(|e| e.to_string())?;
    DecodeConfig::default()
        .set(key, value)
        .map_err(|e| e.to_string())?;
    Ok((key.to_string(), value.to_string()))
}

fn help() -> String {
    format!(
        "Set one of the model's decoding rules instead of its config.json value \
         (repeatable; a later one wins), e.g. --decode overlap_bias=1.5 --decode \
         contiguous_copy=false. The rules (crates/retort-model/README.md): {}",
        DecodeConfig::keys_help()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_checked_when_parsed() {
        assert_eq!(
            parse("overlap_bias=-1.5"),
            Ok(("overlap_bias".to_string(), "-1.5".to_string()))
        );
        let e = parse("copy_bias=1").expect_err("no such rule");
        assert!(e.contains("contiguous_copy"), "{e}");
        assert!(parse("contiguous_copy=1").is_err());
        assert!(parse("contiguous_copy").is_err());
        for k in DecodeConfig::KEYS {
            assert!(help().contains(k), "the help lacks {k}");
        }
    }

    #[test]
    fn later_assignments_win() {
        let args = DecodeArgs {
            decode: vec![
                ("overlap_bias".into(), "1".into()),
                ("overlap_bias".into(), "2".into()),
            ],
        };
        let mut cfg = DecodeConfig::default();
        args.apply(&mut cfg).expect("apply");
        assert_eq!(cfg.overlap_bias, 2.0);
    }
}
