//! A strict reader for GGUF files held in memory.
//!
//! The browser hands Charter a model as one byte buffer, and that buffer may be
//! anything: a truncated download, a random file the user dropped, a crafted file.
//! So nothing here trusts a length, a count or an offset before checking it against
//! the bytes that are actually there. Every allocation is bounded by the size of the
//! input (a declared element needs at least one byte on disk), every tensor extent is
//! checked with overflow-safe arithmetic, and every failure is a [`GgufError`] that
//! says what is wrong and where, never a panic.
//!
//! Layout (GGUF v2/v3, little-endian): magic `GGUF`, `u32` version, `u64` tensor count,
//! `u64` metadata count, the metadata key/values, the tensor infos, padding to the
//! alignment, then the tensor data section. Tensor offsets are relative to that section.

use std::collections::BTreeMap;

pub use charter_kernels::Format;

/// The GGUF magic, `GGUF` read as a little-endian `u32`.
const MAGIC: u32 = 0x4655_4747;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Nested arrays are legal but never used by real models; a bound keeps recursion safe.
const MAX_ARRAY_DEPTH: usize = 4;
const MAX_DIMS: usize = 4;
const MAX_TENSOR_NAME: usize = 256;
/// Elements in one tensor; far above any model Charter can run, far below `usize` overflow.
const MAX_TENSOR_ELEMENTS: u64 = 1 << 40;

/// Why a buffer is not a GGUF file Charter can read.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum GgufError {
    /// The buffer is empty.
    #[error("the file is empty")]
    Empty,
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file (the first bytes are {found:02x?}, a GGUF file starts with \"GGUF\")")]
    BadMagic {
        /// The first bytes of the buffer.
        found: Vec<u8>,
    },
    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {0} (Charter reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    /// The buffer ends before a structure it declares.
    #[error("the file is truncated: {what} needs {needed} bytes at offset {offset}, but the file has {len} bytes")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The length of the buffer.
        len: u64,
    },
    /// A count, length or value that cannot be right.
    #[error("invalid GGUF header: {0}")]
    Invalid(String),
    /// A tensor stored in a type Charter has no kernel for.
    #[error("tensor {name} uses ggml type {type_id} ({type_name}), which Charter does not support")]
    UnsupportedTensorType {
        /// The tensor's name.
        name: String,
        /// The ggml type id.
        type_id: u32,
        /// The ggml type name, where known.
        type_name: &'static str,
    },
}

/// A parsed GGUF header detached from its buffer (see [`Gguf::detach`]).
#[derive(Debug, Clone)]
pub struct GgufHeader {
    version: u32,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    data_start: usize,
    len: usize,
}

impl GgufHeader {
    /// The header back on a buffer of the same length, where the tensor data has been
    /// rearranged in place but nothing else moved.
    pub fn attach(self, buffer: &[u8]) -> Result<Gguf<'_>, GgufError> {
        if buffer.len() != self.len {
            return Err(GgufError::Invalid(format!("a header of a {}-byte file on {} bytes", self.len, buffer.len())));
        }
        Ok(Gguf { version: self.version, metadata: self.metadata, tensors: self.tensors, data: &buffer[self.data_start..] })
    }

    /// Where each tensor's bytes lie in the buffer.
    pub fn tensor_ranges(&self) -> impl Iterator<Item = (&TensorInfo, std::ops::Range<usize>)> {
        self.tensors.iter().map(|t| {
            let start = self.data_start + t.offset as usize;
            (t, start..start + t.n_bytes as usize)
        })
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced, never trusted).
    String(String),
    /// An array of values of one type.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// The storage format of a ggml type id, or the name of a type Charter does not read.
fn format_from_id(id: u32) -> Result<Format, &'static str> {
    Ok(match id {
        0 => Format::F32,
        1 => Format::F16,
        2 => Format::Q4_0,
        3 => Format::Q4_1,
        6 => Format::Q5_0,
        7 => Format::Q5_1,
        8 => Format::Q8_0,
        10 => Format::Q2K,
        11 => Format::Q3K,
        12 => Format::Q4K,
        13 => Format::Q5K,
        14 => Format::Q6K,
        15 => Format::Q8K,
        30 => Format::BF16,
        4 | 5 => return Err("Q4_2/Q4_3, removed from ggml"),
        9 => return Err("Q8_1"),
        16 => return Err("IQ2_XXS"),
        17 => return Err("IQ2_XS"),
        18 => return Err("IQ3_XXS"),
        19 => return Err("IQ1_S"),
        20 => return Err("IQ4_NL"),
        21 => return Err("IQ3_S"),
        22 => return Err("IQ2_S"),
        23 => return Err("IQ4_XS"),
        24 => return Err("I8"),
        25 => return Err("I16"),
        26 => return Err("I32"),
        27 => return Err("I64"),
        28 => return Err("F64"),
        29 => return Err("IQ1_M"),
        31..=33 => return Err("Q4_0_4_4/Q4_0_4_8/Q4_0_8_8, repacked"),
        34 => return Err("TQ1_0"),
        35 => return Err("TQ2_0"),
        39 => return Err("MXFP4"),
        _ => return Err("unknown"),
    })
}


/// Where one tensor lies and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, such as `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one.
    pub dims: Vec<u64>,
    /// The storage type.
    pub ty: Format,
    /// Offset of the first byte inside the data section.
    pub offset: u64,
    /// Length in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed, validated GGUF file borrowing its tensor data from the input buffer.
#[derive(Debug)]
pub struct Gguf<'a> {
    /// The format version (2 or 3).
    pub version: u32,
    /// All metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    data: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parses and validates `bytes`. Tensor data is not copied.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        if bytes.is_empty() {
            return Err(GgufError::Empty);
        }
        let mut r = Reader { bytes, pos: 0 };
        if bytes.len() < 4 || r.u32("the magic")? != MAGIC {
            return Err(GgufError::BadMagic { found: bytes[..bytes.len().min(4)].to_vec() });
        }
        let version = r.u32("the version")?;
        if version != 2 && version != 3 {
            if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                return Err(GgufError::Invalid(
                    "the file is big-endian GGUF; Charter reads little-endian files".into(),
                ));
            }
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        // A key/value needs at least 8 (key length) + 4 (type) + 1 bytes, a tensor info
        // at least 8 + 4 + 8 + 4 + 8. Checking counts against what is left keeps a forged
        // count from driving a huge loop or allocation.
        let left = r.remaining();
        if n_kv.saturating_mul(13) > left {
            return Err(GgufError::Invalid(format!(
                "the file is truncated or corrupt: the header declares {n_kv} metadata entries, more than the {left} bytes that follow can hold"
            )));
        }
        if n_tensors.saturating_mul(32) > left {
            return Err(GgufError::Invalid(format!(
                "the file is truncated or corrupt: the header declares {n_tensors} tensors, more than the {left} bytes that follow can hold"
            )));
        }

        let mut metadata = BTreeMap::new();
        for idx in 0..n_kv {
            let key = r.string(&format!("metadata key {idx}"))?;
            let ty = r.u32(&format!("the type of metadata {key}"))?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Invalid(format!("metadata key {key} appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a >= 8 && a <= 1 << 16 && a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Invalid(format!(
                        "general.alignment must be a power of two from 8 to 65536, found {v:?}"
                    )));
                }
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = std::collections::HashSet::new();
        for idx in 0..n_tensors {
            let name = r.string(&format!("the name of tensor {idx}"))?;
            if name.len() > MAX_TENSOR_NAME {
                return Err(GgufError::Invalid(format!("tensor {idx} has a name of {} bytes", name.len())));
            }
            let n_dims = r.u32(&format!("the rank of tensor {name}"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Invalid(format!(
                    "tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(r.u64(&format!("the dimensions of tensor {name}"))?);
            }
            let type_id = r.u32(&format!("the type of tensor {name}"))?;
            let offset = r.u64(&format!("the offset of tensor {name}"))?;
            let ty = format_from_id(type_id).map_err(|type_name| GgufError::UnsupportedTensorType {
                name: name.clone(),
                type_id,
                type_name,
            })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n > 0 && n <= MAX_TENSOR_ELEMENTS)
                .ok_or_else(|| {
                    GgufError::Invalid(format!("tensor {name} has impossible dimensions {dims:?}"))
                })?;
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(GgufError::Invalid(format!(
                    "tensor {name} has rows of {} elements, not a multiple of the {} block of {}",
                    dims[0],
                    ty.name(),
                    ty.block_len()
                )));
            }
            if offset % alignment != 0 {
                return Err(GgufError::Invalid(format!(
                    "tensor {name} starts at offset {offset}, not a multiple of the alignment {alignment}"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(GgufError::Invalid(format!("tensor {name} appears twice")));
            }
            let n_bytes = n_elements / ty.block_len() as u64 * ty.block_bytes() as u64;
            tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
        }

        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let len = bytes.len() as u64;
        let data = if data_start <= len { &bytes[data_start as usize..] } else { &[][..] };
        for t in &tensors {
            let end = t.offset.checked_add(t.n_bytes);
            if end.is_none_or(|end| end > data.len() as u64) {
                return Err(GgufError::Truncated {
                    what: format!("the data of tensor {}", t.name),
                    offset: data_start.saturating_add(t.offset),
                    needed: t.n_bytes,
                    len,
                });
            }
        }
        Ok(Gguf { version, metadata, tensors, data })
    }

    /// The parsed header without the borrow of the buffer, to attach again to the same
    /// buffer after its tensor data was rearranged in place ([`GgufHeader::attach`]).
    pub fn detach(self, buffer: &[u8]) -> GgufHeader {
        let data_start = buffer.len() - self.data.len();
        GgufHeader { version: self.version, metadata: self.metadata, tensors: self.tensors, data_start, len: buffer.len() }
    }

    /// The info of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor (validated to lie inside the file by [`Gguf::parse`]).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &'a [u8] {
        &self.data[info.offset as usize..(info.offset + info.n_bytes) as usize]
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned integer.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.require(key)?.as_u64().ok_or_else(|| self.wrong_type(key, "a non-negative integer"))
    }

    /// An optional unsigned integer (present but mistyped is still an error).
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get(key)
            .map(|v| v.as_u64().ok_or_else(|| self.wrong_type(key, "a non-negative integer")))
            .transpose()
    }

    /// An optional float.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.wrong_type(key, "a number"))).transpose()
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.wrong_type(key, "a string"))).transpose()
    }

    /// An optional bool.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| self.wrong_type(key, "a bool"))).transpose()
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        self.require(key)?.as_str().ok_or_else(|| self.wrong_type(key, "a string"))
    }

    /// The `general.architecture` string.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.str("general.architecture")
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::Invalid(format!("missing metadata key {key}")))
    }

    fn wrong_type(&self, key: &str, expected: &str) -> GgufError {
        let found = self.get(key).map_or("nothing", Value::type_name);
        GgufError::Invalid(format!("metadata {key} should be {expected}, found {found}"))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.bytes.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array(key)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(key)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(key)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(GgufError::Invalid(format!("metadata {key} has bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Invalid(format!("metadata {key} nests arrays too deeply")));
                }
                let elem_ty = self.u32(key)?;
                let len = self.u64(key)?;
                // Every element takes at least one byte, so this bounds the allocation.
                if len > self.remaining() {
                    return Err(GgufError::Invalid(format!(
                        "the file is truncated or corrupt: metadata {key} declares {len} elements, more than the {} bytes left",
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(key)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(GgufError::Invalid(format!("metadata {key} has unknown value type {other}")));
            }
        })
    }
}

/// Writes GGUF v3 files: small models for tests, and deliberately broken files for the
/// validation tests (every field can be set to anything).
#[derive(Debug, Default, Clone)]
pub struct GgufWriter {
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<WriterTensor>,
}

#[derive(Debug, Clone)]
struct WriterTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    data: Vec<u8>,
    offset: Option<u64>,
}

fn string_bytes(v: &str) -> Vec<u8> {
    let mut b = (v.len() as u64).to_le_bytes().to_vec();
    b.extend(v.as_bytes());
    b
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, key: &str, ty: u32, payload: Vec<u8>) -> &mut Self {
        self.kv.push((key.to_owned(), ty, payload));
        self
    }

    /// A string value.
    pub fn string(&mut self, key: &str, v: &str) -> &mut Self {
        self.push(key, 8, string_bytes(v))
    }

    /// A `u32` value.
    pub fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.push(key, 4, v.to_le_bytes().to_vec())
    }

    /// An `f32` value.
    pub fn f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.push(key, 6, v.to_le_bytes().to_vec())
    }

    /// A bool value.
    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.push(key, 7, vec![u8::from(v)])
    }

    fn array(&mut self, key: &str, elem_ty: u32, n: usize, elems: Vec<u8>) -> &mut Self {
        let mut b = elem_ty.to_le_bytes().to_vec();
        b.extend((n as u64).to_le_bytes());
        b.extend(elems);
        self.push(key, 9, b)
    }

    /// An array of strings.
    pub fn strings(&mut self, key: &str, v: &[String]) -> &mut Self {
        let elems = v.iter().flat_map(|s| string_bytes(s)).collect();
        self.array(key, 8, v.len(), elems)
    }

    /// An array of `i32`.
    pub fn i32s(&mut self, key: &str, v: &[i32]) -> &mut Self {
        self.array(key, 5, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// An array of `f32`.
    pub fn f32s(&mut self, key: &str, v: &[f32]) -> &mut Self {
        self.array(key, 6, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// An `F32` tensor; `dims` in ggml order (row length first).
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, dims, 0, bytes)
    }

    /// A tensor of any ggml type id with raw bytes, which are not checked.
    pub fn tensor_raw(&mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.push(WriterTensor { name: name.to_owned(), dims: dims.to_vec(), type_id, data, offset: None });
        self
    }

    /// Overrides the data offset written for the last tensor added.
    pub fn with_offset(&mut self, offset: u64) -> &mut Self {
        if let Some(t) = self.tensors.last_mut() {
            t.offset = Some(offset);
        }
        self
    }

    /// The file's bytes.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kv {
            out.extend(string_bytes(k));
            out.extend(ty.to_le_bytes());
            out.extend(v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            out.extend(string_bytes(&t.name));
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(t.offset.unwrap_or(offset).to_le_bytes());
            offset += (t.data.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        }
        let pad = |out: &mut Vec<u8>| out.resize(out.len().div_ceil(DEFAULT_ALIGNMENT as usize) * DEFAULT_ALIGNMENT as usize, 0);
        pad(&mut out);
        for t in &self.tensors {
            out.extend(&t.data);
            pad(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Vec<u8> {
        GgufWriter::new()
            .string("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .tensor_f32("a", &[4, 2], &[1.0; 8])
            .finish()
    }

    #[test]
    fn reads_what_it_wrote() {
        let bytes = small();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.architecture().unwrap(), "llama");
        assert_eq!(g.u64("llama.block_count").unwrap(), 2);
        let t = g.tensor("a").unwrap();
        assert_eq!(t.n_bytes, 32);
        assert_eq!(g.tensor_bytes(t), &[1.0f32; 8].map(f32::to_le_bytes).concat()[..]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = small();
        for len in 0..bytes.len() {
            assert!(Gguf::parse(&bytes[..len]).is_err(), "accepted a file cut to {len} bytes");
        }
    }

    #[test]
    fn absurd_counts_are_rejected_without_allocating() {
        let mut bytes = small();
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Gguf::parse(&bytes), Err(GgufError::Invalid(_))));
        let mut bytes = small();
        bytes[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(Gguf::parse(&bytes), Err(GgufError::Invalid(_))));
        // The key length of the first metadata entry.
        let mut bytes = small();
        bytes[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(matches!(Gguf::parse(&bytes), Err(GgufError::Truncated { .. })));
    }

    #[test]
    fn bad_magic_version_and_endianness() {
        let mut bytes = small();
        bytes[0] = b'X';
        assert!(matches!(Gguf::parse(&bytes), Err(GgufError::BadMagic { .. })));
        let mut bytes = small();
        bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(Gguf::parse(&bytes).unwrap_err(), GgufError::UnsupportedVersion(7));
        let mut bytes = small();
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(Gguf::parse(&bytes).unwrap_err().to_string().contains("big-endian"));
        assert_eq!(Gguf::parse(&[]).unwrap_err(), GgufError::Empty);
    }

    #[test]
    fn tensor_past_the_end_is_rejected() {
        let mut w = GgufWriter::new();
        w.string("general.architecture", "llama").tensor_f32("a", &[4, 2], &[1.0; 8]);
        w.tensors[0].dims = vec![4, 1 << 20];
        let err = Gguf::parse(&w.finish()).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
        let mut w = GgufWriter::new();
        w.tensor_f32("a", &[4, 2], &[1.0; 8]);
        w.tensors[0].dims = vec![u64::MAX, u64::MAX];
        assert!(Gguf::parse(&w.finish()).unwrap_err().to_string().contains("impossible dimensions"));
    }

    #[test]
    fn offset_past_the_end_and_bad_alignment_are_rejected() {
        let mut w = GgufWriter::new();
        w.tensor_f32("a", &[8], &[0.0; 8]).with_offset(1 << 40);
        assert!(matches!(Gguf::parse(&w.finish()), Err(GgufError::Truncated { .. })));
        let mut w = GgufWriter::new();
        w.tensor_f32("a", &[8], &[0.0; 8]).with_offset(3);
        assert!(Gguf::parse(&w.finish()).unwrap_err().to_string().contains("alignment"));
        for bad in [0, 3, 1 << 20] {
            let bytes = GgufWriter::new().u32("general.alignment", bad).tensor_f32("a", &[8], &[0.0; 8]).finish();
            assert!(Gguf::parse(&bytes).unwrap_err().to_string().contains("general.alignment"));
        }
    }

    #[test]
    fn unsupported_tensor_type_names_the_type() {
        let mut w = GgufWriter::new();
        w.tensor_raw("blk.0.attn_q.weight", &[256], 23, vec![0; 256]);
        let err = Gguf::parse(&w.finish()).unwrap_err().to_string();
        assert!(err.contains("IQ4_XS") && err.contains("blk.0.attn_q.weight"), "{err}");
    }
}
