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
#[derive(Debug, Clone)]
pub struct PackedI8 {
    /// Rows (the input width).
    pub k: usize,
    /// Columns (the output width).
    pub n: usize,
    groups: usize,
    data: Vec<i8>,
    /// The row scales `s[i]`.
    scale: Vec<f32>,
    /// Scales of the output columns (empty: all 1), for matrices quantized
    /// along the other axis ([`PackedI8::transposed`]).
    col_scale: Vec<f32>,
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
            col_scale: Vec::new(),
            limit: bound.clamp(1, i16::MAX as usize) as f32,
        }
    }

    /// The packed transpose of `w` (`[r, c]`, one scale per row), so that
    /// [`PackedI8::matmul`] computes `w · x` (one output per row of `w`):
    /// `k = c`, `n = r`, the row scales are 1 and `w`'s row scales become
    /// the column scales.
    pub fn transposed(w: &QuantRows) -> PackedI8 {
        let (r, c) = (w.rows, w.cols);
        let mut qt = vec![0i8; r * c];
        for (i, row) in w.q.chunks_exact(c.max(1)).take(r).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                qt[j * r + i] = v;
            }
        }
        let mut p = PackedI8::new(&QuantRows {
            rows: c,
            cols: r,
            q: qt,
            scale: vec![1.0; c],
        });
        p.col_scale = w.scale.clone();
        p.col_scale.resize(r, 0.0);
        p
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
                if let Some(cs) = self.col_scale.get(b * COLS..b * COLS + o.len()) {
                    for (x, c) in o.iter_mut().zip(cs) {
                        *x *= c;
                    }
                }
            }
        }
        out
    }

    /// `x · W` for the `m` rows of `x` (`[m, k]` row-major): `[m, n]`.
    /// Runs on the current rayon pool when the product is big enough.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
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
            let a = &a[r0 * self.groups..(r0 + count) * self.groups];
            let mut tile = vec![0i32; count * COLS];
            for (b, w) in self.data.chunks_exact(self.groups * GROUP).enumerate() {
                tile.fill(0);
                block(a, self.groups, w, &mut tile);
                for ((yr, t), &st) in ys
                    .chunks_exact_mut(n)
                    .zip(tile.chunks_exact(COLS))
                    .zip(&step[r0..])
                {
                    let cols = &mut yr[b * COLS..((b + 1) * COLS).min(self.n)];
                    for (o, &v) in cols.iter_mut().zip(t) {
                        *o = st * v as f32;
                    }
                    if let Some(cs) = self.col_scale.get(b * COLS..b * COLS + cols.len()) {
                        for (o, c) in cols.iter_mut().zip(cs) {
                            *o *= c;
                        }
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
    fn quantize(&self, x: &[f32], m: usize) -> (Vec<i32>, Vec<f32>) {
        let kp = self.groups * PAIR;
        // Pairs of i16 in one i32 each (element `2g` in the low half on
        // little-endian targets, as `vpdpwssd` reads them), written
        // through an i16 view of the same buffer.
        let mut a = vec![0i32; m * self.groups];
        let mut step = vec![0f32; m];
        let a16: &mut [i16] = bytemuck::cast_slice_mut(&mut a);
        for ((xr, ar), st) in x
            .chunks_exact(self.k.max(1))
            .zip(a16.chunks_exact_mut(kp.max(1)))
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
        // Sixteen running maxima, so that the loop vectorises; a NaN
        // element fails the comparison and is skipped.
        let mut peaks = [0f32; 16];
        let (xc, sc) = (self.x.chunks_exact(16), self.scale.chunks_exact(16));
        for (v, s) in xc.remainder().iter().zip(sc.remainder()) {
            let a = (v * s).abs();
            if a > peaks[0] {
                peaks[0] = a;
            }
        }
        for (xr, sr) in xc.zip(sc) {
            for ((p, v), s) in peaks.iter_mut().zip(xr).zip(sr) {
                let a = (v * s).abs();
                if a > *p {
                    *p = a;
                }
            }
        }
        let amax = peaks.iter().copied().fold(0f32, f32::max);
        if !(amax > 0.0 && amax.is_finite()) {
            return 0.0;
        }
        let lim = self.limit;
        let inv = lim / amax;
        // Round half to even by adding 1.5 · 2^23: for |t| < 2^22 the sum's
        // last mantissa bits are the rounded integer, read off its bit
        // pattern (`round_ties_even` and float-to-int casts kept this loop
        // scalar). The clamp keeps `t` in -limit..=limit against rounding
        // at the edge; a NaN element becomes 0.
        const MAGIC: f32 = 12_582_912.0;
        let magic_bits = MAGIC.to_bits() as i32;
        for ((o, v), s) in self.out.iter_mut().zip(self.x).zip(self.scale) {
            let t = (v * s * inv).clamp(-lim, lim);
            let t = if t.is_nan() { 0.0 } else { t };
            *o = ((t + MAGIC).to_bits() as i32).wrapping_sub(magic_bits) as i16;
        }
        amax / lim
    }
}

/// `out[r][c] = Σ_i a[r][i] · w[i][c]` for the rows of `a` (each
/// `groups` i16 pairs, see [`PackedI8::quantize`]) and one packed block `w`
/// (`out` is `[m, COLS]`).
fn block(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if vnni::available() {
        vnni::block(a, groups, w, out);
        return;
    }
    let a: &[i16] = bytemuck::cast_slice(a);
    pulp::Arch::new().dispatch(Portable {
        a,
        kp: groups * PAIR,
        w,
        out,
    });
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
    pub(super) fn block(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        if !available() {
            return;
        }
        // SAFETY: `block_vnni` needs AVX-512 F/BW/VNNI, which the run-time
        // check above just confirmed. It touches memory only through
        // bounds-checked slices (no raw pointers). This is the crate's one
        // way into these instructions, measured to matter in
        // crates/retort-model/README.md ("Integer products").
        unsafe { block_vnni(a, groups, w, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn block_vnni(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        let groups = groups.max(1);
        let w = &w[..w.len().min(groups * GROUP)];
        let mut rows = a.chunks_exact(groups).zip(out.chunks_exact_mut(COLS));
        loop {
            match (rows.next(), rows.next(), rows.next(), rows.next()) {
                (Some((a0, o0)), Some((a1, o1)), Some((a2, o2)), Some((a3, o3))) => {
                    let acc = rows4([a0, a1, a2, a3], w);
                    for (o, acc_r) in [o0, o1, o2, o3].into_iter().zip(&acc) {
                        store(o, acc_r);
                    }
                }
                (r0, r1, r2, _) => {
                    for (ar, o) in [r0, r1, r2].into_iter().flatten() {
                        store(o, &row1(ar, w));
                    }
                    break;
                }
            }
        }
    }

    /// The block's 64 int8 columns of one group of two rows, widened to i16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn widen(wg: &[i8; GROUP]) -> [__m512i; 4] {
        let v: [[i8; LANES * PAIR]; 4] = bytemuck::cast(*wg);
        let mut out = [_mm512_setzero_si512(); 4];
        for (o, x) in out.iter_mut().zip(v) {
            *o = _mm512_cvtepi8_epi16(bytemuck::cast::<[i8; 32], __m256i>(x));
        }
        out
    }

    /// Four rows of the block in `4 × 4` accumulators; each group's weights
    /// are widened once for the four rows, and each row's i16 pair is
    /// broadcast to every lane.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn rows4(a: [&[i32]; 4], w: &[i8]) -> [[__m512i; 4]; 4] {
        let mut acc = [[_mm512_setzero_si512(); 4]; 4];
        let groups = w
            .chunks_exact(GROUP)
            .zip(a[0])
            .zip(a[1])
            .zip(a[2])
            .zip(a[3]);
        for ((((wg, &x0), &x1), &x2), &x3) in groups {
            let Ok(wg) = <&[i8; GROUP]>::try_from(wg) else {
                continue;
            };
            let wv = widen(wg);
            for (acc_r, x) in acc.iter_mut().zip([x0, x1, x2, x3]) {
                let b = _mm512_set1_epi32(x);
                for (s, v) in acc_r.iter_mut().zip(&wv) {
                    *s = _mm512_dpwssd_epi32(*s, b, *v);
                }
            }
        }
        acc
    }

    /// One row of the block (the rows left over after groups of four).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn row1(a: &[i32], w: &[i8]) -> [__m512i; 4] {
        let mut acc = [_mm512_setzero_si512(); 4];
        for (wg, &x) in w.chunks_exact(GROUP).zip(a) {
            let Ok(wg) = <&[i8; GROUP]>::try_from(wg) else {
                continue;
            };
            let b = _mm512_set1_epi32(x);
            for (s, v) in acc.iter_mut().zip(&widen(wg)) {
                *s = _mm512_dpwssd_epi32(*s, b, *v);
            }
        }
        acc
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn store(o: &mut [i32], acc: &[__m512i; 4]) {
        for (o, s) in o.chunks_exact_mut(LANES).zip(acc) {
            o.copy_from_slice(&bytemuck::cast::<__m512i, [i32; LANES]>(*s));
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
        let a: &[i16] = bytemuck::cast_slice(&a);
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
            a: bytemuck::cast_slice(&a),
            kp: p.groups * PAIR,
            w: wb,
            out: &mut portable,
        });
        let mut any = vec![0i32; 6 * COLS];
        block(&a, p.groups, wb, &mut any);
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
    fn transposed_products_are_matrix_vector_products() {
        let w = matrix(70, 13, 4);
        let p = PackedI8::transposed(&w);
        let wf = w.dequantize();
        let x = activations(2, 13);
        let y = p.matmul(&x, 2);
        let (_, step) = p.quantize(&x, 2);
        for r in 0..2 {
            for i in 0..70 {
                let exact: f32 = (0..13).map(|j| wf[i * 13 + j] * x[r * 13 + j]).sum();
                let bound: f32 = (0..13).map(|j| 0.5 * step[r] * wf[i * 13 + j].abs()).sum();
                let got = y[r * 70 + i];
                assert!(
                    (got - exact).abs() <= bound * 1.01 + 1e-5,
                    "{got} vs {exact}"
                );
            }
        }
        // The packed transpose holds the same values.
        let back = p.dequantize();
        for i in 0..70 {
            for j in 0..13 {
                assert_eq!(back[j * 70 + i], wf[i * 13 + j]);
            }
        }
    }

    #[test]
    fn rounding_is_half_to_even() {
        // One row whose peak sets the step to exactly 1: values land on
        // integers and halves.
        let k = 8;
        let w = QuantRows {
            rows: k,
            cols: 1,
            q: vec![1; k],
            scale: vec![1.0; k],
        };
        let p = PackedI8::new(&w);
        let lim = p.limit;
        let x = [lim, 0.5, 1.5, 2.5, -0.5, -1.5, -2.49, f32::NAN];
        let (a, step) = p.quantize(&x, 1);
        assert_eq!(step[0], 1.0);
        let a: &[i16] = bytemuck::cast_slice(&a);
        let want: Vec<i16> = x
            .iter()
            .map(|v| {
                if v.is_nan() {
                    0
                } else {
                    v.round_ties_even() as i16
                }
            })
            .collect();
        assert_eq!(&a[..k], &want[..]);
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
