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
//! - **8-bit**, asymmetric, per group of [`U8_GROUP`] (256) input
//!   channels: each group of a row spans `[min, max]` (widened to hold 0)
//!   in 255 steps, `u = round(x'/a_g + z_g)` in `0..=255` with an integer
//!   zero point `z_g`, and `y[j] = Σ_g a_g · Σ_{i in g} u[i] q[i][j] −
//!   Σ_g a_g z_g · Σ_{i in g} q[i][j]`, with the groups' column sums kept
//!   from packing. A group's integer sum is exact in f32, and every kernel
//!   adds the groups in the same order, so answers still do not depend on
//!   the CPU. Groups keep one large activation from coarsening the whole
//!   row (one step per row cost BFCL answers; per group of 256 it is
//!   within a few answers either way, see crates/retort-model/README.md).
//!   The integer part runs on `vpdpbusd` (64 multiply-adds of u8 × i8 per
//!   instruction: twice the 16-bit rate, and the weights need no
//!   widening). The model config chooses which matrices use it
//!   (`eight_bit_activations`).
//!
//! On AVX2 CPUs without VNNI the 16-bit product runs on `vpmaddwd` (8-bit
//! activations have no AVX2 kernel); elsewhere a portable loop computes
//! the same sums.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::net::QuantRows;

/// i32 lanes of one 512-bit vector.
const LANES: usize = 16;
/// Columns of one packed block (four vectors).
const COLS: usize = 4 * LANES;
/// Products smaller than this many multiply-adds stay on one thread.
const PAR_MIN: usize = 1 << 20;
/// Input channels that share one step and zero point with 8-bit
/// activations (a group's integer sum, at most 256 · 255 · 127, is exact
/// in f32).
pub const U8_GROUP: usize = 256;
/// Four-row lanes of one 8-bit group.
const QUADS_PER_GROUP: usize = U8_GROUP / 4;

/// Whether this CPU has the 8-bit kernel (`vpdpbusd`, AVX-512 VNNI).
/// Elsewhere 8-bit activations run a portable loop no faster than the
/// 16-bit kernels, so a model keeps its products 16-bit there
/// (`ModelConfig::eight_bit_activations`).
pub fn eight_bit_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        vnni::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

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
    /// `Σ_{i in group g} q[i][j]`, `[groups of U8_GROUP rows][n]`, for
    /// 8-bit activations' zero points (empty for 16-bit).
    col_sum: Vec<f32>,
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
        let ng = if act == Activations::U8 {
            k.div_ceil(U8_GROUP)
        } else {
            0
        };
        let mut col_sum = vec![0f32; ng * n];
        for (i, row) in w.q.chunks_exact(n.max(1)).take(k).enumerate() {
            let (g, t) = (i / per, i % per);
            for (j, &v) in row.iter().enumerate() {
                let (b, c) = (j / COLS, j % COLS);
                data[(b * groups + g) * size + c * per + t] = v;
            }
            let g8 = (i / U8_GROUP) * n;
            for (s, &v) in col_sum.iter_mut().skip(g8).zip(row) {
                *s += f32::from(v);
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
        let ng = self.k.div_ceil(U8_GROUP);
        let run = |(c, ys): (usize, &mut [f32])| {
            let r0 = c * rows;
            let count = ys.len() / n;
            let a = &a[r0 * self.groups..(r0 + count) * self.groups];
            match self.act {
                Activations::I16 => {
                    let mut tile = vec![0i32; count * COLS];
                    for (b, w) in self.data.chunks_exact(size).enumerate() {
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
                            self.scale_columns(b, cols);
                        }
                    }
                }
                Activations::U8 => {
                    let steps = &step[r0 * ng..(r0 + count) * ng];
                    let shifts = &zero[r0 * ng..(r0 + count) * ng];
                    // The zero points' share of each output,
                    // Σ_g a_g z_g Σ q, group by group.
                    let mut corr = vec![0f32; count * self.n];
                    pulp::Arch::new().dispatch(Shifts {
                        shifts,
                        ng,
                        col_sum: &self.col_sum,
                        n: self.n,
                        out: &mut corr,
                    });
                    let mut tile = vec![0f32; count * COLS];
                    for (b, w) in self.data.chunks_exact(size).enumerate() {
                        tile.fill(0.0);
                        block_u8(a, self.groups, w, steps, ng, &mut tile);
                        for ((yr, t), cr) in ys
                            .chunks_exact_mut(n)
                            .zip(tile.chunks_exact(COLS))
                            .zip(corr.chunks_exact(n))
                        {
                            let end = ((b + 1) * COLS).min(self.n);
                            let cols = &mut yr[b * COLS..end];
                            for ((o, &v), &c) in cols.iter_mut().zip(t).zip(&cr[b * COLS..end]) {
                                *o = v - c;
                            }
                            self.scale_columns(b, cols);
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

    /// Apply the column scales (if any) to block `b`'s columns of a row.
    #[inline]
    fn scale_columns(&self, b: usize, cols: &mut [f32]) {
        if let Some(cs) = self.col_scale.get(b * COLS..b * COLS + cols.len()) {
            for (o, c) in cols.iter_mut().zip(cs) {
                *o *= c;
            }
        }
    }

    /// Each row of `x` with the row scales folded in, as integers `u` (`k`
    /// rounded up to whole lanes; padding is 0): 2 i16 or 4 u8 per i32.
    /// 16-bit: one step per row, and no shifts. 8-bit: per row and group
    /// of [`U8_GROUP`] channels a step `a` and the zero point's shift
    /// `a · z` (row-major, `[m][groups]`). A row or group that is all
    /// zero, or not finite, gets step 0.
    fn quantize(&self, x: &[f32], m: usize) -> (Vec<i32>, Vec<f32>, Vec<f32>) {
        let kp = self.groups * self.act.per_lane();
        let mut a = vec![0i32; m * self.groups];
        let rows = x.chunks_exact(self.k.max(1));
        match self.act {
            Activations::I16 => {
                let mut step = vec![0f32; m];
                // Pairs of i16 in one i32 each (element `2g` in the low
                // half on little-endian targets, as `vpdpwssd` reads them),
                // written through an i16 view of the same buffer.
                let a16: &mut [i16] = bytemuck::cast_slice_mut(&mut a);
                for ((xr, st), ar) in rows.zip(&mut step).zip(a16.chunks_exact_mut(kp.max(1))) {
                    *st = pulp::Arch::new().dispatch(QuantizeRow {
                        x: xr,
                        scale: &self.scale,
                        limit: self.limit,
                        out: ar,
                    });
                }
                (a, step, Vec::new())
            }
            Activations::U8 => {
                let ng = self.k.div_ceil(U8_GROUP);
                let mut step = vec![0f32; m * ng];
                let mut shift = vec![0f32; m * ng];
                // Four u8 in one i32 each, element `4g` in the low byte.
                let a8: &mut [u8] = bytemuck::cast_slice_mut(&mut a);
                let per_row = step
                    .chunks_exact_mut(ng.max(1))
                    .zip(shift.chunks_exact_mut(ng.max(1)));
                let arch = pulp::Arch::new();
                for ((xr, (st, sh)), ar) in rows.zip(per_row).zip(a8.chunks_exact_mut(kp.max(1))) {
                    arch.dispatch(QuantizeRowU8 {
                        x: xr,
                        scale: &self.scale,
                        out: ar,
                        step: st,
                        shift: sh,
                    });
                }
                (a, step, shift)
            }
        }
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
/// 8-bit integers per group of [`U8_GROUP`] channels; writes each group's
/// step and zero-point shift `a · z` (0 and 0 for a group that is all zero
/// or not finite, which then stays all 0).
struct QuantizeRowU8<'a> {
    x: &'a [f32],
    scale: &'a [f32],
    out: &'a mut [u8],
    step: &'a mut [f32],
    shift: &'a mut [f32],
}

impl pulp::WithSimd for QuantizeRowU8<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let groups = self
            .x
            .chunks(U8_GROUP)
            .zip(self.scale.chunks(U8_GROUP))
            .zip(self.out.chunks_mut(U8_GROUP))
            .zip(self.step.iter_mut().zip(self.shift.iter_mut()));
        for (((x, scale), out), (st, sh)) in groups {
            let (step, z) = quantize_group_u8(x, scale, out);
            (*st, *sh) = (step, step * z as f32);
        }
    }
}

/// [`QuantizeRowU8`] for one group: returns its step and zero point.
#[inline(always)]
fn quantize_group_u8(x: &[f32], scale: &[f32], out: &mut [u8]) -> (f32, i32) {
    // Sixteen running minima and maxima, so that the loop vectorises; both
    // start at 0 (the range holds 0, so 0 is exact), and a NaN fails both
    // comparisons.
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let (xc, sc) = (x.chunks_exact(16), scale.chunks_exact(16));
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
        out.fill(0);
        return (0.0, 0);
    }
    let step = span / 255.0;
    let inv = 255.0 / span;
    let z = round_magic(-lo * inv).clamp(0, 255);
    let zf = z as f32;
    // `u = round(x'/a + z)`, clamped to 0..=255 against rounding at the
    // edges; a NaN element becomes the zero point (the value 0).
    for ((o, v), s) in out.iter_mut().zip(x).zip(scale) {
        let t = (v * s * inv + zf).clamp(0.0, 255.0);
        let t = if t.is_nan() { zf } else { t };
        *o = round_magic(t) as u8;
    }
    (step, z)
}

/// `out[r][j] = Σ_g shifts[r][g] · col_sum[g][j]`, group by group (the
/// zero points' share of 8-bit products).
struct Shifts<'a> {
    shifts: &'a [f32],
    ng: usize,
    col_sum: &'a [f32],
    n: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Shifts<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let rows = self
            .shifts
            .chunks_exact(self.ng.max(1))
            .zip(self.out.chunks_exact_mut(self.n.max(1)));
        for (sh, o) in rows {
            for (&f, cs) in sh.iter().zip(self.col_sum.chunks_exact(self.n.max(1))) {
                for (c, &v) in o.iter_mut().zip(cs) {
                    *c += f * v;
                }
            }
        }
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
/// i16 pairs, see [`PackedI8::quantize`]) and one packed 16-bit block `w`
/// (`out` is `[m, COLS]`).
fn block(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni::available() {
            vnni::block(a, groups, w, out);
            return;
        }
        if avx2::available() {
            avx2::block(a, groups, w, out);
            return;
        }
    }
    pulp::Arch::new().dispatch(Portable { a, groups, w, out });
}

/// `out[r][c] += Σ_g step[r][g] · Σ_{i in g} u[r][i] · w[i][c]` for the
/// rows of `a` (each `quads` i32 of four u8, see [`PackedI8::quantize`]),
/// their steps (`ng` per row) and one packed 8-bit block `w` (`out` is
/// `[m, COLS]`). Each group's integer sum is exact; the groups are added
/// in order, as `v as f32 * step` then `+`, by every kernel alike.
fn block_u8(a: &[i32], quads: usize, w: &[i8], steps: &[f32], ng: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if vnni::available() {
        vnni::block_u8(a, quads, w, steps, ng, out);
        return;
    }
    pulp::Arch::new().dispatch(PortableU8 {
        a,
        quads,
        w,
        steps,
        ng,
        out,
    });
}

/// The 16-bit integer product in plain loops (any CPU; the compiler
/// vectorises it for the instruction set `dispatch` picks).
struct Portable<'a> {
    a: &'a [i32],
    groups: usize,
    w: &'a [i8],
    out: &'a mut [i32],
}

impl pulp::WithSimd for Portable<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for (ar, orow) in self
            .a
            .chunks_exact(self.groups.max(1))
            .zip(self.out.chunks_exact_mut(COLS))
        {
            for (&x, wg) in ar.iter().zip(self.w.chunks_exact(COLS * 2)) {
                // The lane's i16 pair, as `vpdpwssd` reads it.
                let [b0, b1, b2, b3] = x.to_le_bytes();
                let (a0, a1) = (
                    i32::from(i16::from_le_bytes([b0, b1])),
                    i32::from(i16::from_le_bytes([b2, b3])),
                );
                for (o, w2) in orow.iter_mut().zip(wg.chunks_exact(2)) {
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

/// The 8-bit product in plain loops, with [`block_u8`]'s arithmetic.
struct PortableU8<'a> {
    a: &'a [i32],
    quads: usize,
    w: &'a [i8],
    steps: &'a [f32],
    ng: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for PortableU8<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let rows = self
            .a
            .chunks_exact(self.quads.max(1))
            .zip(self.steps.chunks_exact(self.ng.max(1)))
            .zip(self.out.chunks_exact_mut(COLS));
        for ((ar, st), orow) in rows {
            let groups = ar
                .chunks(QUADS_PER_GROUP)
                .zip(self.w.chunks(QUADS_PER_GROUP * COLS * 4))
                .zip(st);
            for ((aq, wq), &s) in groups {
                let mut acc = [0i32; COLS];
                for (&x, wg) in aq.iter().zip(wq.chunks_exact(COLS * 4)) {
                    let u = x.to_le_bytes().map(i32::from);
                    for (o, w4) in acc.iter_mut().zip(wg.chunks_exact(4)) {
                        for (&ui, &wi) in u.iter().zip(w4) {
                            *o = o.wrapping_add(ui * i32::from(wi));
                        }
                    }
                }
                for (o, &v) in orow.iter_mut().zip(&acc) {
                    *o += v as f32 * s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::{
        __m256i, __m512, __m512i, _mm512_add_ps, _mm512_cvtepi8_epi16, _mm512_cvtepi32_ps,
        _mm512_dpbusd_epi32, _mm512_dpwssd_epi32, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_setzero_si512,
    };

    use super::{COLS, LANES, QUADS_PER_GROUP};

    /// Bytes of one group of a 16-bit block (64 columns × 2 rows).
    const GROUP16: usize = COLS * 2;
    /// Bytes of one lane group of an 8-bit block (64 columns × 4 rows).
    const GROUP8: usize = COLS * 4;

    /// Whether this CPU runs the VNNI kernels (std caches the answer).
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
        // bounds-checked slices (no raw pointers). This and `block_u8` are
        // the crate's ways into these instructions, measured to matter in
        // crates/retort-model/README.md ("Integer products").
        unsafe { block_vnni(a, groups, w, out) }
    }

    /// [`super::block_u8`] on `vpdpbusd`. Does nothing unless
    /// [`available`].
    pub(super) fn block_u8(
        a: &[i32],
        quads: usize,
        w: &[i8],
        steps: &[f32],
        ng: usize,
        out: &mut [f32],
    ) {
        if !available() {
            return;
        }
        // SAFETY: as in `block`: the features were just checked, and only
        // bounds-checked slices are touched.
        unsafe { block_u8_vnni(a, quads, w, steps, ng, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn block_vnni(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        let groups = groups.max(1);
        let w = &w[..w.len().min(groups * GROUP16)];
        let mut rows = a.chunks_exact(groups).zip(out.chunks_exact_mut(COLS));
        loop {
            match (rows.next(), rows.next(), rows.next(), rows.next()) {
                (Some((a0, o0)), Some((a1, o1)), Some((a2, o2)), Some((a3, o3))) => {
                    let acc = rows4_16([a0, a1, a2, a3], w);
                    for (o, acc_r) in [o0, o1, o2, o3].into_iter().zip(&acc) {
                        store(o, acc_r);
                    }
                }
                (r0, r1, r2, _) => {
                    for (ar, o) in [r0, r1, r2].into_iter().flatten() {
                        store(o, &row1_16(ar, w));
                    }
                    break;
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn block_u8_vnni(a: &[i32], quads: usize, w: &[i8], steps: &[f32], ng: usize, out: &mut [f32]) {
        let (quads, ng) = (quads.max(1), ng.max(1));
        let w = &w[..w.len().min(quads * GROUP8)];
        let mut rows = a
            .chunks_exact(quads)
            .zip(steps.chunks_exact(ng))
            .zip(out.chunks_exact_mut(COLS));
        loop {
            match (rows.next(), rows.next(), rows.next(), rows.next()) {
                (
                    Some(((a0, s0), o0)),
                    Some(((a1, s1), o1)),
                    Some(((a2, s2), o2)),
                    Some(((a3, s3), o3)),
                ) => {
                    let rows = [a0, a1, a2, a3];
                    for (g, wg) in w.chunks(QUADS_PER_GROUP * GROUP8).enumerate() {
                        let (q0, q1) =
                            (g * QUADS_PER_GROUP, ((g + 1) * QUADS_PER_GROUP).min(quads));
                        if q0 >= q1 {
                            break;
                        }
                        let acc = rows4_8(rows.map(|r| &r[q0..q1]), wg);
                        for ((acc_r, o), st) in acc
                            .iter()
                            .zip([&mut *o0, &mut *o1, &mut *o2, &mut *o3])
                            .zip([s0, s1, s2, s3])
                        {
                            add_scaled(o, acc_r, st.get(g).copied().unwrap_or(0.0));
                        }
                    }
                }
                (r0, r1, r2, _) => {
                    for ((ar, st), o) in [r0, r1, r2].into_iter().flatten() {
                        for (g, wg) in w.chunks(QUADS_PER_GROUP * GROUP8).enumerate() {
                            let (q0, q1) =
                                (g * QUADS_PER_GROUP, ((g + 1) * QUADS_PER_GROUP).min(quads));
                            if q0 >= q1 {
                                break;
                            }
                            let acc = row1_8(&ar[q0..q1], wg);
                            add_scaled(o, &acc, st.get(g).copied().unwrap_or(0.0));
                        }
                    }
                    break;
                }
            }
        }
    }

    /// `o += acc · step` (the integer sums converted to f32 first).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn add_scaled(o: &mut [f32], acc: &[__m512i; 4], step: f32) {
        let sv = _mm512_set1_ps(step);
        for (s, oc) in acc.iter().zip(o.chunks_exact_mut(LANES)) {
            let Ok(oc) = <&mut [f32; LANES]>::try_from(oc) else {
                continue;
            };
            let prev: __m512 = bytemuck::cast(*oc);
            let v = _mm512_add_ps(prev, _mm512_mul_ps(_mm512_cvtepi32_ps(*s), sv));
            *oc = bytemuck::cast(v);
        }
    }

    /// Four rows of one 8-bit group in `4 × 4` accumulators: each row's
    /// four u8 are broadcast to every lane and multiplied with the four
    /// int8 rows of each column (the weights need no widening).
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

    /// One row of one 8-bit group.
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

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn store(o: &mut [i32], acc: &[__m512i; 4]) {
        for (o, s) in o.chunks_exact_mut(LANES).zip(acc) {
            o.copy_from_slice(&bytemuck::cast::<__m512i, [i32; LANES]>(*s));
        }
    }
}

/// The 16-bit product on AVX2 without VNNI (`vpmaddwd` then `vpaddd`:
/// 16 multiply-adds of i16 pairs per pair of instructions), for x86 CPUs
/// such as AMD's Zen 2 and 3, where the portable loop's 32-bit multiplies
/// are slow. Same sums as [`Portable`]: the bound on the activations keeps
/// every i16 pair's sum inside an i32, and additions wrap as `vpdpwssd`'s
/// do.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_add_epi32, _mm256_cvtepi8_epi16, _mm256_madd_epi16,
        _mm256_set1_epi32, _mm256_setzero_si256,
    };

    use super::COLS;

    /// Bytes of one group of a 16-bit block (64 columns × 2 rows).
    const GROUP16: usize = COLS * 2;
    /// Bytes of half a group (32 columns × 2 rows): the columns one pass
    /// keeps in registers.
    const HALF: usize = COLS;
    /// Columns of half a block.
    const HALF_COLS: usize = COLS / 2;
    /// i32 lanes of one 256-bit vector.
    const LANES8: usize = 8;

    /// Whether this CPU has AVX2 (std caches the answer).
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    /// [`super::block`] on `vpmaddwd`. Does nothing unless [`available`].
    pub(super) fn block(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        if !available() {
            return;
        }
        // SAFETY: `block_avx2` needs AVX2, which the run-time check above
        // just confirmed. It touches memory only through bounds-checked
        // slices (no raw pointers). Measured to matter in
        // crates/retort-model/README.md ("Integer products").
        unsafe { block_avx2(a, groups, w, out) }
    }

    #[target_feature(enable = "avx2")]
    fn block_avx2(a: &[i32], groups: usize, w: &[i8], out: &mut [i32]) {
        let groups = groups.max(1);
        let w = &w[..w.len().min(groups * GROUP16)];
        let mut rows = a.chunks_exact(groups).zip(out.chunks_exact_mut(COLS));
        loop {
            match (rows.next(), rows.next()) {
                (Some((a0, o0)), Some((a1, o1))) => {
                    for h in 0..2 {
                        let [acc0, acc1] = rows2_half([a0, a1], w, h);
                        store(&mut o0[h * HALF_COLS..], &acc0);
                        store(&mut o1[h * HALF_COLS..], &acc1);
                    }
                }
                (Some((a0, o0)), None) => {
                    for h in 0..2 {
                        store(&mut o0[h * HALF_COLS..], &row1_half(a0, w, h));
                    }
                    break;
                }
                _ => break,
            }
        }
    }

    /// Half `h` of a group's columns (32 int8 pairs), widened to i16.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn widen(half: &[i8; HALF]) -> [__m256i; 4] {
        let v: [[i8; 16]; 4] = bytemuck::cast(*half);
        let mut out = [_mm256_setzero_si256(); 4];
        for (o, x) in out.iter_mut().zip(v) {
            *o = _mm256_cvtepi8_epi16(bytemuck::cast::<[i8; 16], __m128i>(x));
        }
        out
    }

    /// Two rows of half `h` of a block in `2 × 4` accumulators; each
    /// group's weights are widened once for both rows.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn rows2_half(a: [&[i32]; 2], w: &[i8], h: usize) -> [[__m256i; 4]; 2] {
        let mut acc = [[_mm256_setzero_si256(); 4]; 2];
        let halves = w.chunks_exact(HALF).skip(h).step_by(2);
        for ((wh, &x0), &x1) in halves.zip(a[0]).zip(a[1]) {
            let Ok(wh) = <&[i8; HALF]>::try_from(wh) else {
                continue;
            };
            let wv = widen(wh);
            for (acc_r, x) in acc.iter_mut().zip([x0, x1]) {
                let b = _mm256_set1_epi32(x);
                for (s, v) in acc_r.iter_mut().zip(&wv) {
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(b, *v));
                }
            }
        }
        acc
    }

    /// One row of half `h` of a block (an odd row out).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn row1_half(a: &[i32], w: &[i8], h: usize) -> [__m256i; 4] {
        let mut acc = [_mm256_setzero_si256(); 4];
        let halves = w.chunks_exact(HALF).skip(h).step_by(2);
        for (wh, &x) in halves.zip(a) {
            let Ok(wh) = <&[i8; HALF]>::try_from(wh) else {
                continue;
            };
            let b = _mm256_set1_epi32(x);
            for (s, v) in acc.iter_mut().zip(&widen(wh)) {
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(b, *v));
            }
        }
        acc
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn store(o: &mut [i32], acc: &[__m256i; 4]) {
        for (o, s) in o.chunks_exact_mut(LANES8).zip(acc) {
            o.copy_from_slice(&bytemuck::cast::<__m256i, [i32; LANES8]>(*s));
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

    /// The quantized activations one per element (`[m, kp]`), with the
    /// steps and zero-point shifts (see [`PackedI8::quantize`]).
    fn levels(p: &PackedI8, x: &[f32], m: usize) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
        let (a, step, shift) = p.quantize(x, m);
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
        (u, step, shift)
    }

    /// The exact integer sums the product must give, from the same
    /// quantized activations, scaled back with the product's own float
    /// steps (8-bit: group by group, then the zero points' shift).
    fn reference(p: &PackedI8, w: &QuantRows, x: &[f32], m: usize) -> Vec<f32> {
        let (u, step, shift) = levels(p, x, m);
        let kp = p.groups * p.act.per_lane();
        let ng = w.rows.div_ceil(U8_GROUP);
        let mut y = vec![0f32; m * w.cols];
        for r in 0..m {
            for j in 0..w.cols {
                let sum = |i0: usize, i1: usize| -> i64 {
                    (i0..i1.min(w.rows))
                        .map(|i| u[r * kp + i] * i64::from(w.q[i * w.cols + j]))
                        .sum()
                };
                y[r * w.cols + j] = match p.act {
                    Activations::I16 => step[r] * sum(0, w.rows) as f32,
                    Activations::U8 => {
                        let mut out = 0f32;
                        for g in 0..ng {
                            let s = sum(g * U8_GROUP, (g + 1) * U8_GROUP);
                            out += s as f32 * step[r * ng + g];
                        }
                        let mut corr = 0f32;
                        for g in 0..ng {
                            let cs: i32 = (g * U8_GROUP..((g + 1) * U8_GROUP).min(w.rows))
                                .map(|i| i32::from(w.q[i * w.cols + j]))
                                .sum();
                            corr += shift[r * ng + g] * cs as f32;
                        }
                        out - corr
                    }
                };
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
        let k = 2 * U8_GROUP + 90;
        let w = matrix(k, 128, 5);
        // Seven rows: the vector kernels' groups of four and two, and the
        // rows left over.
        let x = activations(7, k);
        let p = PackedI8::new(&w);
        let (a, _, _) = p.quantize(&x, 7);
        let wb = &p.data[..p.groups * COLS * 2];
        let mut portable = vec![0i32; 7 * COLS];
        pulp::Arch::new().dispatch(Portable {
            a: &a,
            groups: p.groups,
            w: wb,
            out: &mut portable,
        });
        assert!(portable.iter().any(|&v| v != 0));
        let mut any = vec![0i32; 7 * COLS];
        block(&a, p.groups, wb, &mut any);
        assert_eq!(portable, any);
        // The AVX2 kernel, also on CPUs where `block` picks VNNI.
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let mut v = vec![0i32; 7 * COLS];
            avx2::block(&a, p.groups, wb, &mut v);
            assert_eq!(portable, v);
        }
        let x = activations(6, k);
        // 8-bit: three groups of channels, the last one partial.
        let p = PackedI8::with_activations(&w, Activations::U8);
        let (a, step, _) = p.quantize(&x, 6);
        let ng = k.div_ceil(U8_GROUP);
        let wb = &p.data[..p.groups * COLS * 4];
        let mut portable = vec![0f32; 6 * COLS];
        pulp::Arch::new().dispatch(PortableU8 {
            a: &a,
            quads: p.groups,
            w: wb,
            steps: &step,
            ng,
            out: &mut portable,
        });
        let mut any = vec![0f32; 6 * COLS];
        block_u8(&a, p.groups, wb, &step, ng, &mut any);
        assert_eq!(portable, any);
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
            let st = |r: usize, i: usize| match act {
                Activations::I16 => step[r],
                Activations::U8 => step[r * k.div_ceil(U8_GROUP) + i / U8_GROUP],
            };
            for r in 0..m {
                for j in 0..n {
                    let exact: f32 = (0..k).map(|i| x[r * k + i] * wf[i * n + j]).sum();
                    // Each activation is off by at most half a step.
                    let bound: f32 = (0..k)
                        .map(|i| 0.5 * st(r, i) * f32::from(w.q[i * n + j]).abs())
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
        let (u, step, shift) = levels(&p, &x, 1);
        assert_eq!((step[0], shift[0]), (5.0 / 255.0, 5.0 / 255.0 * 51.0));
        // 1/102 is half a step above 0 and rounds to the even level 52
        // (`round_magic` of 51.5): exact halves go to even.
        assert_eq!(&u[..k], &[0, 255, 51, 153, 52, 51]);
        // A row of one sign still holds 0 (the range is widened to it).
        let (u, step, shift) = levels(&p, &[3.0, 1.5, 0.0, 3.0, 0.75, 0.0], 1);
        assert_eq!((step[0], shift[0]), (3.0 / 255.0, 0.0));
        assert_eq!(&u[..k], &[255, 128, 0, 255, 64, 0]);
    }

    #[test]
    fn eight_bit_groups_have_their_own_steps() {
        // Two groups of channels: a large value in the second does not
        // coarsen the first.
        let k = 2 * U8_GROUP;
        let w = QuantRows {
            rows: k,
            cols: 1,
            q: vec![1; k],
            scale: vec![1.0; k],
        };
        let p = PackedI8::with_activations(&w, Activations::U8);
        let mut x = vec![0.01f32; k];
        x[0] = -0.01;
        x[U8_GROUP] = 100.0;
        let (u, step, shift) = levels(&p, &x, 1);
        assert_eq!(step, [0.02 / 255.0, 100.0 / 255.0]);
        assert_eq!(shift[1], 0.0);
        assert_eq!((u[0], u[1]), (0, 255));
        let y = p.matmul(&x, 1);
        let exact: f32 = x.iter().sum();
        let bound = 0.5 * 100.0 / 255.0 * U8_GROUP as f32 + 0.5 * 0.02 / 255.0 * U8_GROUP as f32;
        assert!((y[0] - exact).abs() < bound, "{} vs {exact}", y[0]);
        assert_eq!(y, reference(&p, &w, &x, 1));
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
        let ng = k.div_ceil(U8_GROUP);
        for r in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * wf[i * n + j]).sum();
                let bound: f32 = (0..k)
                    .map(|i| 0.5 * step[r * ng + i / U8_GROUP] * f32::from(w.q[i * n + j]).abs())
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
