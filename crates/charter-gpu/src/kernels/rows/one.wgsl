// Where a matrix product finds the weights of a row: every row in the one format
// composed before this file, `p.row_bytes` apart.
//
// Composed after a format file, before matmul.wgsl or matmul_tiled.wgsl, which call
// `weight8(row, u)`: the u-th group of eight values of a row.

fn weight8(row: u32, u: u32) -> Eight {
    let per_block = BLOCK_VALUES / 8u;
    return dequant8(row * p.row_bytes + (u / per_block) * BLOCK_BYTES, u % per_block);
}
