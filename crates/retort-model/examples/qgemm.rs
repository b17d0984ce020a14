//! Speed of the integer matrix product ([`PackedI8::matmul`]) at the
//! encoder's shapes (84 rows: a BFCL-simple-sized request), in
//! multiply-adds per second, on the current rayon pool
//! (`RAYON_NUM_THREADS=1` for one core), with 16-bit and 8-bit activations.
//!
//! `cargo run --release -p retort-model --example qgemm`

use std::time::Instant;

use retort_model::net::QuantRows;
use retort_model::qgemm::{Activations, PackedI8};

fn main() {
    for (m, k, n) in [
        (84, 384, 384),
        (84, 384, 1536),
        (84, 1536, 384),
        (1, 384, 384),
    ] {
        for act in [Activations::I16, Activations::U8] {
            let v: Vec<f32> = (0..k * n)
                .map(|i| (((i * 37 + 11) % 255) as f32 - 127.0) * 0.01)
                .collect();
            let p = PackedI8::with_activations(&QuantRows::quantize(k, n, &v), act);
            let x: Vec<f32> = (0..m * k).map(|i| (i * 7 % 13) as f32 - 6.0).collect();
            let reps = (2_000_000_000 / (m * k * n)).max(10);
            let mut check = p.matmul(&x, m)[0];
            let t = Instant::now();
            for _ in 0..reps {
                check += p.matmul(&x, m)[0];
            }
            let dt = t.elapsed().as_secs_f64();
            println!(
                "{m}x{k}x{n} {act:?}: {:.1} us per product, {:.1} G multiply-adds/s (checksum {check})",
                dt / reps as f64 * 1e6,
                (m * k * n * reps) as f64 / dt / 1e9
            );
        }
    }
}
