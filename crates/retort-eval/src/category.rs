//! BFCL v4 single-turn categories.

use serde::{Deserialize, Serialize};

/// The language BFCL's checker uses for a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Python,
    Java,
    JavaScript,
}

/// How a category is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Exactly one call, checked against the answer key.
    Simple,
    /// Exactly one call of the right function among several.
    Multiple,
    /// An exact number of calls, matched against the key in any order.
    Parallel,
    /// Passes only when no call is made.
    Irrelevance,
    /// Passes when at least one call is made.
    Relevance,
}

/// A BFCL v4 single-turn test category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    SimplePython,
    SimpleJava,
    SimpleJavascript,
    Multiple,
    Parallel,
    ParallelMultiple,
    Irrelevance,
    LiveSimple,
    LiveMultiple,
    LiveParallel,
    LiveParallelMultiple,
    LiveIrrelevance,
    LiveRelevance,
}

impl Category {
    /// Every category, in BFCL's table order.
    pub const ALL: [Category; 13] = [
        Category::SimplePython,
        Category::SimpleJava,
        Category::SimpleJavascript,
        Category::Multiple,
        Category::Parallel,
        Category::ParallelMultiple,
        Category::Irrelevance,
        Category::LiveSimple,
        Category::LiveMultiple,
        Category::LiveParallel,
        Category::LiveParallelMultiple,
        Category::LiveIrrelevance,
        Category::LiveRelevance,
    ];

    /// BFCL's name, e.g. `live_parallel_multiple`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SimplePython => "simple_python",
            Category::SimpleJava => "simple_java",
            Category::SimpleJavascript => "simple_javascript",
            Category::Multiple => "multiple",
            Category::Parallel => "parallel",
            Category::ParallelMultiple => "parallel_multiple",
            Category::Irrelevance => "irrelevance",
            Category::LiveSimple => "live_simple",
            Category::LiveMultiple => "live_multiple",
            Category::LiveParallel => "live_parallel",
            Category::LiveParallelMultiple => "live_parallel_multiple",
            Category::LiveIrrelevance => "live_irrelevance",
            Category::LiveRelevance => "live_relevance",
        }
    }

    /// Parse BFCL's name.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The data file, e.g. `BFCL_v4_simple_python.json`.
    pub fn file_name(self) -> String {
        format!("BFCL_v4_{}.json", self.as_str())
    }

    pub fn language(self) -> Language {
        match self {
            Category::SimpleJava => Language::Java,
            Category::SimpleJavascript => Language::JavaScript,
            _ => Language::Python,
        }
    }

    pub fn is_live(self) -> bool {
        self.as_str().starts_with("live_")
    }

    /// BFCL dispatches on the name: "parallel" first, then "multiple".
    pub fn scoring(self) -> Scoring {
        let n = self.as_str();
        if n.contains("irrelevance") {
            Scoring::Irrelevance
        } else if n.contains("relevance") {
            Scoring::Relevance
        } else if n.contains("parallel") {
            Scoring::Parallel
        } else if n.contains("multiple") {
            Scoring::Multiple
        } else {
            Scoring::Simple
        }
    }

    /// Whether the category has an answer key under `possible_answer/`.
    pub fn has_answers(self) -> bool {
        !matches!(self.scoring(), Scoring::Irrelevance | Scoring::Relevance)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            format!(
                "unknown BFCL category {s:?}; expected one of {}",
                names.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_dispatch() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
        assert_eq!(Category::LiveParallelMultiple.scoring(), Scoring::Parallel);
        assert_eq!(Category::LiveMultiple.scoring(), Scoring::Multiple);
        assert_eq!(Category::LiveIrrelevance.scoring(), Scoring::Irrelevance);
        assert_eq!(Category::LiveRelevance.scoring(), Scoring::Relevance);
        assert_eq!(Category::SimpleJava.language(), Language::Java);
        assert!(Category::LiveSimple.is_live() && !Category::Multiple.is_live());
        assert!("nope".parse::<Category>().is_err());
    }
}
