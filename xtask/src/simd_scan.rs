//! Proof that a wasm module contains SIMD128 code.
//!
//! Compiling without `+simd128` still succeeds (the kernels fall back to
//! scalar code), so only the module itself can tell. This walks every function
//! body and counts the SIMD operators.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use wasmparser::{Operator, Parser, Payload};

#[derive(Default)]
pub struct SimdCounts {
    pub functions: usize,
    pub operators: usize,
    pub simd: usize,
    /// `f32x4.add/sub/mul` (+ relaxed madd): what the distance kernels compile to.
    pub f32x4_arithmetic: usize,
}

impl fmt::Display for SimdCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} functions, {} operators, {} SIMD128 operators ({} f32x4 arithmetic)",
            self.functions, self.operators, self.simd, self.f32x4_arithmetic
        )
    }
}

pub fn scan_file(path: &Path) -> anyhow::Result<SimdCounts> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    scan(&bytes).with_context(|| format!("parsing {}", path.display()))
}

pub fn scan(bytes: &[u8]) -> anyhow::Result<SimdCounts> {
    let mut counts = SimdCounts::default();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CodeSectionEntry(body) = payload? {
            counts.functions += 1;
            let mut ops = body.get_operators_reader()?;
            while !ops.eof() {
                let op = ops.read()?;
                counts.operators += 1;
                if matches!(
                    op,
                    Operator::F32x4Add
                        | Operator::F32x4Sub
                        | Operator::F32x4Mul
                        | Operator::F32x4RelaxedMadd
                ) {
                    counts.f32x4_arithmetic += 1;
                }
                if is_simd(&op) {
                    counts.simd += 1;
                }
            }
        }
    }
    Ok(counts)
}

fn is_simd(op: &Operator<'_>) -> bool {
    // Every SIMD128 operator's name starts with its vector shape.
    const SHAPES: [&str; 7] = ["V128", "I8x16", "I16x8", "I32x4", "I64x2", "F32x4", "F64x2"];
    let name = format!("{op:?}");
    SHAPES.iter().any(|shape| name.starts_with(shape))
}

#[cfg(test)]
mod tests {
    use super::scan;

    /// A module with one function `(f32x4.add (v128.const 0) (v128.const 0))`,
    /// hand-assembled, and the same module with a scalar `f32.add` instead.
    #[test]
    fn counts_simd_operators() {
        let header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        // type section: one func type () -> ()
        let types = [0x01, 0x04, 0x01, 0x60, 0x00, 0x00];
        let funcs = [0x03, 0x02, 0x01, 0x00];
        let v128_const = [0xfd, 0x0c].into_iter().chain([0u8; 16]);
        let mut body: Vec<u8> = vec![0x00]; // no locals
        body.extend(v128_const.clone());
        body.extend(v128_const);
        body.extend([0xfd, 0xe4, 0x01]); // f32x4.add
        body.extend([0x1a, 0x0b]); // drop, end
        let simd = module(&header, &types, &funcs, &body);
        let counts = scan(&simd).unwrap();
        assert_eq!(
            (counts.functions, counts.simd, counts.f32x4_arithmetic),
            (1, 3, 1)
        );

        let scalar_body = [0x00, 0x43, 0, 0, 0, 0, 0x43, 0, 0, 0, 0, 0x92, 0x1a, 0x0b]; // f32.add
        let counts = scan(&module(&header, &types, &funcs, &scalar_body)).unwrap();
        assert_eq!((counts.simd, counts.f32x4_arithmetic), (0, 0));
    }

    fn module(header: &[u8], types: &[u8], funcs: &[u8], body: &[u8]) -> Vec<u8> {
        let mut code = vec![0x01, body.len() as u8];
        code.extend(body);
        let mut out = header.to_vec();
        out.extend(types);
        out.extend(funcs);
        out.extend([0x0a, code.len() as u8]);
        out.extend(code);
        out
    }
}
