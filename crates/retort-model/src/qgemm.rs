//! Integer products of the encoder's int8-stored matrices.
//!
//! The shipped model stores each encoder matrix `W` (`[k, n]`, used as
//! `x · W`) as int8 with one scale per row: `W[i][j] = q[i][j] · s[i]`.
//! A product quantizes each row of activations on the fly to 16-bit
//! integers (after folding the row scales in: `x'[i] = x[i] · s[i]`, then
//! `x' ≈ a · u` with one step `a` per row), multiplies in integers, and
//! scales the exact integer sums back: `y[j] = a · Σ u[i] q[i][j]`. The
//! integer part is exact, so every CPU gives the same answers; the only
//! rounding is that of the activations, to at most half a step, where a
//! step is at least 1/11,000 of the row's largest value (`u` is bounded so
//! that no i32 sum can overflow). 8-bit activations were measured first:
//! twice the arithmetic rate, but they cost BFCL answers (simple_python
//! 110 -> 105 of 400), so they are not used.
//!
//! On CPUs with AVX-512 VNNI the integer part runs on `vpdpwssd` (32
//! multiply-adds of i16 pairs per instruction, twice the f32 rate, with
//! the weights read as int8 and widened in registers); elsewhere a
//! portable loop computes the same sums.

use rayon::prelude::*;

use crate::net::QuantRows;

/// i32 lanes of one 512-bit vector.
const LANES: usize = 16;
/// Columns of one packed block (four vectors).
const COLS: usize = 4 * LANES;
/// Rows of `W` per group (one i16 pair per i32 lane).
const PAIR: usize = 2;
/// Bytes of one block's group of rows (`COLS` columns × `PAIR` rows).
const GROUP: usize = COLS * PAIR;
/// Products smaller than this many multiply-adds stay on one thread.
const PAR_MIN: usize = 1 << 20;

/// A `[k, n]` int8 matrix laid out for the product: blocks of 64 columns,
/// each block a run of groups of two rows, column by column
/// (`[block][group][col][2]`). Rows beyond `k` and columns beyond `n` are
/// zero.
#[derive(Debug)]
pub struct PackedI8 {
    /// Rows (the input width).
    pub k: usize,
    /// Columns (the output width).
    pub n: usize,
    groups: usize,
    data: Vec<i8>,
    /// The row scales `s[i]`.
    scale: Vec<f32>,
    /// The largest activation integer: `k · limit · 127` fits in an i32.
    limit: f32,
}

impl PackedI8 {
    /// The packed form of `w` (same values).
    pub fn new(w: &QuantRows) -> PackedI8 {
        let (k, n) = (w.rows, w.cols);
        let groups = k.div_ceil(PAIR);
        let blocks = n.div_ceil(COLS);
        let mut data = vec![0i8; blocks * groups * GROUP];
        for (i, row) in w.q.chunks_exact(n.max(1)).take(k).enumerate() {
            let (g, t) = (i / PAIR, i % PAIR);
            for (j, &v) in row.iter().enumerate() {
                let (b, c) = (j / COLS, j % COLS);
                data[(b * groups + g) * GROUP + c * PAIR + t] = v;
            }
        }
        let mut scale = w.scale.clone();
        scale.resize(k, 0.0);
        let bound = (i32::MAX as usize) / (127 * groups.max(1) * PAIR);
        PackedI8 {
            k,
            n,
            groups,
            data,
            scale,
            limit: bound.clamp(1, i16::MAX as usize) as f32,
        }
    }

    /// The matrix as f32, `[k, n]` row-major (`q · s`).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        for (i, (row, &s)) in out
            .chunks_exact_mut(self.n.max(1))
            .zip(&self.scale)
            .enumerate()
        {
            let (g, t) = (i / PAIR, i % PAIR);
            for (b, o) in row.chunks_mut(COLS).enumerate() {
                let start = (b * self.groups + g) * GROUP + t;
                let src = self.data[start..start + GROUP - t].iter().step_by(PAIR);
                for (x, &q) in o.iter_mut().zip(src) {
                    *x = f32::from(q) * s;
                }
            }
        }
        out
    }

    /// `x · W` for the `m` rows of `x` (`[m, k]` row-major): `[m, n]`.
    /// Runs on the current rayon pool when the product is big enough.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let kp = self.groups * PAIR;
        let n = self.n.max(1);
        let mut y = vec![0f32; m * self.n];
        if self.k == 0 || self.n == 0 {
            return y;
        }
        let (a, step) = self.quantize(x, m);
        // Rows are split between threads (each reads the whole matrix);
        // each task sums one block of 64 columns at a time into a small
        // tile and scales it straight into its rows of `y`.
        let threads = if m * self.k * self.n >= PAR_MIN {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let rows = m.div_ceil(threads).div_ceil(4).max(1) * 4;
        let run = |(c, ys): (usize, &mut [f32])| {
            let r0 = c * rows;
            let count = ys.len() / n;
            let a = &a[r0 * kp..(r0 + count) * kp];
            let mut tile = vec![0i32; count * COLS];
            for (b, w) in self.data.chunks_exact(self.groups * GROUP).enumerate() {
                tile.fill(0);
                block(a, kp, w, &mut tile);
                for ((yr, t), &st) in ys
                    .chunks_exact_mut(n)
                    .zip(tile.chunks_exact(COLS))
                    .zip(&step[r0..])
                {
                    let cols = &mut yr[b * COLS..((b + 1) * COLS).min(self.n)];
                    for (o, &v) in cols.iter_mut().zip(t) {
                        *o = st * v as f32;
                    }
                }
            }
        };
        if threads > 1 {
            y.par_chunks_mut(rows * n).enumerate().for_each(run);
        } else {
            y.chunks_mut(rows * n).enumerate().for_each(run);
        }
        y
    }

    /// Each row of `x` with the row scales folded in, as integers `u`
    /// (`k` rounded up to whole groups; padding is 0) and its step `a`. A
    /// row that is all zero, or not finite, gets step 0.
    fn quantize(&self, x: &[f32], m: usize) -> (Vec<i16>, Vec<f32>) {
        let kp = self.groups * PAIR;
        let mut a = vec![0i16; m * kp];
        let mut step = vec![0f32; m];
        for ((xr, ar), st) in x
            .chunks_exact(self.k.max(1))
            .zip(a.chunks_exact_mut(kp.max(1)))
            .zip(&mut step)
        {
            *st = pulp::Arch::new().dispatch(QuantizeRow {
                x: xr,
                scale: &self.scale,
                limit: self.limit,
                out: ar,
            });
        }
        (a, step)
    }
}

/// One row of activations with the row scales folded in, as integers in
/// `-limit..=limit`; returns the step (0 for a row that is all zero or not
/// finite, which then stays all 0).
struct QuantizeRow<'a> {
    x: &'a [f32],
    scale: &'a [f32],
    limit: f32,
    out: &'a mut [i16],
}

impl pulp::WithSimd for QuantizeRow<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f32 {
        let mut peaks = [0f32; 16];
        for (xc, sc) in self.x.chunks(16).zip(self.scale.chunks(16)) {
            for ((p, v), s) in peaks.iter_mut().zip(xc).zip(sc) {
                *p = p.max((v * s).abs());
            }
        }
        let amax = peaks.iter().copied().fold(0f32, f32::max);
        if !(amax > 0.0 && amax.is_finite()) {
            return 0.0;
        }
        let lim = self.limit;
        let inv = lim / amax;
        for ((o, v), s) in self.out.iter_mut().zip(self.x).zip(self.scale) {
            // In -limit..=limit by construction; the clamp only guards
            // against rounding at the edge.
            *o = (v * s * inv).round_ties_even().clamp(-lim, lim) as i16;
        }
        amax / lim
    }
}

/// `out[r][c] = Σ_i a[r][i] · w[i][c]` for the rows of `a` (each `kp`
/// entries) and one packed block `w` (`out` is `[m, COLS]`).
fn block(a: &[i16], kp: usize, w: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if vnni::available() {
        vnni::block(a, kp, w, out);
        return;
    }
    pulp::Arch::new().dispatch(Portable { a, kp, w, out });
}

/// The integer product in plain loops (any CPU; the compiler vectorises
/// it for the instruction set `dispatch` picks).
struct Portable<'a> {
    a: &'a [i16],
    kp: usize,
    w: &'a [i8],
    out: &'a mut [i32],
}

impl pulp::WithSimd for Portable<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for (ar, orow) in self
            .a
            .chunks_exact(self.kp.max(1))
            .zip(self.out.chunks_exact_mut(COLS))
        {
            for (a2, wg) in ar.chunks_exact(PAIR).zip(self.w.chunks_exact(GROUP)) {
                let (a0, a1) = (i32::from(a2[0]), i32::from(a2[1]));
                for (o, w2) in orow.iter_mut().zip(wg.chunks_exact(PAIR)) {
                    // The bound on `u` keeps every sum inside i32; wrapping
                    // is `vpdpwssd`'s own arithmetic.
                    *o = o
                        .wrapping_add(a0 * i32::from(w2[0]))
                        .wrapping_add(a1 * i32::from(w2[1]));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm512_cvtepi8_epi16, _mm512_dpwssd_epi32, _mm512_set1_epi32,
        _mm512_setzero_si512,
    };

    use super::{COLS, GROUP, LANES, PAIR};

    /// Whether this CPU runs the VNNI kernel (std caches the answer).
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }

    /// [`super::block`] on `vpdpwssd`. Does nothing unless [`available`].
    pub(super) fn block(a: &[i16], kp: usize, w: &[i8], out: &mut [i32]) {
        if !available() {
            return;
        }
        // SAFETY: `block_vnni` needs AVX-512 F/BW/VNNI, which the run-time
        // check above just confirmed. It touches memory only through
        // bounds-checked slices (no raw pointers). This is the crate's one
        // way into these instructions, measured to matter in
        // crates/retort-model/README.md ("Integer products").
        unsafe { block_vnni(a, kp, w, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn block_vnni(a: &[i16], kp: usize, w: &[i8], out: &mut [i32]) {
        let kp = kp.max(PAIR);
        let rows = a.len() / kp;
        let mut r = 0;
        while r + 4 <= rows {
            rows_n::<4>(a, r, kp, w, out);
            r += 4;
        }
        while r < rows {
            rows_n::<1>(a, r, kp, w, out);
            r += 1;
        }
    }

    /// Rows `r0..r0 + R` of the block: `R × 4` accumulators; each group's
    /// weights are loaded and widened to i16 once for all `R` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn rows_n<const R: usize>(a: &[i16], r0: usize, kp: usize, w: &[i8], out: &mut [i32]) {
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        let mut arows: [&[i16]; R] = [&[]; R];
        for (i, ar) in arows.iter_mut().enumerate() {
            *ar = a.get((r0 + i) * kp..(r0 + i + 1) * kp).unwrap_or(&[]);
        }
        for (g, wg) in w.chunks_exact(GROUP).enumerate() {
            let mut wv = [_mm512_setzero_si512(); 4];
            for (v, chunk) in wv.iter_mut().zip(wg.chunks_exact(LANES * PAIR)) {
                if let Ok(bytes) = <[i8; LANES * PAIR]>::try_from(chunk) {
                    *v = _mm512_cvtepi8_epi16(bytemuck::cast::<[i8; 32], __m256i>(bytes));
                }
            }
            for (acc_r, ar) in acc.iter_mut().zip(&arows) {
                let Some(a2) = ar.get(g * PAIR..g * PAIR + PAIR) else {
                    continue;
                };
                let pair = u32::from(a2[0] as u16) | (u32::from(a2[1] as u16) << 16);
                let av = _mm512_set1_epi32(pair as i32);
                for (s, v) in acc_r.iter_mut().zip(&wv) {
                    *s = _mm512_dpwssd_epi32(*s, av, *v);
                }
            }
        }
        for (i, acc_r) in acc.iter().enumerate() {
            let Some(orow) = out.get_mut((r0 + i) * COLS..(r0 + i + 1) * COLS) else {
                continue;
            };
            for (o, s) in orow.chunks_exact_mut(LANES).zip(acc_r) {
                o.copy_from_slice(&bytemuck::cast::<__m512i, [i32; LANES]>(*s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(k: usize, n: usize, seed: u32) -> QuantRows {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let q = (0..k * n)
            .map(|_| (next() % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let scale = (0..k).map(|i| 0.01 + (i % 7) as f32 * 0.003).collect();
        QuantRows {
            rows: k,
            cols: n,
            q,
            scale,
        }
    }

    fn activations(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    /// The exact integer sums the product must give, from the same
    /// quantized activations.
    fn reference(p: &PackedI8, w: &QuantRows, x: &[f32], m: usize) -> Vec<f32> {
        let (a, step) = p.quantize(x, m);
        let kp = p.groups * PAIR;
        let mut y = vec![0f32; m * w.cols];
        for r in 0..m {
            for j in 0..w.cols {
                let mut s: i64 = 0;
                for i in 0..w.rows {
                    s += i64::from(a[r * kp + i]) * i64::from(w.q[i * w.cols + j]);
                }
                y[r * w.cols + j] = step[r] * s as f32;
            }
        }
        y
    }

    #[test]
    fn packing_keeps_the_values() {
        let w = matrix(13, 70, 1);
        let p = PackedI8::new(&w);
        assert_eq!(p.dequantize(), w.dequantize());
    }

    #[test]
    fn products_are_the_exact_integer_sums() {
        // Odd shapes: rows not a multiple of 4, columns not of 64, row
        // counts around the 4-row register block.
        // The last two are big enough to be split between threads (rows
        // not a multiple of the split).
        for (m, k, n) in [
            (1, 5, 3),
            (3, 13, 70),
            (4, 64, 64),
            (7, 384, 130),
            (9, 100, 200),
            (37, 384, 130),
            (93, 1536, 64),
        ] {
            let w = matrix(k, n, (m * k + n) as u32);
            let p = PackedI8::new(&w);
            let x = activations(m, k);
            assert_eq!(p.matmul(&x, m), reference(&p, &w, &x, m), "{m}x{k}x{n}");
        }
    }

    #[test]
    fn portable_and_vector_kernels_agree() {
        let w = matrix(96, 128, 5);
        let p = PackedI8::new(&w);
        let x = activations(6, 96);
        let (a, _) = p.quantize(&x, 6);
        let wb = &p.data[..p.groups * GROUP];
        let mut portable = vec![0i32; 6 * COLS];
        pulp::Arch::new().dispatch(Portable {
            a: &a,
            kp: p.groups * PAIR,
            w: wb,
            out: &mut portable,
        });
        let mut any = vec![0i32; 6 * COLS];
        block(&a, p.groups * PAIR, wb, &mut any);
        assert_eq!(portable, any);
    }

    #[test]
    fn products_are_close_to_f32() {
        let (m, k, n) = (5, 384, 96);
        let w = matrix(k, n, 9);
        let p = PackedI8::new(&w);
        let x = activations(m, k);
        let wf = w.dequantize();
        let y = p.matmul(&x, m);
        let (_, step) = p.quantize(&x, m);
        for r in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * wf[i * n + j]).sum();
                // Each activation is off by at most half a step.
                let bound: f32 = (0..k)
                    .map(|i| 0.5 * step[r] * f32::from(w.q[i * n + j]).abs())
                    .sum();
                let err = (y[r * n + j] - exact).abs();
                assert!(
                    err <= bound * 1.01 + 1e-4,
                    "{r},{j}: {} vs {exact}",
                    y[r * n + j]
                );
            }
        }
    }

    #[test]
    fn the_largest_sums_do_not_overflow() {
        // Every weight at the int8 extreme and every activation at the
        // row's peak: the sum is k · limit · 127, the most an i32 must hold.
        for k in [384, 1536, 4001] {
            let n = 64;
            let w = QuantRows {
                rows: k,
                cols: n,
                q: (0..k * n)
                    .map(|i| if i % n == 0 { -127 } else { 127 })
                    .collect(),
                scale: vec![1.0; k],
            };
            let p = PackedI8::new(&w);
            let x = vec![1.5f32; 2 * k];
            let y = p.matmul(&x, 2);
            assert_eq!(y, reference(&p, &w, &x, 2), "k={k}");
            let want = 1.5 * 127.0 * k as f32;
            assert!(
                (y[1] - want).abs() < 1e-3 * want,
                "k={k}: {} vs {want}",
                y[1]
            );
            assert!(
                (y[0] + want).abs() < 1e-3 * want,
                "k={k}: {} vs -{want}",
                y[0]
            );
        }
    }

    #[test]
    fn empty_matrices_give_zeros() {
        for (k, n) in [(0, 5), (5, 0), (0, 0)] {
            let w = QuantRows {
                rows: k,
                cols: n,
                q: Vec::new(),
                scale: vec![1.0; k],
            };
            let p = PackedI8::new(&w);
            assert_eq!(p.matmul(&vec![1.0; 3 * k], 3), vec![0.0; 3 * n]);
            assert!(p.dequantize().is_empty());
        }
    }

    #[test]
    fn zero_and_non_finite_rows_give_zeros() {
        let w = matrix(8, 16, 3);
        let p = PackedI8::new(&w);
        let mut x = vec![0f32; 3 * 8];
        x[8] = f32::INFINITY;
        x[16] = f32::NAN;
        let y = p.matmul(&x, 3);
        assert!(y[..16].iter().all(|&v| v == 0.0));
        assert!(y[16..32].iter().all(|&v| v == 0.0));
        assert!(y.iter().all(|v| v.is_finite()));
    }
}
