// Where a matrix product finds the weights of a row of a stack in two formats (a
// Q4_K_M file's q and k in Q4_K above its v in Q6_K): rows before `p.second` in the
// first format composed (`dequant8`), `p.row_bytes` apart; the rest in the second, whose
// names kernels.rs suffixes with `_b` (`dequant8_b`), `p.row_bytes_b` apart from byte
// `p.second_at` on. Each row is read exactly as a stack of one format reads it.
//
// Composed after both format files, before matmul.wgsl or matmul_tiled.wgsl, which
// call `weight8(row, u)`.

fn weight8(row: u32, u: u32) -> Eight {
    if (row < p.second) {
        let per_block = BLOCK_VALUES / 8u;
        return dequant8(row * p.row_bytes + (u / per_block) * BLOCK_BYTES, u % per_block);
    }
    let per_block = BLOCK_VALUES_B / 8u;
    return dequant8_b(p.second_at + (row - p.second) * p.row_bytes_b + (u / per_block) * BLOCK_BYTES_B, u % per_block);
}
