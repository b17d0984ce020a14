//! The loss curve (SVG).

use std::path::Path;

use plotters::prelude::*;

use crate::TrainError;

/// Draw training loss (per logged step) and validation loss (per epoch).
pub fn loss_curve(
    path: &Path,
    train: &[(usize, f64)],
    val: &[(usize, f64)],
) -> Result<(), TrainError> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (900, 500)).into_drawing_area();
        let err = |e: String| TrainError::Invalid(format!("plot: {e}"));
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let xmax = train
            .iter()
            .chain(val)
            .map(|x| x.0)
            .max()
            .unwrap_or(1)
            .max(1);
        let ymax = train
            .iter()
            .chain(val)
            .map(|x| x.1)
            .filter(|y| y.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption("retort training loss", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0usize..xmax, 0f64..ymax)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
            .map_err(|e| err(e.to_string()))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        chart
            .draw_series(LineSeries::new(val.iter().copied(), &RED))
            .map_err(|e| err(e.to_string()))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        chart
            .draw_series(
                val.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, RED.filled())),
            )
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}
