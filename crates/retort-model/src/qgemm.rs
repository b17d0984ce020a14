//! Integer products of the encoder's int8-stored matrices.
//!
//! The shipped model stores each encoder matrix `W` (`[k, n]`, used as
//! `x · W`) as int8 with one scale per row: `W[i][j] = q[i][j] · s[i]`.
//! A product quantizes each row of activations on the fly to integers
//! (after folding the row scales in: `x'[i] = x[i] · s[i]`, then
//! `x' ≈ a · u` with one step `a` per row), multiplies in integers, and
//! scales the exact integer sums back: `y[j] = a · Σ u[i] q[i][j]`. The
//! integer part is exact, so every CPU gives the same answers; the only
//! rounding is that of the activations, to at most half a step.
//!
//! Activations come in two widths ([`Activations`]):
//! - **16-bit** (the default): `u` is symmetric and a step is at least
//!   1/11,000 of the row's largest value (`u` is bounded so that no i32
//!   sum can overflow). On CPUs with AVX-512 VNNI the integer part runs on
//!   `vpdpwssd` (32 multiply-adds of i16 pairs per instruction, twice the
//!   f32 rate, with the weights read as int8 and widened in registers).
//! - **8-bit**, asymmetric: each row spans `[min, max]` (widened to hold
//!   0) in 255 steps, `u = round(x'/a) + z` in `0..=255` with an integer
//!   zero point `z`, and `y[j] = a · (Σ u[i] q[i][j] − z · Σ q[i][j])`
//!   with the column sums kept from packing. The integer part runs on
//!   `vpdpbusd` (64 multiply-adds of u8 × i8 per instruction: twice the
//!   16-bit rate, and the weights need no widening). The model config
//!   chooses which matrices use it (`eight_bit_activations`), because the
//!   coarser rounding costs answers on some of them (measured in
//!   crates/retort-model/README.md).
//!
//! Elsewhere a portable loop computes the same sums.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::net::QuantRows;

/// i32 lanes of one 512-bit vector.
const LANES: usize = 16;
/// Columns of one packed block (four vectors).
const COLS: usize = 4 * LANES;
/// Products smaller than this many multiply-adds stay on one thread.
const PAR_MIN: usize = 1 << 20;

/// The integer width of a product's activations (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activations {
    /// Symmetric 16-bit integers (`vpdpwssd`).
    #[default]
    I16,
    /// Asymmetric 8-bit integers with a zero point (`vpdpbusd`).
    U8,
}

impl Activations {
    /// Rows of `W` that share one i32 lane: two i16 or four u8 products.
    const fn per_lane(self) -> usize {
        match self {
            Activations::I16 => 2,
            Activations::U8 => 4,
        }
    }
}

/// A `[k, n]` int8 matrix laid out for the product: blocks of 64 columns,
/// each block a run of groups of `p` rows (`p` = 2 for 16-bit activations,
/// 4 for 8-bit), column by column (`[block][group][col][p]`). Rows beyond
/// `k` and columns beyond `n` are zero.
#[derive(Debug, Clone)]
pub struct PackedI8 {
    /// Rows (the input width).
    pub k: usize,
    /// Columns (the output width).
    pub n: usize,
    /// The activations' width, which fixes the layout.
    act: Activations,
    groups: usize,
    data: Vec<i8>,
    /// The row scales `s[i]`.
    scale: Vec<f32>,
    /// Scales of the output columns (empty: all 1), for matrices quantized
    /// along the other axis ([`PackedI8::transposed`]).
    col_scale: Vec<f32>,
    /// `Σ_i q[i][j]` per column, for 8-bit activations' zero points (empty
    /// for 16-bit).
    col_sum: Vec<i32>,
    /// The largest 16-bit activation integer: `k · limit · 127` fits in an
    /// i32.
    limit: f32,
}

impl PackedI8 {
    /// The packed form of `w` (same values), for 16-bit activations.
    pub fn new(w: &QuantRows) -> PackedI8 {
        PackedI8::with_activations(w, Activations::I16)
    }

    /// The packed form of `w` (same values) for activations of width
    /// `act`. A matrix too tall for 8-bit sums to fit in an i32 (more than
    /// 66,000 rows) keeps 16-bit activations.
    pub fn with_activations(w: &QuantRows, act: Activations) -> PackedI8 {
        let (k, n) = (w.rows, w.cols);
        let act = if k > (i32::MAX as usize) / (255 * 127) {
            Activations::I16
        } else {
            act
        };
        let per = act.per_lane();
        let groups = k.div_ceil(per);
        let blocks = n.div_ceil(COLS);
        let size = COLS * per;
        let mut data = vec![0i8; blocks * groups * size];
        let mut col_sum = vec![0i32; if act == Activations::U8 { n } else { 0 }];
        for (i, row) in w.q.chunks_exact(n.max(1)).take(k).enumerate() {
            let (g, t) = (i / per, i % per);
            for (j, &v) in row.iter().enumerate() {
                let (b, c) = (j / COLS, j % COLS);
                data[(b * groups + g) * size + c * per + t] = v;
            }
            for (s, &v) in col_sum.iter_mut().zip(row) {
                *s += i32::from(v);
            }
        }
        let mut scale = w.scale.clone();
        scale.resize(k, 0.0);
        let bound = (i32::MAX as usize) / (127 * groups.max(1) * per);
        PackedI8 {
            k,
            n,
            act,
            groups,
            data,
            scale,
            col_scale: Vec::new(),
            col_sum,
            limit: bound.clamp(1, i16::MAX as usize) as f32,
        }
    }

    /// The activations' width of this packing.
    pub fn activations(&self) -> Activations {
        self.act
    }

    /// The int8 rows and row scales this matrix was packed from (for
    /// matrices built by [`PackedI8::with_activations`]; the transposed
    /// form gives its transpose with unit scales).
    pub fn rows(&self) -> QuantRows {
        let per = self.act.per_lane();
        let size = COLS * per;
        let mut q = vec![0i8; self.k * self.n];
        for (i, row) in q.chunks_exact_mut(self.n.max(1)).take(self.k).enumerate() {
            let (g, t) = (i / per, i % per);
            for (j, v) in row.iter_mut().enumerate() {
                let (b, c) = (j / COLS, j % COLS);
                *v = self.data[(b * self.groups + g) * size + c * per + t];
            }
        }
        QuantRows {
            rows: self.k,
            cols: self.n,
            q,
            scale: self.scale.clone(),
        }
    }

    /// The packed transpose of `w` (`[r, c]`, one scale per row), so that
    /// [`PackedI8::matmul`] computes `w · x` (one output per row of `w`):
    /// `k = c`, `n = r`, the row scales are 1 and `w`'s row scales become
    /// the column scales. Activations are 16-bit.
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
        let rows = self.rows();
        let mut out = vec![0f32; self.k * self.n];
        for ((o, q), s) in out
            .chunks_exact_mut(self.n.max(1))
            .zip(rows.q.chunks_exact(self.n.max(1)))
            .zip(&self.scale)
        {
            for (x, &v) in o.iter_mut().zip(q) {
                *x = f32::from(v) * s;
            }
            for (x, c) in o.iter_mut().zip(&self.col_scale) {
                *x *= c;
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
        let (a, step, zero) = self.quantize(x, m);
        // Rows are split between threads (each reads the whole matrix);
        // each task sums one block of 64 columns at a time into a small
        // tile and scales it straight into its rows of `y`.
        let threads = if m * self.k * self.n >= PAR_MIN {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let rows = m.div_ceil(threads).div_ceil(4).max(1) * 4;
        let size = self.groups * COLS * self.act.per_lane();
        let run = |(c, ys): (usize, &mut [f32])| {
            let r0 = c * rows;
            let count = ys.len() / n;
            let a = &a[r0 * self.groups..(r0 + count) * self.groups];
            let mut tile = vec![0i32; count * COLS];
            for (b, w) in self.data.chunks_exact(size).enumerate() {
                tile.fill(0);
                block(self.act, a, self.groups, w, &mut tile);
                let sums = self.col_sum.get(b * COLS..).unwrap_or(&[]);
                for (((yr, t), &st), &z) in ys
                    .chunks_exact_mut(n)
                    .zip(tile.chunks_exact(COLS))
                    .zip(&step[r0..])
                    .zip(&zero[r0..])
                {
                    let cols = &mut yr[b * COLS..((b + 1) * COLS).min(self.n)];
                    if z == 0 {
                        for (o, &v) in cols.iter_mut().zip(t) {
                            *o = st * v as f32;
                        }
                    } else {
                        // The zero point's share, `z · Σ q`, is exact in
                        // i32 (`z ≤ 255`, and the 8-bit path bounds `k`).
                        for ((o, &v), &cs) in cols.iter_mut().zip(t).zip(sums) {
                            *o = st * v.wrapping_sub(z * cs) as f32;
                        }
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
    /// (`k` rounded up to whole groups; padding is 0), its step `a` and
    /// its zero point `z` (0 for 16-bit activations): 2 i16 or 4 u8 per
    /// i32. A row that is all zero, or not finite, gets step 0.
    fn quantize(&self, x: &[f32], m: usize) -> (Vec<i32>, Vec<f32>, Vec<i32>) {
        let kp = self.groups * self.act.per_lane();
        let mut a = vec![0i32; m * self.groups];
        let mut step = vec![0f32; m];
        let mut zero = vec![0i32; m];
        let rows = x.chunks_exact(self.k.max(1)).zip(&mut step).zip(&mut zero);
        match self.act {
            Activations::I16 => {
                // Pairs of i16 in one i32 each (element `2g` in the low
                // half on little-endian targets, as `vpdpwssd` reads them),
                // written through an i16 view of the same buffer.
                let a16: &mut [i16] = bytemuck::cast_slice_mut(&mut a);
                for (((xr, st), _), ar) in rows.zip(a16.chunks_exact_mut(kp.max(1))) {
                    *st = pulp::Arch::new().dispatch(QuantizeRow {
                        x: xr,
                        scale: &self.scale,
                        limit: self.limit,
                        out: ar,
                    });
                }
            }
            Activations::U8 => {
                // Four u8 in one i32 each, element `4g` in the low byte.
                let a8: &mut [u8] = bytemuck::cast_slice_mut(&mut a);
                for (((xr, st), z), ar) in rows.zip(a8.chunks_exact_mut(kp.max(1))) {
                    (*st, *z) = pulp::Arch::new().dispatch(QuantizeRowU8 {
                        x: xr,
                        scale: &self.scale,
                        out: ar,
                    });
                }
            }
        }
        (a, step, zero)
    }
}

/// Round half to even by adding 1.5 · 2^23: for |t| < 2^22 the sum's last
/// mantissa bits are the rounded integer, read off its bit pattern
/// (`round_ties_even` and float-to-int casts keep loops scalar).
const MAGIC: f32 = 12_582_912.0;

#[inline(always)]
fn round_magic(t: f32) -> i32 {
    ((t + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// One row of activations with the row scales folded in, as asymmetric
/// 8-bit integers; returns the step and the zero point (0 and 0 for a row
/// that is all zero or not finite, which then stays all 0).
struct QuantizeRowU8<'a> {
    x: &'a [f32],
    scale: &'a [f32],
    out: &'a mut [u8],
}

impl pulp::WithSimd for QuantizeRowU8<'_> {
    type Output = (f32, i32);
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> (f32, i32) {
        // Sixteen running minima and maxima, so that the loop vectorises;
        // both start at 0 (the range holds 0, so 0 is exact), and a NaN
        // fails both comparisons.
        let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
        let (xc, sc) = (self.x.chunks_exact(16), self.scale.chunks_exact(16));
        for (v, s) in xc.remainder().iter().zip(sc.remainder()) {
            let t = v * s;
            if t < lo[0] {
                lo[0] = t;
            }
            if t > hi[0] {
                hi[0] = t;
            }
        }
        for (xr, sr) in xc.zip(sc) {
            for (((l, h), v), s) in lo.iter_mut().zip(hi.iter_mut()).zip(xr).zip(sr) {
                let t = v * s;
                if t < *l {
                    *l = t;
                }
                if t > *h {
                    *h = t;
                }
            }
        }
        let lo = lo.iter().copied().fold(0f32, f32::min);
        let hi = hi.iter().copied().fold(0f32, f32::max);
        let span = hi - lo;
        if !(span > 0.0 && span.is_finite()) {
            self.out.fill(0);
            return (0.0, 0);
        }
        let step = span / 255.0;
        let inv = 255.0 / span;
        let z = round_magic(-lo * inv).clamp(0, 255);
        let zf = z as f32;
        // `u = round(x'/a + z)`, clamped to 0..=255 against rounding at
        // the edges; a NaN element becomes the zero point (the value 0).
        for ((o, v), s) in self.out.iter_mut().zip(self.x).zip(self.scale) {
            let t = (v * s * inv + zf).clamp(0.0, 255.0);
            let t = if t.is_nan() { zf } else { t };
            *o = round_magic(t) as u8;
        }
        (step, z)
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
        // Half to even ([`round_magic`]). The clamp keeps `t` in
        // -limit..=limit against rounding at the edge; a NaN element
        // becomes 0.
        for ((o, v), s) in self.out.iter_mut().zip(self.x).zip(self.scale) {
            let t = (v * s * inv).clamp(-lim, lim);
            let t = if t.is_nan() { 0.0 } else { t };
            *o = round_magic(t) as i16;
        }
        amax / lim
    }
}

/// `out[r][c] = Σ_i a[r][i] · w[i][c]` for the rows of `a` (each `groups`
/// i32 of packed activations of width `act`, see [`PackedI8::quantize`])
/// and one packed block `w` (`out` is `[m, COLS]`).
fn block(act: Activations, a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if vnni::available() {
        vnni::block(act, a, groups, w, out);
        return;
    }
    pulp::Arch::new().dispatch(Portable {
        act,
        a,
        groups,
        w,
        out,
    });
}

/// The integer product in plain loops (any CPU; the compiler vectorises
/// it for the instruction set `dispatch` picks).
struct Portable<'a> {
    act: Activations,
    a: &'a [i32],
    groups: usize,
    w: &'a [i8],
    out: &'a mut [i32],
}

impl pulp::WithSimd for Portable<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let per = self.act.per_lane();
        for (ar, orow) in self
            .a
            .chunks_exact(self.groups.max(1))
            .zip(self.out.chunks_exact_mut(COLS))
        {
            for (&x, wg) in ar.iter().zip(self.w.chunks_exact(COLS * per)) {
                // The lane's activations, as `vpdpwssd` (two i16) or
                // `vpdpbusd` (four u8) read them.
                let bytes = x.to_le_bytes();
                let u: [i32; 4] = match self.act {
                    Activations::I16 => [
                        i32::from(i16::from_le_bytes([bytes[0], bytes[1]])),
                        i32::from(i16::from_le_bytes([bytes[2], bytes[3]])),
                        0,
                        0,
                    ],
                    Activations::U8 => bytes.map(i32::from),
                };
                for (o, wc) in orow.iter_mut().zip(wg.chunks_exact(per)) {
                    // The bounds on `u` keep every sum inside i32; wrapping
                    // is the instructions' own arithmetic.
                    for (&ui, &wi) in u.iter().zip(wc) {
                        *o = o.wrapping_add(ui * i32::from(wi));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm512_cvtepi8_epi16, _mm512_dpbusd_epi32, _mm512_dpwssd_epi32,
        _mm512_set1_epi32, _mm512_setzero_si512,
    };

    use super::{Activations, COLS, LANES};

    /// Bytes of one group of a 16-bit block (64 columns × 2 rows).
    const GROUP16: usize = COLS * 2;
    /// Bytes of one group of an 8-bit block (64 columns × 4 rows).
    const GROUP8: usize = COLS * 4;

    /// Whether this CPU runs the VNNI kernels (std caches the answer).
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }

    /// [`super::block`] on `vpdpwssd` or `vpdpbusd`. Does nothing unless
    /// [`available`].
    pub(super) fn block(act: Activations, a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        if !available() {
            return;
        }
        // SAFETY: `block_vnni` needs AVX-512 F/BW/VNNI, which the run-time
        // check above just confirmed. It touches memory only through
        // bounds-checked slices (no raw pointers). This is the crate's one
        // way into these instructions, measured to matter in
        // crates/retort-model/README.md ("Integer products").
        unsafe { block_vnni(act, a, groups, w, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn block_vnni(act: Activations, a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        let groups = groups.max(1);
        let size = match act {
            Activations::I16 => GROUP16,
            Activations::U8 => GROUP8,
        };
        let w = &w[..w.len().min(groups * size)];
        let mut rows = a.chunks_exact(groups).zip(out.chunks_exact_mut(COLS));
        loop {
            match (rows.next(), rows.next(), rows.next(), rows.next()) {
                (Some((a0, o0)), Some((a1, o1)), Some((a2, o2)), Some((a3, o3))) => {
                    let acc = match act {
                        Activations::I16 => rows4_16([a0, a1, a2, a3], w),
                        Activations::U8 => rows4_8([a0, a1, a2, a3], w),
                    };
                    for (o, acc_r) in [o0, o1, o2, o3].into_iter().zip(&acc) {
                        store(o, acc_r);
                    }
                }
                (r0, r1, r2, _) => {
                    for (ar, o) in [r0, r1, r2].into_iter().flatten() {
                        let acc = match act {
                            Activations::I16 => row1_16(ar, w),
                            Activations::U8 => row1_8(ar, w),
                        };
                        store(o, &acc);
                    }
                    break;
                }
            }
        }
    }

    /// The block's 64 int8 columns of one group of two rows, widened to i16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn widen(wg: &[i8; GROUP16]) -> [__m512i; 4] {
        let v: [[i8; LANES * 2]; 4] = bytemuck::cast(*wg);
        let mut out = [_mm512_setzero_si512(); 4];
        for (o, x) in out.iter_mut().zip(v) {
            *o = _mm512_cvtepi8_epi16(bytemuck::cast::<[i8; 32], __m256i>(x));
        }
        out
    }

    /// Four rows of a 16-bit block in `4 × 4` accumulators; each group's
    /// weights are widened once for the four rows, and each row's i16 pair
    /// is broadcast to every lane.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn rows4_16(a: [&[i32]; 4], w: &[i8]) -> [[__m512i; 4]; 4] {
        let mut acc = [[_mm512_setzero_si512(); 4]; 4];
        let groups = w
            .chunks_exact(GROUP16)
            .zip(a[0])
            .zip(a[1])
            .zip(a[2])
            .zip(a[3]);
        for ((((wg, &x0), &x1), &x2), &x3) in groups {
            let Ok(wg) = <&[i8; GROUP16]>::try_from(wg) else {
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

    /// Four rows of an 8-bit block: each row's four u8 are broadcast to
    /// every lane and multiplied with the four int8 rows of each column.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn rows4_8(a: [&[i32]; 4], w: &[i8]) -> [[__m512i; 4]; 4] {
        let mut acc = [[_mm512_setzero_si512(); 4]; 4];
        let groups = w
            .chunks_exact(GROUP8)
            .zip(a[0])
            .zip(a[1])
            .zip(a[2])
            .zip(a[3]);
        for ((((wg, &x0), &x1), &x2), &x3) in groups {
            let Ok(wg) = <&[i8; GROUP8]>::try_from(wg) else {
                continue;
            };
            let wv: [__m512i; 4] = bytemuck::cast(*wg);
            for (acc_r, x) in acc.iter_mut().zip([x0, x1, x2, x3]) {
                let b = _mm512_set1_epi32(x);
                for (s, v) in acc_r.iter_mut().zip(&wv) {
                    *s = _mm512_dpbusd_epi32(*s, b, *v);
                }
            }
        }
        acc
    }

    /// One row of a 16-bit block (the rows left over after groups of four).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn row1_16(a: &[i32], w: &[i8]) -> [__m512i; 4] {
        let mut acc = [_mm512_setzero_si512(); 4];
        for (wg, &x) in w.chunks_exact(GROUP16).zip(a) {
            let Ok(wg) = <&[i8; GROUP16]>::try_from(wg) else {
                continue;
            };
            let b = _mm512_set1_epi32(x);
            for (s, v) in acc.iter_mut().zip(&widen(wg)) {
                *s = _mm512_dpwssd_epi32(*s, b, *v);
            }
        }
        acc
    }

    /// One row of an 8-bit block.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn row1_8(a: &[i32], w: &[i8]) -> [__m512i; 4] {
        let mut acc = [_mm512_setzero_si512(); 4];
        for (wg, &x) in w.chunks_exact(GROUP8).zip(a) {
            let Ok(wg) = <&[i8; GROUP8]>::try_from(wg) else {
                continue;
            };
            let b = _mm512_set1_epi32(x);
            let wv: [__m512i; 4] = bytemuck::cast(*wg);
            for (s, v) in acc.iter_mut().zip(&wv) {
                *s = _mm512_dpbusd_epi32(*s, b, *v);
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

    const BOTH: [Activations; 2] = [Activations::I16, Activations::U8];

    /// The quantized activations one per element (`[m, kp]`), with each
    /// row's step and zero point.
    fn levels(p: &PackedI8, x: &[f32], m: usize) -> (Vec<i64>, Vec<f32>, Vec<i32>) {
        let (a, step, zero) = p.quantize(x, m);
        let u = match p.act {
            Activations::I16 => bytemuck::cast_slice::<i32, i16>(&a)
                .iter()
                .map(|&v| i64::from(v))
                .collect(),
            Activations::U8 => bytemuck::cast_slice::<i32, u8>(&a)
                .iter()
                .map(|&v| i64::from(v))
                .collect(),
        };
        (u, step, zero)
    }

    /// The exact integer sums the product must give, from the same
    /// quantized activations.
    fn reference(p: &PackedI8, w: &QuantRows, x: &[f32], m: usize) -> Vec<f32> {
        let (u, step, zero) = levels(p, x, m);
        let kp = p.groups * p.act.per_lane();
        let mut y = vec![0f32; m * w.cols];
        for r in 0..m {
            for j in 0..w.cols {
                let mut s: i64 = 0;
                for i in 0..w.rows {
                    let v = u[r * kp + i] - i64::from(zero[r]);
                    s += v * i64::from(w.q[i * w.cols + j]);
                }
                y[r * w.cols + j] = step[r] * s as f32;
            }
        }
        y
    }

    #[test]
    fn packing_keeps_the_values() {
        let w = matrix(13, 70, 1);
        for act in BOTH {
            let p = PackedI8::with_activations(&w, act);
            assert_eq!(p.activations(), act);
            assert_eq!(p.dequantize(), w.dequantize());
            let back = p.rows();
            assert_eq!((back.q, back.scale), (w.q.clone(), w.scale.clone()));
        }
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
            let x = activations(m, k);
            for act in BOTH {
                let p = PackedI8::with_activations(&w, act);
                let want = reference(&p, &w, &x, m);
                assert_eq!(p.matmul(&x, m), want, "{m}x{k}x{n} {act:?}");
            }
        }
    }

    #[test]
    fn portable_and_vector_kernels_agree() {
        let w = matrix(96, 128, 5);
        let x = activations(6, 96);
        for act in BOTH {
            let p = PackedI8::with_activations(&w, act);
            let (a, _, _) = p.quantize(&x, 6);
            let wb = &p.data[..p.groups * COLS * act.per_lane()];
            let mut portable = vec![0i32; 6 * COLS];
            pulp::Arch::new().dispatch(Portable {
                act,
                a: &a,
                groups: p.groups,
                w: wb,
                out: &mut portable,
            });
            let mut any = vec![0i32; 6 * COLS];
            block(act, &a, p.groups, wb, &mut any);
            assert_eq!(portable, any, "{act:?}");
        }
    }

    #[test]
    fn products_are_close_to_f32() {
        let (m, k, n) = (5, 384, 96);
        let w = matrix(k, n, 9);
        let x = activations(m, k);
        let wf = w.dequantize();
        for act in BOTH {
            let p = PackedI8::with_activations(&w, act);
            let y = p.matmul(&x, m);
            let (_, step, _) = p.quantize(&x, m);
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
            // Both signs of peak: 8-bit rows then sit at 255 with zero
            // point 0, or at 0 with zero point 255.
            for (act, peak) in [
                (Activations::I16, 1.5f32),
                (Activations::U8, 1.5),
                (Activations::U8, -1.5),
            ] {
                let p = PackedI8::with_activations(&w, act);
                let x = vec![peak; 2 * k];
                let y = p.matmul(&x, 2);
                assert_eq!(y, reference(&p, &w, &x, 2), "k={k} {act:?}");
                let want = peak * 127.0 * k as f32;
                assert!(
                    (y[1] - want).abs() < 1e-3 * want.abs(),
                    "k={k} {act:?}: {} vs {want}",
                    y[1]
                );
                assert!(
                    (y[0] + want).abs() < 1e-3 * want.abs(),
                    "k={k} {act:?}: {} vs -{want}",
                    y[0]
                );
            }
        }
    }

    #[test]
    fn eight_bit_rows_span_their_range_and_hold_zero_exactly() {
        let k = 6;
        let w = QuantRows {
            rows: k,
            cols: 1,
            q: vec![1; k],
            scale: vec![1.0; k],
        };
        let p = PackedI8::with_activations(&w, Activations::U8);
        // 255 steps from -1 to 4: a step of 1/51, zero point 51.
        let x = [-1.0, 4.0, 0.0, 2.0, 1.0 / 102.0, f32::NAN];
        let (u, step, zero) = levels(&p, &x, 1);
        assert_eq!((step[0], zero[0]), (5.0 / 255.0, 51));
        // 1/102 is half a step above 0 and rounds to the even level 52
        // (`round_magic` of 51.5): exact halves go to even.
        assert_eq!(&u[..k], &[0, 255, 51, 153, 52, 51]);
        // A row of one sign still holds 0 (the range is widened to it).
        let (u, step, zero) = levels(&p, &[3.0, 1.5, 0.0, 3.0, 0.75, 0.0], 1);
        assert_eq!((step[0], zero[0]), (3.0 / 255.0, 0));
        assert_eq!(&u[..k], &[255, 128, 0, 255, 64, 0]);
    }

    #[test]
    fn eight_bit_sums_stay_within_half_a_step_of_f32() {
        // GELU-like rows: mostly small and skewed, a few large.
        let (m, k, n) = (7, 1536, 70);
        let w = matrix(k, n, 11);
        let wf = w.dequantize();
        let x: Vec<f32> = (0..m * k)
            .map(|i| {
                let v = ((i * 7919 % 1000) as f32 / 1000.0 - 0.1) * 0.3;
                if i % 97 == 0 { v * 40.0 } else { v }
            })
            .collect();
        let p = PackedI8::with_activations(&w, Activations::U8);
        let y = p.matmul(&x, m);
        let (_, step, _) = p.quantize(&x, m);
        for r in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * wf[i * n + j]).sum();
                let bound: f32 = (0..k)
                    .map(|i| 0.5 * step[r] * f32::from(w.q[i * n + j]).abs())
                    .sum();
                let err = (y[r * n + j] - exact).abs();
                assert!(
                    err <= bound * 1.01 + 1e-3,
                    "{r},{j}: {} vs {exact}",
                    y[r * n + j]
                );
            }
        }
    }

    #[test]
    fn transposed_products_are_matrix_vector_products() {
        let w = matrix(70, 13, 4);
        let p = PackedI8::transposed(&w);
        let wf = w.dequantize();
        let x = activations(2, 13);
        let y = p.matmul(&x, 2);
        let (_, step, _) = p.quantize(&x, 2);
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
        let (a, step, _) = p.quantize(&x, 1);
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
            for act in BOTH {
                let p = PackedI8::with_activations(&w, act);
                assert_eq!(p.matmul(&vec![1.0; 3 * k], 3), vec![0.0; 3 * n]);
                assert!(p.dequantize().is_empty());
            }
        }
    }

    #[test]
    fn zero_and_non_finite_rows_give_zeros() {
        let w = matrix(8, 16, 3);
        let mut x = vec![0f32; 3 * 8];
        x[8] = f32::INFINITY;
        x[16] = f32::NAN;
        for act in BOTH {
            let p = PackedI8::with_activations(&w, act);
            let y = p.matmul(&x, 3);
            assert!(y[..16].iter().all(|&v| v == 0.0), "{act:?}");
            assert!(y[16..32].iter().all(|&v| v == 0.0), "{act:?}");
            assert!(y.iter().all(|v| v.is_finite()), "{act:?}");
        }
    }
}
