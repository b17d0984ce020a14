//! Published reference numbers, and a bar chart of a report beside them.

use plotters::prelude::*;
use serde::Deserialize;

use crate::category::Category;
use crate::report::Report;

/// The reference table shipped with the crate (`data/reference.json`).
pub const REFERENCE_JSON: &str = include_str!("../data/reference.json");

/// Published scores of one model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReferenceModel {
    pub name: String,
    pub source: String,
    /// BFCL category name (or `simple`) -> percent.
    pub scores: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
struct ReferenceFile {
    models: Vec<ReferenceModel>,
}

/// Why the reference table or the chart failed.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("reference table is malformed: {0}")]
    Reference(#[from] serde_json::Error),
    #[error("cannot draw the chart: {0}")]
    Draw(String),
}

/// The models of [`REFERENCE_JSON`].
pub fn reference_models() -> Result<Vec<ReferenceModel>, ChartError> {
    let f: ReferenceFile = serde_json::from_str(REFERENCE_JSON)?;
    Ok(f.models)
}

/// The chart's columns, with the reference keys accepted for each.
pub const CHART_COLUMNS: [(Category, &[&str]); 7] = [
    (Category::SimplePython, &["simple_python", "simple"]),
    (Category::Multiple, &["multiple"]),
    (Category::Parallel, &["parallel"]),
    (Category::ParallelMultiple, &["parallel_multiple"]),
    (Category::Irrelevance, &["irrelevance"]),
    (Category::LiveSimple, &["live_simple"]),
    (Category::LiveMultiple, &["live_multiple"]),
];

impl ReferenceModel {
    /// This model's figure for a chart column.
    pub fn score(&self, column: usize) -> Option<f64> {
        let (_, keys) = CHART_COLUMNS.get(column)?;
        keys.iter().find_map(|k| self.scores.get(*k).copied())
    }
}

const COLORS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Draw `report` (as "retort") beside the reference models as an SVG
/// grouped bar chart, returned as text. Columns the report did not run are
/// left empty for retort.
pub fn svg_chart(report: &Report, references: &[ReferenceModel]) -> Result<String, ChartError> {
    let mut series: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    series.push((
        format!("retort ({})", report.model),
        CHART_COLUMNS
            .iter()
            .map(|(c, _)| report.category(*c).map(|s| s.accuracy))
            .collect(),
    ));
    for r in references {
        series.push((
            r.name.clone(),
            (0..CHART_COLUMNS.len()).map(|i| r.score(i)).collect(),
        ));
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 520)).into_drawing_area();
        draw(&root, &series).map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    series: &[(String, Vec<Option<f64>>)],
) -> Result<(), String> {
    let r: DrawResult = (|| {
        root.fill(&WHITE)?;
        Ok(())
    })();
    r.map_err(|e| e.to_string())?;
    let n_cols = CHART_COLUMNS.len();
    let n_series = series.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption("BFCL v4 accuracy (%)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(45)
        .build_cartesian_2d(0f64..n_cols as f64, 0f64..132f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n_cols * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            let centred = (x - x.floor() - 0.5).abs() < 1e-6;
            match CHART_COLUMNS.get(i) {
                Some((c, _)) if centred => c.as_str().to_string(),
                _ => String::new(),
            }
        })
        .y_desc("accuracy %")
        // The headroom above 100 keeps the legend off the bars.
        .y_label_formatter(&|y| {
            if *y <= 100.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / n_series as f64;
    for (si, (name, values)) in series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let bars = values.iter().enumerate().filter_map(|(ci, v)| {
            let v = (*v)?;
            let x0 = ci as f64 + 0.1 + si as f64 * width;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.92, v.clamp(0.0, 100.0))],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn reference_table_parses_with_sources() {
        let refs = reference_models().expect("valid");
        assert_eq!(refs.len(), 3);
        assert!(refs.iter().all(|r| !r.source.is_empty()));
        let fg = &refs[0];
        assert_eq!(fg.score(0), Some(61.6)); // "simple" in the simple_python column
        assert_eq!(refs[2].score(6), Some(54.42));
    }

    #[test]
    fn chart_is_an_svg_with_every_series() {
        let report = Report::from_results("gold", Vec::new());
        let svg = svg_chart(&report, &reference_models().expect("valid")).expect("draws");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Hammer2.1-0.5B (FC)"));
        assert!(svg.contains("live_multiple"));
    }
}
